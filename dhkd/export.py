"""`dhkd export`: trained weights -> an ONNX inference graph from image to (score, map).

The graph takes `image`: float32 (B, 3, S, S), RGB in [0, 1], already resized to the run's
input size S (as dhkd.data.images.load_image does, then / 255 and channels first), and returns
`score` (B,) and `anomaly_map` (B, S, S): the frozen backbone, the method's per-level maps
(MethodUnit.maps_from) and the shared fusion, smoothing and pooling, all in float32.

A deployed graph has no feature cache, so it keeps the backbone's features in float32, where
training and `dhkd predict` round them to float16 as the cache stores them. After writing the
file, `export_onnx` runs it with onnxruntime on check images and compares it twice:
- with the same graph run by PyTorch: maps must agree within 1e-4 (times the largest map value
  when that is above 1), or the file is removed and the export reported as failed;
- with `dhkd predict` (the float16 cache path that produced the run's metrics): the difference
  is reported, and one above 1% of the largest map value means the graph is not the trained
  pipeline (the file is removed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dhkd.errors import DhkdError
from dhkd.features import frozen_backbone
from dhkd.inference import Predictor

MAP_TOLERANCE = 1e-4  # onnxruntime vs PyTorch, the same float32 graph
CACHE_TOLERANCE = 1e-2  # vs `dhkd predict`: float32 vs float16-rounded features
OPSET = 18


class ImageToScore(nn.Module):
    """image (B, 3, S, S) in [0, 1] -> (score (B,), anomaly_map (B, S, S))."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        unit = predictor.unit
        self.backbone = frozen_backbone(unit.cfg, torch.device("cpu"))
        self.model = unit.model
        self._maps, self._score = unit.maps_from, unit.score

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._score(self._maps(image, self.backbone(image)))
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


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


@torch.no_grad()
def check_onnx(path: Path, graph: nn.Module, predictor: Predictor, images: np.ndarray) -> dict:
    """The ONNX file on uint8 (N, S, S, 3) images vs the same graph in PyTorch (max |diff| of
    scores and maps) and vs the float16-cache predictor (`cache_*`)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    step = len(x) if isinstance(session.get_inputs()[0].shape[0], str) else 1
    outs = [session.run(None, {"image": x[i : i + step]}) for i in range(0, len(x), step)]
    scores = np.concatenate([o[0] for o in outs])
    maps = np.concatenate([o[1] for o in outs])
    torch_outs = [graph(torch.from_numpy(x[i : i + step])) for i in range(0, len(x), step)]
    torch_scores = torch.cat([o[0] for o in torch_outs]).numpy()
    torch_maps = torch.cat([o[1] for o in torch_outs]).numpy()
    cache_scores, cache_maps = predictor.predict_images(images)
    return {
        "max_score_diff": _max_abs(scores, torch_scores),
        "max_map_diff": _max_abs(maps, torch_maps),
        "max_map": float(np.abs(torch_maps).max()),
        "cache_score_diff": _max_abs(scores, cache_scores),
        "cache_map_diff": _max_abs(maps, cache_maps),
    }


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
    check = check_onnx(out, graph, predictor, check_images)
    scale = max(1.0, check["max_map"])
    problem = None
    if not check["max_map_diff"] <= MAP_TOLERANCE * scale:
        problem = (
            f"onnxruntime's maps differ from PyTorch's by {check['max_map_diff']:.3g} (more than "
            f"{MAP_TOLERANCE * scale:.3g}, maps up to {check['max_map']:.3g})"
        )
    elif not check["cache_map_diff"] <= CACHE_TOLERANCE * scale:
        problem = (
            f"the graph's maps differ from `dhkd predict`'s by {check['cache_map_diff']:.3g} "
            f"(more than {CACHE_TOLERANCE * scale:.3g}): the graph is not the trained pipeline"
        )
    if problem is not None:
        out.unlink(missing_ok=True)
        raise DhkdError(f"{problem}; the file was removed: this model cannot be exported as is")
    return {
        **check,
        "path": str(out),
        "images": len(check_images),
        "bytes": out.stat().st_size,
        "batch": "any" if _dynamic_batch(out) else 1,
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
