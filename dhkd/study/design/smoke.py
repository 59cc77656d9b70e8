"""`--smoke-test`: the same study made tiny enough for CI.

preset tiny (random-init tiny backbone; each method's tiny preset, e.g. 1 teacher epoch for
dhkd), 64 px, 2 epochs of the last stage (evaluated each), at most 16 train images, the first 2
categories, the first seed, at most 2 trials, ASHA with grace period 1, CPU only; generated data
stands in when the data root (or one of the chosen categories) is absent. Search-space and fixed
parameters over what the smoke test fixes (backbone, image size, epochs, and every method's
budget_keys) are dropped. The study is named `<name>-smoke`.
"""

from __future__ import annotations

from typing import Any

from dhkd.methods.registry import get_method, method_names
from dhkd.study.design.space import Param
from dhkd.study.design.spec import StudySpec, check_spec

SMOKE_FIXED: dict[str, Any] = {
    "data.image_size": 64,
    "data.max_train_images": 16,
    "optim.epochs": 2,
    "optim.eval_every": 1,
    "optim.device": "cpu",
}
_SMOKE_OWNED = ("backbone.", "data.image_size", "data.max_train_images", "optim.epochs",
                "optim.eval_every", "optim.device")  # fmt: skip
SMOKE_SYNTHETIC = {"image_size": 64, "n_train": 8, "n_test_good": 4, "n_test_defect": 4}


def _owned(key: str) -> bool:
    budget = tuple(k for name in method_names() for k in get_method(name).budget_keys)
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in _SMOKE_OWNED + budget)


def _smoke_space(space: dict[str, Param]) -> dict[str, Param]:
    kept = {k: p for k, p in space.items() if not _owned(k)}
    changed = True
    while changed:  # drop children whose condition names a dropped parameter
        changed = False
        for key, param in list(kept.items()):
            if any(parent not in kept for parent in (param.when or {})):
                kept.pop(key)
                changed = True
    return kept


def _smoke_data(spec: StudySpec) -> dict[str, Any]:
    categories = spec.data.category_names[:2]
    if spec.data.synthetic is not None:
        synth = spec.data.synthetic.model_dump()
        return {"synthetic": {**synth, **SMOKE_SYNTHETIC, "categories": categories}}
    roots = spec.data_roots()
    if all(any((r / c).is_dir() for r in roots) for c in categories):
        root = [str(r) for r in roots] if isinstance(spec.data.root, list) else str(roots[0])
        return {"root": root, "dataset": spec.data.dataset, "categories": categories}
    return {"synthetic": {**SMOKE_SYNTHETIC, "categories": categories}}


def smoke_spec(spec: StudySpec) -> StudySpec:
    """A tiny copy of `spec` (see the module docstring); validated like any spec."""
    space = _smoke_space(spec.space)
    tree = spec.model_dump(mode="python", exclude={"scientific", "nuisance", "data"})
    fixed = {k: v for k, v in spec.fixed.items() if not _owned(k)}
    tree.update(
        name=f"{spec.name}-smoke"[:64],
        preset="tiny",
        data=_smoke_data(spec),
        seeds=spec.seeds[:1],
        fixed={**fixed, **SMOKE_FIXED},
        scientific={k: p for k, p in spec.scientific.items() if k in space},
        nuisance={k: p for k, p in spec.nuisance.items() if k in space},
        num_samples=min(spec.trials, 2),
        resources={"cpu": 1.0, "gpu": 0.0},
        budget={"time_s": spec.budget.time_s, "max_concurrent": min(spec.budget.max_concurrent, 2)},
    )
    if spec.scheduler.type == "asha":
        tree["scheduler"] = {"type": "asha", "grace_period": 1, "reduction_factor": 2.0}
    return check_spec(StudySpec.model_validate(tree))
