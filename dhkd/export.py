"""`dhkd export`: trained weights -> an ONNX inference graph from image to (score, map).

The graph takes `image`: float32 (B, 3, S, S), RGB in [0, 1], already resized to the run's
input size S (as dhkd.data.images.load_image does, then / 255 and channels first), and returns
`score` (B,) and `anomaly_map` (B, S, S): the frozen backbone, the float16 rounding of the
feature cache, the method's per-level maps (MethodUnit.maps_from) and the shared fusion,
smoothing and pooling. After writing it, `export_onnx` runs the file with onnxruntime on
check images and compares it with the PyTorch predictor; a graph whose maps differ by more
than 1e-4 (relative to the largest map value when that is above 1) is removed and reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dhkd.errors import DhkdError
from dhkd.features import frozen_backbone
from dhkd.inference import Predictor
from dhkd.models.anomaly_map import score_maps

MAP_TOLERANCE = 1e-4
OPSET = 18


class ImageToScore(nn.Module):
    """image (B, 3, S, S) in [0, 1] -> (score (B,), anomaly_map (B, S, S))."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        unit = predictor.unit
        self.backbone = frozen_backbone(unit.cfg, torch.device("cpu"))
        self.model = unit.model
        self._maps = unit.maps_from
        self.size = unit.cfg.data.image_size
        self.score = unit.cfg.score.model_dump()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [f.half().float() for f in self.backbone(image)]
        out = score_maps(self._maps(image, feats), self.size, **self.score)
        return out.pred_score, out.anomaly_map


def _require_onnx():
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise DhkdError(
            f"ONNX export needs onnx, onnxscript and onnxruntime ({exc.name} is missing): "
            'pip install "dhkd[export]"'
        ) from None


def check_onnx(path: Path, predictor: Predictor, images: np.ndarray) -> tuple[float, float, float]:
    """(max |score diff|, max |map diff|, max |map|) of the ONNX file vs the PyTorch predictor."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    step = len(x) if isinstance(session.get_inputs()[0].shape[0], str) else 1
    outs = [session.run(None, {"image": x[i : i + step]}) for i in range(0, len(x), step)]
    scores = np.concatenate([o[0] for o in outs])
    maps = np.concatenate([o[1] for o in outs])
    ref_scores, ref_maps = predictor.predict_images(images)
    return (
        float(np.abs(scores - ref_scores).max()),
        float(np.abs(maps - ref_maps).max()),
        float(np.abs(ref_maps).max()),
    )


def export_onnx(predictor: Predictor, out: str | Path, check_images: np.ndarray) -> dict:
    """Write the graph to `out`, check it on uint8 (N, S, S, 3) images; returns the check."""
    _require_onnx()
    if predictor.unit.device.type != "cpu":
        raise DhkdError("export runs on the CPU: load the weights with --device cpu")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    graph = ImageToScore(predictor).eval()
    size = predictor.image_size
    example = torch.from_numpy(check_images[:2]).permute(0, 3, 1, 2).float() / 255.0
    try:
        _write(graph, example, out, dynamic=True)
        if not _dynamic_batch(out):  # the method fixes the batch size: one image per call
            _write(graph, example[:1], out, dynamic=False)
    except Exception as exc:
        out.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
        raise DhkdError(
            f"method '{predictor.cfg.method}' ({size} px) cannot be exported to ONNX: {first}. "
            "Use `dhkd predict` with the checkpoint instead"
        ) from None
    score_diff, map_diff, scale = check_onnx(out, predictor, check_images)
    batch = "any" if _dynamic_batch(out) else 1
    allowed = MAP_TOLERANCE * max(1.0, scale)
    if not map_diff <= allowed:
        out.unlink(missing_ok=True)
        raise DhkdError(
            f"the exported graph's maps differ from PyTorch's by {map_diff:.3g} (more than "
            f"{allowed:.3g}, maps up to {scale:.3g}); the file was removed: this model cannot "
            "be exported faithfully"
        )
    return {
        "path": str(out),
        "images": len(check_images),
        "max_score_diff": score_diff,
        "max_map_diff": map_diff,
        "max_map": scale,
        "bytes": out.stat().st_size,
        "batch": batch,
    }


def _write(graph: nn.Module, example: torch.Tensor, out: Path, dynamic: bool) -> None:
    shapes = {"image": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic else None
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (example,),
            str(out),
            input_names=["image"],
            output_names=["score", "anomaly_map"],
            dynamic_shapes=shapes,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _dynamic_batch(path: Path) -> bool:
    import onnx

    dim = (
        onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    )
    return not dim.HasField("dim_value")
