"""(category, seed) units and the metrics of a trial over more of them (study extensions)."""

from __future__ import annotations

from dhkd.study.state.outcome import BASE_METRICS, SPLITS, objective_key

Unit = tuple[str, int]


def as_units(items) -> list[Unit]:
    return [(str(c), int(s)) for c, s in items]


def _counts(units: list[Unit]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c, _ in units:
        out[c] = out.get(c, 0) + 1
    return out


def merge_final(
    old: dict[str, float],
    old_units: list[Unit],
    new: dict[str, float],
    new_units: list[Unit],
    metric: str,
) -> dict[str, float]:
    """Metrics over old + new units from the metrics over each, for every split ("val/",
    "test/"): `<split>/<category>/<m>` the mean over the category's seeds (weighted by how many
    each side trained), `<split>/<m>` the mean over units, and the objective (objective/<metric>)
    the mean over categories of the validation metric. A metric some category lacks is left
    out rather than guessed."""
    n_old, n_new = _counts(old_units), _counts(new_units)
    cats = sorted(set(n_old) | set(n_new))
    merged: dict[str, float] = {}
    for split in SPLITS:
        for base in BASE_METRICS:
            per_cat: dict[str, tuple[float, int]] = {}
            for cat in cats:
                sources = ((old, n_old.get(cat, 0)), (new, n_new.get(cat, 0)))
                parts = [(src.get(f"{split}/{cat}/{base}"), k) for src, k in sources]
                parts = [(v, k) for v, k in parts if k and v is not None]
                if len(parts) == sum(1 for _, k in sources if k):
                    weight = sum(k for _, k in parts)
                    per_cat[cat] = (sum(v * k for v, k in parts) / weight, weight)
            if len(per_cat) < len(cats):
                continue
            for cat, (value, _) in per_cat.items():
                merged[f"{split}/{cat}/{base}"] = value
            total = sum(k for _, k in per_cat.values())
            merged[f"{split}/{base}"] = sum(v * k for v, k in per_cat.values()) / total
            if split == "val" and base == metric:
                merged[objective_key(metric)] = sum(v for v, _ in per_cat.values()) / len(cats)
    return merged
