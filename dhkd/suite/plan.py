"""A suite's plan before anything runs: per study its trials, (category, seed) units and
expected compute, the reference counted once, and the total against the suite's budget.

The model, kept simple:

- a trial trains every unit of its study (they run in lockstep), so a study costs
  trials x (the sum over its units of one unit's seconds); every trial is counted whole (ASHA
  may stop some early: the estimate is then an upper bound); a study whose search space
  includes `method` splits its trials evenly over the methods listed;
- the reference (a spec's `reference:` method) is measured once per (category, seed) and
  reference configuration over the whole suite, not once per study;
- CPU hours: the measured CPU seconds per unit, or wall x resources.cpus_per_trial where none
  were measured; GPU hours: wall x resources.gpus_per_trial (the reference: its whole wall
  time on a GPU), as the studies account them (docs/running.md);
- wall time: every unit-second, trials and reference, spread evenly over the trials that run
  at once (resources.concurrent_trials x resources.nodes), as if no trial slowed another and
  no slot stood idle.

Seconds per unit come from dhkd.suite.costs (MLflow, then the calibration file of
`--calibrate`, dhkd.suite.calibrate, then the suite's `costs:` table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dhkd.study.design.spec import StudySpec
from dhkd.suite.costs import CostBook, UnitCost
from dhkd.suite.spec import SuiteSpec, study_methods

Key = tuple[str, str, str]  # (method, preset, category)


@dataclass
class Compute:
    """Seconds of wall, CPU and GPU time; None where a unit's cost is not known."""

    wall_s: float | None = 0.0
    cpu_s: float | None = 0.0
    gpu_s: float | None = 0.0

    def add(self, other: Compute) -> None:
        for name in ("wall_s", "cpu_s", "gpu_s"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, None if mine is None or theirs is None else mine + theirs)


@dataclass
class StudyPlan:
    name: str
    methods: tuple[str, ...]
    trials: int
    units: int
    compute: Compute
    missing: list[Key] = field(default_factory=list)
    trained: int | None = None  # units left to train (None: trials x units, nothing done yet)
    state: str = ""  # "complete" | "extension" | "" (new or resumed: counted whole)

    @property
    def to_train(self) -> int:
        return self.trials * self.units if self.trained is None else self.trained


@dataclass
class Done:
    """What a study's storage folder says was run: the spec it ran (trials, units) and
    whether it is complete with exactly the suite's spec."""

    trials: int
    units: set[tuple[str, int]]
    complete: bool
    reference: bool  # its reference was measured on those units


@dataclass
class ReferencePlan:
    method: str
    units: int  # distinct (category, seed) units measured
    listed: int  # units the studies list, counted once per study
    compute: Compute
    missing: list[Key] = field(default_factory=list)


@dataclass
class Plan:
    suite: SuiteSpec
    studies: list[StudyPlan]
    references: list[ReferencePlan]
    unit_costs: dict[Key, UnitCost | None]

    @property
    def total(self) -> Compute:
        out = Compute()
        for part in [*self.studies, *self.references]:
            out.add(part.compute)
        return out

    @property
    def wall_s(self) -> float | None:
        total = self.total.wall_s
        return None if total is None else total / self.suite.resources.slots

    @property
    def missing(self) -> list[Key]:
        keys = [k for part in [*self.studies, *self.references] for k in part.missing]
        return list(dict.fromkeys(keys))

    def problems(self) -> list[str]:
        """Why the suite must not run as planned: over budget, or a budget that cannot be
        checked because a unit's cost is not known. [] when it fits (or has no budget)."""
        budget, out = self.suite.budget, []
        if budget.wall_hours is None and budget.gpu_hours is None:
            return out
        if self.missing:
            return [f"the budget cannot be checked: no cost is known for {_keys(self.missing)}; "
                    + how_to_measure(self.missing)]  # fmt: skip
        wall, gpu = (self.wall_s or 0.0) / 3600, (self.total.gpu_s or 0.0) / 3600
        if budget.wall_hours is not None and wall > budget.wall_hours:
            out.append(f"the estimated wall time, {wall:.1f} h, exceeds budget.wall_hours "
                       f"({budget.wall_hours:g} h)")  # fmt: skip
        if budget.gpu_hours is not None and gpu > budget.gpu_hours:
            out.append(f"the estimated {gpu:.1f} GPU hours exceed budget.gpu_hours "
                       f"({budget.gpu_hours:g} h)")  # fmt: skip
        if out:
            out.append("fewer trials, seeds or categories, more concurrent trials or nodes "
                       f"(resources), or a larger budget in {self.suite.source}")  # fmt: skip
        return out


