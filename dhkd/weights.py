"""The checkpoint format of trained weights (checkpoint.pt of `dhkd train`, and of every
COMPLETE study trial as an MLflow artifact), readable with torch.load(weights_only=True).

    {"format": "dhkd-weights", "version": 1,
     "config": resolved run config (JSON),
     "fingerprint": dhkd.fingerprint.run_fingerprint of the run,
     "units": [{"category", "seed", "model": the model's state dict,
                "shapes": [[C, H, W] per backbone level],
                "threshold": dhkd.threshold.Threshold as a dict,
                "map_range": [low, high] of the anomaly maps on the selection images}]}

A trial stopped early (PRUNED) has not been evaluated to its end: the weights of its last
snapshot (`from_training_state`, kept when the spec says keep_weights: all) have threshold and
map_range None, and an empty fingerprint.

The model's feature-normalisation statistics are buffers of its state dict. `load_weights`
checks the format and version and says what to do with anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhkd.errors import DataError

FORMAT = "dhkd-weights"
VERSION = 1
WEIGHTS_FILE = "checkpoint.pt"


def weights_dict(
    config: dict[str, Any], fingerprint: dict[str, Any], units: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "config": config,
            "fingerprint": fingerprint, "units": units}  # fmt: skip


def backbone_shapes(cfg) -> list[list[int]]:
    """[C, H, W] of each backbone level at the config's input size."""
    import torch

    from dhkd.features import frozen_backbone

    size = cfg.data.image_size
    with torch.no_grad():
        feats = frozen_backbone(cfg, torch.device("cpu"))(torch.zeros(1, 3, size, size))
    return [list(f.shape[1:]) for f in feats]


def from_training_state(cfg, state: dict[str, Any]) -> dict[str, Any]:
    """Weights of a training-state snapshot ({"epoch", "units": [unit state_dict()]})."""
    shapes = backbone_shapes(cfg)
    units = [
        {
            "category": u["category"],
            "seed": u["seed"],
            "model": u["model"],
            "shapes": shapes,
            "threshold": None,
            "map_range": None,
        }
        for u in state["units"]
    ]
    return weights_dict(cfg.model_dump(mode="json"), {}, units)


def save_weights(data: dict[str, Any], path: str | Path) -> None:
    import torch

    torch.save(data, path)


def load_weights(path: str | Path) -> dict[str, Any]:
    """A checkpoint in this format; DataError naming the problem otherwise."""
    import torch

    path = Path(path)
    if path.is_dir():
        raise DataError(
            f"checkpoint {path} is a folder, not a file; pass the {WEIGHTS_FILE} in it "
            f"({path / WEIGHTS_FILE})"
        )
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist; pass the checkpoint.pt of a run")
    fix = "pass the checkpoint.pt written by `dhkd train` or kept by a study trial"
    if path.stat().st_size == 0:
        raise DataError(f"checkpoint {path} is empty (0 bytes); {fix}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not a readable dhkd checkpoint ({first}); {fix}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(
            f"{path} is not in the dhkd weights format (no format: {FORMAT}); it may be a "
            "training-state snapshot or from an older dhkd: retrain with `dhkd train`"
        )
    if data.get("version") != VERSION:
        raise DataError(
            f"{path} has weights format version {data.get('version')}; this dhkd reads "
            f"version {VERSION}: use the dhkd version that wrote it"
        )
    return data


def select_unit(data: dict[str, Any], category: str | None, seed: int | None) -> dict[str, Any]:
    """The unit of (category, seed) in a checkpoint; either may be left out when unambiguous
    (the first seed of the category is taken when seed is None)."""
    units = data["units"]
    have = ", ".join(f"{u['category']}/seed{u['seed']}" for u in units)
    chosen = [u for u in units if category is None or u["category"] == category]
    if category is None and len({u["category"] for u in units}) > 1:
        raise DataError(f"the checkpoint holds several categories ({have}); pass --category")
    if seed is not None:
        chosen = [u for u in chosen if int(u["seed"]) == seed]
    if not chosen:
        raise DataError(f"the checkpoint holds no unit {category}/seed{seed}; it holds {have}")
    return chosen[0]
