"""The images that choose and the images that are reported, per selection protocol.

See SelectionConfig (dhkd/sections.py) and docs/selection.md.
`plan_selection` decides from the index alone (no image is opened) which samples train, which
validate and which are the reported test; `load_validation` and `load_test` read them. Under
`synthetic` no real test image is in the train or validation part, so a run can read the test
images once, after its last epoch.

Splits are seeded by (selection.seed, category name) and do not depend on a run's seed, so every
trial and seed of a study (and its reference) is chosen and reported on the same images.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from dhkd.data.defects import defective_twins
from dhkd.data.images import Split, load_samples, select_evenly
from dhkd.data.index import GOOD, CategoryIndex, Sample
from dhkd.errors import DataError
from dhkd.sections import SelectionConfig

PROTOCOL_LABELS = {
    "synthetic": "selected on held-out train/good images and synthetic defects; "
    "the test set is read once, after training",
    "test_fold": "selected on a validation fold of the test set; reported on the other fold",
    "test": "selected on the test set (optimistic)",
}
SYNTHETIC_DEFECT = "synthetic"  # the defect name of synthetic validation twins


def protocol_label(protocol: str) -> str:
    """The sentence that says what chose a number, for metrics.json and reports."""
    return PROTOCOL_LABELS[protocol]


@dataclass(frozen=True)
class SelectionPlan:
    """Samples per role. `validation` holds the held-out train/good images under `synthetic`
    (their twins are made by load_validation) and test images otherwise."""

    category: str
    selection: SelectionConfig
    train: tuple[Sample, ...]
    validation: tuple[Sample, ...]
    test: tuple[Sample, ...]

    @property
    def validation_is_test(self) -> bool:
        """Under `test` the validation images are the test images."""
        return self.selection.protocol == "test"


def _rng(sel: SelectionConfig, category: str, role: int) -> np.random.Generator:
    return np.random.default_rng([sel.seed, zlib.crc32(category.encode("utf-8")), role])


def _split_train(index: CategoryIndex, sel: SelectionConfig) -> tuple[list[int], list[int]]:
    n = len(index.train)
    n_val = max(1, round(sel.val_fraction * n))
    if n - n_val < 1:
        raise DataError(
            f"category {index.category!r} has {n} train/good image(s): too few to hold out "
            f"{sel.val_fraction:.0%} for validation and train on the rest; add train images, "
            "lower selection.val_fraction or use selection.protocol=test_fold"
        )
    order = _rng(sel, index.category, 1).permutation(n)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def _split_test(index: CategoryIndex, sel: SelectionConfig) -> tuple[list[int], list[int]]:
    """(reported fold, validation fold): each defect type (and good) split on its own."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(index.test):
        groups.setdefault(s.defect, []).append(i)
    rng = _rng(sel, index.category, 2)
    reported, validation = [], []
    for defect in sorted(groups):
        members = groups[defect]
        if len(members) < 2:
            raise DataError(
                f"category {index.category!r}: test/{defect} has {len(members)} image; "
                "test_fold needs at least 2 per defect type (one per fold); use "
                "selection.protocol=synthetic or test"
            )
        order = rng.permutation(len(members))
        n_val = min(len(members) - 1, max(1, round(sel.val_fraction * len(members))))
        validation += [members[j] for j in order[:n_val]]
        reported += [members[j] for j in order[n_val:]]
    return sorted(reported), sorted(validation)


def plan_selection(
    index: CategoryIndex, sel: SelectionConfig, max_train_images: int | None = None
) -> SelectionPlan:
    """Which samples train, validate and are reported; `max_train_images` caps the train part
    (evenly spread over what is left for training)."""
    train_idx = list(range(len(index.train)))
    val: tuple[Sample, ...]
    test = index.test
    if sel.protocol == "synthetic":
        train_idx, val_idx = _split_train(index, sel)
        val = tuple(index.train[i] for i in val_idx)
    elif sel.protocol == "test_fold":
        reported, val_idx = _split_test(index, sel)
        val = tuple(index.test[i] for i in val_idx)
        test = tuple(index.test[i] for i in reported)
    else:
        val = index.test
    train_idx = [train_idx[i] for i in select_evenly(len(train_idx), max_train_images)]
    return SelectionPlan(
        index.category, sel, tuple(index.train[i] for i in train_idx), val, tuple(test)
    )


def load_train(plan: SelectionPlan, size: int) -> Split:
    return load_samples(plan.train, size)


def load_validation(plan: SelectionPlan, size: int) -> Split:
    """The validation split: under `synthetic` each held-out good image and its defective twin
    (defect name "synthetic", paths of the twins end in "#synthetic"); else the test images of
    the validation fold (or all of them)."""
    if plan.selection.protocol != "synthetic":
        return load_samples(plan.validation, size)
    good = load_samples(plan.validation, size)
    twins, masks, _ = defective_twins(good.images, plan.selection.seed)
    n = len(good)
    return Split(
        images=np.concatenate([good.images, twins]),
        labels=np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)]),
        masks=np.concatenate([np.zeros_like(masks), masks]),
        paths=good.paths + tuple(f"{p}#{SYNTHETIC_DEFECT}" for p in good.paths),
        defects=(GOOD,) * n + (SYNTHETIC_DEFECT,) * n,
    )


def load_test(plan: SelectionPlan, size: int) -> Split:
    """The reported test images (all of test/, or the reported fold under test_fold)."""
    return load_samples(plan.test, size)