def _keys(keys: list[Key]) -> str:
    """Missing (method, preset, category) keys, grouped: "dhkd, bikd (paper) on 15 categories
    (bottle, ...)"."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for preset in dict.fromkeys(p for _, p, _ in keys):
        for method in dict.fromkeys(m for m, p, _ in keys if p == preset):
            cats = tuple(c for m, p, c in keys if (m, p) == (method, preset))
            groups.setdefault((preset, cats), []).append(method)
    return "; ".join(
        f"{', '.join(methods)} ({preset}) on "
        + (cats[0] if len(cats) == 1 else f"{len(cats)} categories ({', '.join(cats)})")
        for (preset, cats), methods in groups.items()
    )


def how_to_measure(keys: list[Key]) -> str:
    """How to get the missing costs: a benchmark into the suite's costs table, or an MLflow
    store where such runs were logged."""
    methods = " ".join(dict.fromkeys(m for m, _, _ in keys))
    cats = " ".join(dict.fromkeys(c for _, _, c in keys))
    bench = " and ".join(
        f"`.venv/bin/python benchmarks/bench_methods.py --preset {p} --methods {methods} "
        f"--categories {cats}`"
        for p in dict.fromkeys(p for _, p, _ in keys)
    )
    return (
        f"measure them on the kind of machine the suite will run on with {bench} and add each "
        "category's wall s / CPU s (device: gpu on a GPU) to the suite's `costs:` table, or pass "
        "--tracking-uri of an MLflow store where studies of those methods at that preset ran, "
        "or let the plan measure one unit of each itself with --calibrate (`dhkd suite plan|run "
        "SUITE --calibrate`, on such a machine)"
    )


def _unit(book: CostBook, costs: dict, key: Key) -> UnitCost | None:
    if key not in costs:
        costs[key] = book.unit_cost(*key)
    return costs[key]


def _compute(units: list[UnitCost], cpus: float, gpus: float) -> Compute:
    wall = sum(u.wall_s for u in units)
    cpu = sum(u.wall_s * cpus if u.cpu_s is None else u.cpu_s for u in units)
    return Compute(wall, cpu, wall * gpus)


def _trial_compute(book: CostBook, costs: dict, spec: StudySpec, units: list, res,
                   gpus: float) -> tuple[Compute, list[Key]]:  # fmt: skip
    """What one trial costs on `units`, averaged over the methods a study searches."""
    methods = study_methods(spec)
    keys = [(m, spec.preset, c) for c, _ in units for m in methods]
    found = [(k, _unit(book, costs, k)) for k in keys]
    missing = [k for k, u in found if u is None]
    if missing:
        return Compute(None, None, None), missing
    one = _compute([u for _, u in found if u is not None], res.cpus_per_trial, gpus)
    n = len(methods)
    return Compute(one.wall_s / n, one.cpu_s / n, one.gpu_s / n), []  # type: ignore[operator]


def _new_units(spec: StudySpec, old: Done) -> list[tuple[str, int]]:
    return [u for u in spec.units if u not in old.units]


def _scaled(c: Compute, k: float) -> Compute:
    return Compute(*(None if v is None else v * k for v in (c.wall_s, c.cpu_s, c.gpu_s)))


def plan_suite(
    suite: SuiteSpec, specs: list[StudySpec], book: CostBook, done: dict[str, Done] | None = None
) -> Plan:
    """The plan of the expanded suite `specs` with the unit costs of `book`; with `done`
    (done_work), only what is left: a complete study costs nothing, an extended one (more
    seeds, categories or trials) its new units for the trials it ran and every unit for its new
    trials, and its reference on every unit again. A study that was interrupted is counted
    whole (an upper bound)."""
    from dhkd.study.driver.reference import reference_config

    res = suite.resources
    done = done or {}
    gpus = res.gpus_per_trial if book.device == "gpu" else 0.0
    costs: dict[Key, UnitCost | None] = {}
    studies = []
    for spec in specs:
        methods = study_methods(spec)
        per_trial, missing = _trial_compute(book, costs, spec, spec.units, res, gpus)
        compute, trained, state = _scaled(per_trial, spec.trials), None, ""
        old = done.get(spec.name)
        if old is not None and old.complete:
            compute, trained, state = Compute(), 0, "complete"
        elif old is not None and (_new_units(spec, old) or spec.trials > old.trials):
            new = _new_units(spec, old)
            kept = min(old.trials, spec.trials)
            top_up, more = _trial_compute(book, costs, spec, new, res, gpus)
            missing = [*missing, *more] if new else missing
            compute = _scaled(top_up, kept)
            compute.add(_scaled(per_trial, spec.trials - kept))
            trained, state = kept * len(new) + (spec.trials - kept) * len(spec.units), "extension"
        studies.append(StudyPlan(spec.name, methods, spec.trials, len(spec.units), compute,
                                 list(dict.fromkeys(missing)), trained, state))  # fmt: skip
    measured: dict[str, dict[tuple, tuple[str, str]]] = {}
    listed: dict[str, int] = {}
    before: set[tuple] = set()  # (config, category, seed) references measured by earlier runs
    for spec in specs:
        if spec.reference is None:
            continue
        config = json.dumps(reference_config(spec).to_flat_dict(), sort_keys=True, default=str)
        old = done.get(spec.name)
        if old is not None and old.reference and set(spec.units) <= old.units:
            before |= {(config, c, s) for c, s in old.units}  # an extended one measures all again
        listed[spec.reference] = listed.get(spec.reference, 0) + len(spec.units)
        for category, seed in spec.units:
            measured.setdefault(spec.reference, {})[(config, category, seed)] = (
                spec.preset,
                category,
            )
    for units in measured.values():
        for key in before & set(units):
            del units[key]
    references = []
    for method, units in measured.items():
        found = [((method, p, c), _unit(book, costs, (method, p, c))) for p, c in units.values()]
        missing = list(dict.fromkeys(k for k, u in found if u is None))
        compute = Compute(None, None, None)
        if not missing:
            compute = _compute([u for _, u in found if u is not None], res.cpus_per_trial, 0.0)
            compute.gpu_s = compute.wall_s if book.device == "gpu" else 0.0
        references.append(ReferencePlan(method, len(units), listed[method], compute, missing))
    return Plan(suite, studies, references, costs)


def _hours(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 3600:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_plan(plan: Plan) -> str:
    suite, res = plan.suite, plan.suite.resources
    out = [
        f"suite {suite.name} ({suite.source}): {len(plan.studies)} studies on "
        f"{res.nodes} node(s) x {res.concurrent_trials} concurrent trial(s), "
        f"{res.cpus_per_trial:g} CPU and {res.gpus_per_trial:g} GPU per trial, "
        f"costs measured on {suite.device.upper()}",
        "",
    ]
    rows = []
    for s in plan.studies:
        c = s.compute
        hours = [_hours(c.wall_s), _hours(c.cpu_s), _hours(c.gpu_s)]
        counts = [str(s.trials), str(s.units), str(s.to_train)]
        rows.append([s.name, "/".join(s.methods), *counts, *hours])
    for r in plan.references:
        c = r.compute
        rows.append([f"reference {r.method} (once)", r.method, "-", str(r.units), str(r.units),
                     _hours(c.wall_s), _hours(c.cpu_s), _hours(c.gpu_s)])  # fmt: skip
    total = plan.total
    trained = sum(s.to_train for s in plan.studies) + sum(r.units for r in plan.references)
    rows.append(["total", "", str(sum(s.trials for s in plan.studies)), "", str(trained),
                 _hours(total.wall_s), _hours(total.cpu_s), _hours(total.gpu_s)])  # fmt: skip
    header = ["study", "method", "trials", "units", "trained units", "unit h", "CPU h", "GPU h"]
    out += _table(header, rows)
    for r in plan.references:
        if r.listed > r.units:
            out.append(f"(the studies list {r.listed} {r.method} reference units; "
                       f"{r.units} distinct ones are measured)")  # fmt: skip
    for state, says in (
        ("complete", "complete: nothing to train"),
        ("extension", "extended: only the new units and trials are counted"),
    ):
        names = [s.name for s in plan.studies if s.state == state]
        if names:
            out.append(f"({', '.join(names)} {says})")
    wall = plan.wall_s
    slots = res.slots
    if wall is None:
        out += ["", "wall time: unknown (costs missing, see below)"]
    else:
        out += ["", f"wall time: {wall / 3600:.2f} h (unit h / {slots} trial(s) at once)"]
    budget = suite.budget
    limits = [f"{budget.wall_hours:g} h wall" if budget.wall_hours else "",
              f"{budget.gpu_hours:g} GPU h" if budget.gpu_hours else ""]  # fmt: skip
    out.append(f"budget: {', '.join(x for x in limits if x) or 'none'}")
    out += ["", "seconds per (category, seed) unit:"]
    rows = []
    for (method, preset, category), cost in sorted(plan.unit_costs.items()):
        if cost is None:
            rows.append([method, preset, category, "?", "?", "no cost known"])
        else:
            cpu = "-" if cost.cpu_s is None else f"{cost.cpu_s:.1f}"
            rows.append([method, preset, category, f"{cost.wall_s:.1f}", cpu, cost.source])
    out += _table(["method", "preset", "category", "wall s", "CPU s", "source"], rows)
    if plan.missing:
        out += ["", f"no cost is known for {_keys(plan.missing)}: {how_to_measure(plan.missing)}"]
    return "\n".join(out)


def cost_book(
    suite: SuiteSpec,
    specs: list[StudySpec],
    tracking_uri: str | None,
    calibration: Path | None = None,
) -> CostBook:
    """Unit costs from the MLflow store at tracking_uri (None: none), then the calibration file
    of `dhkd suite plan --calibrate` (dhkd.suite.calibrate; None or absent: none), then the
    suite's table; train-set sizes from the studies' data roots."""
    from dhkd.suite.costs import mlflow_measurements, table_measurements, train_counter

    sources = []
    if tracking_uri is not None:
        from dhkd.runs.tracking import client_for

        client, uri = client_for(tracking_uri)
        sources.append((f"mlflow {uri}", mlflow_measurements(client)))
    if calibration is not None:
        from dhkd.suite.calibrate import SOURCE, calibration_measurements

        sources.append((SOURCE, calibration_measurements(calibration)))
    sources.append(("costs table", table_measurements(suite)))
    roots = dict.fromkeys(root for spec in specs for root in spec.data_roots())
    return CostBook(suite.device, sources, train_counter(roots))
