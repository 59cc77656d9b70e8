"""Which numbers of a Tune result a trial run logs to MLflow (study/state/outcome.py)."""

from dhkd.study.state.outcome import OBJECTIVE, tracked_metrics


def test_tracked_metrics_keep_map_and_decision_metrics_only():
    result = {
        "val/image_auroc": 0.9,
        "test/bottle/pixel_aupro": 0.8,
        "test/threshold_ba_ratio": 0.95,
        "test/bottle/threshold_recall": 0.5,
        "val/image_f1": 0.7,
        "test/bottle/threshold_best_ba": 0.9,  # not a logged measure
        "test/bottle/extra/pixel_aupro": 0.1,  # too deep
        "train/loss": 1.5,
        "test/threshold_fpr": float("nan"),  # not finite
        "epoch": 3,
        OBJECTIVE: 0.85,
    }
    assert tracked_metrics(result, "pixel_aupro") == {
        "val/image_auroc": 0.9,
        "test/bottle/pixel_aupro": 0.8,
        "test/threshold_ba_ratio": 0.95,
        "test/bottle/threshold_recall": 0.5,
        "val/image_f1": 0.7,
        "train/loss": 1.5,
        "objective/pixel_aupro": 0.85,
    }
