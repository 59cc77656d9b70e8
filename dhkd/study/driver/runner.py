"""`run_study`: a spec -> a Ray Tune experiment (new, or resumed when one of that name exists).

Order of events: validate the study folder against the spec, check that the tracking URI
answers, send what an earlier run left in the outbox, resolve (or generate) the data, open the
study run in MLflow, start (or join) Ray, measure the spec's reference (once), run Tune, then
summarise and close the study run.
A study refused before its study run is opened (resources, data, a name taken) leaves no study
folder behind when it made one, so the corrected command starts it afresh.
Only this driver talks to MLflow and Optuna; trials only report to Tune.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from dhkd.errors import ConfigError, DataError
from dhkd.runs.paths import require_writable_dir
from dhkd.runs.tracking import DEFAULT_TRACKING_URI, normalize_uri
from dhkd.study.design.spec import StudySpec, parse_spec, spec_tree
from dhkd.study.driver.budget import BudgetStopper, add_used_time, budget_state
from dhkd.study.driver.extend import check_extension, record_extension
from dhkd.study.driver.lock import DriverLock, describe
from dhkd.study.driver.reference import measure_reference
from dhkd.study.driver.searcher import open_optuna_study, reopen_failed
from dhkd.study.driver.trainable import TrialContext
from dhkd.study.state.layout import StudyPaths, digest, write_json
from dhkd.study.state.live import read_live, study_cost
from dhkd.study.state.summary import StudySummary, collect, format_summary, write_summary
from dhkd.study.tracking.presentation import NOTE, best_line, experiment_tags, study_note
from dhkd.study.tracking.tracker import STORAGE_TAG, Tracker, start_tracking_check

DEFAULT_STORAGE = Path("runs") / "ray"


class Phases:
    """Seconds each start-up phase of a run took (start-up overhead, benchmarks/bench_study.py)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {"start_at": time.time()}
        self._last = time.monotonic()

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = round(now - self._last, 3)
        self._last = now


@dataclass
class RunOptions:
    storage_path: str | Path = DEFAULT_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI
    address: str | None = None  # None: a local Ray instance; "auto": join a running cluster
    artifact_location: str | None = None
    num_cpus: int | None = None  # local Ray only
    feature_cache: str = "auto"  # auto: <storage>/features locally, the node default on a
    # cluster (~/.cache/dhkd/features or $DHKD_FEATURE_CACHE); "off"; or a folder on each node
    fit_fn: Callable | None = None  # tests: a stand-in for dhkd.training.fit.fit_units
    quiet: bool = False
    extend: bool = False  # accept a spec that only adds trials, seeds or categories
    retry_failed: bool = False  # run the FAILED trials again (same Optuna number, MLflow run)


def prepare_study_dir(
    paths: StudyPaths, spec: StudySpec, extend: bool = False
) -> tuple[bool, bool]:
    """Write the spec snapshot; returns (resumed: the study already existed, extended: its
    spec grew by more trials, seeds or categories, which `extend` allows; extend.py)."""
    tree = spec_tree(spec)
    if paths.spec.is_file():
        old_tree = yaml.safe_load(paths.spec.read_text())
        if digest(old_tree) == digest(tree):
            return True, False
        old = parse_spec(old_tree, source=str(paths.spec), base_dir=spec.base_dir)
        lines = check_extension(old, spec, extend, paths.experiment)
        record_extension(paths, old, spec, lines)
        paths.spec.write_text(yaml.safe_dump(tree, sort_keys=False))
        return True, True
    paths.dir.mkdir(parents=True, exist_ok=True)
    paths.spec.write_text(yaml.safe_dump(tree, sort_keys=False))
    return False, False


def trials_to_start(paths: StudyPaths, spec: StudySpec) -> int:
    """Ray trials a new Tuner of this study runs: trials Optuna has yet to ask for, trials it
    asked for that no Tune snapshot holds (RUNNING), and top-ups of an extension."""
    from optuna.trial import TrialState

    from dhkd.study.driver.extend import pending_topups

    study = open_optuna_study(paths, spec)
    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return max(0, spec.trials - len(trials)) + running + len(pending_topups(paths, spec, study))


def resolve_data(spec: StudySpec, paths: StudyPaths) -> Path:
    """The data root: generated once under the storage path, joined there from several roots,
    or checked to hold every category."""
    if spec.data.synthetic is not None:
        params = spec.data.synthetic.model_dump()
        out = paths.synthetic(params)
        if not (out / ".complete").is_file():
            from dhkd.data.publish import publish_folder
            from dhkd.data.synth import make_synthetic_dataset

            def generate(tmp: Path) -> None:
                make_synthetic_dataset(
                    tmp,
                    params["categories"],
                    image_size=params["image_size"],
                    seed=params["seed"],
                    n_train=params["n_train"],
                    n_test_good=params["n_test_good"],
                    n_test_defect=params["n_test_defect"],
                    difficulty=params["difficulty"],
                )
                (tmp / ".complete").write_text("ok\n")

            # another driver may have generated it meanwhile
            publish_folder(out, generate, lambda done: (done / ".complete").is_file())
        return out
    roots = spec.data_roots()
    if isinstance(spec.data.root, list):
        from dhkd.data.join import join_roots, locate_categories

        folders = locate_categories(roots, spec.data.category_names)
        return join_roots(folders, paths.joined(folders))
    root = roots[0]
    missing = [c for c in spec.data.category_names if not (root / c).is_dir()]
    if missing:
        raise DataError(
            f"data root {root} lacks categories {missing}; point data.root at a dataset in "
            "MVTec layout, or try the study with --smoke-test (generated data)"
        )
    return root


class _RayNoise(logging.Filter):
    """Drops two Ray log records that mislead here: Tune's `Tuner.restore(...)` hint on an
    interrupted run (dhkd prints its own: the same command resumes), and "Error handling
    checkpoint ... FileNotFoundError" after a driver was killed. The latter comes from the
    restored checkpoint list: the killed driver had already deleted (num_to_keep) checkpoints
    that its last experiment snapshot still listed, and Ray's _delete_fs_path checks such a
    folder outside its try. The new checkpoint is registered before that; what the exception
    skips (the trial's checkpoint index and state snapshot) its next checkpoint brings up to
    date, and a trial's stale entries are at most num_to_keep."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Resume experiment with" in str(record.msg):
            return False
        error = record.exc_info[1] if record.exc_info else None
        return not ("Error handling checkpoint" in str(record.msg)
                    and isinstance(error, FileNotFoundError))  # fmt: skip


def quiet_ray_noise() -> None:
    noise = _RayNoise()
    for name in ("ray.tune.tune", "ray.tune.execution.tune_controller"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RayNoise) for f in logger.filters):
            logger.addFilter(noise)


def _init_ray(opts: RunOptions) -> bool:
    """Start a local Ray instance (or join `opts.address`); False if Ray was already up."""
    import ray

    if ray.is_initialized():
        return False
    if opts.address:
        ray.init(address=opts.address, log_to_driver=not opts.quiet)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=not opts.quiet)
    return True


def check_resources(spec: StudySpec) -> None:
    """Fail fast when no node can ever hold one trial (Tune would wait forever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    need = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v > 0) for node in nodes):
        return
    raise ConfigError(
        f"no Ray node has the {spec.resources.cpu:g} CPU / {spec.resources.gpu:g} GPU one trial "
        f"asks for (resources: in the spec); nodes have {[dict(n) for n in nodes][:3]}. Lower "
        "resources.cpu / resources.gpu, or join a larger cluster with --address"
    )


def _tuner(
    spec: StudySpec, paths: StudyPaths, context: TrialContext, quiet: bool, fresh: bool = False
):
    """Restore the study's Tune experiment, or (new study, or `fresh`: an extension, a retry of
    FAILED trials) a new Tuner for the trials still to start; None when there are none.

    A retry is a new Tuner rather than Tuner.restore(restart_errored=True): the reopened Optuna
    trials are handed out again by the searcher (same number and params) to new Ray trials that
    start from scratch, as restart_errored would; resume_errored is not used because the failed
    attempt's checkpoint was made before its cause was fixed (bad data, a cache, the code)."""
    from ray import tune

    from dhkd.study.driver.callbacks import ProgressCallback, TrackingCallback
    from dhkd.study.driver.scheduler import PersistentASHA
    from dhkd.study.driver.searcher import OptunaSearcher
    from dhkd.study.driver.trainable import run_trial
    from dhkd.study.state.live import LiveCallback

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), resources)
    if not fresh and tune.Tuner.can_restore(str(paths.experiment)):
        return tune.Tuner.restore(str(paths.experiment), trainable, resume_unfinished=True)
    num_samples = trials_to_start(paths, spec)
    if num_samples == 0:
        return None
    scheduler = None
    if spec.scheduler.type == "asha":
        epochs = spec.final_epochs()
        scheduler = PersistentASHA(
            paths,
            spec.objective.mode,
            spec.scheduler.grace_period,
            spec.scheduler.reduction_factor,
            epochs,
        )
    callbacks = [LiveCallback(paths, spec), TrackingCallback(paths, spec)]  # in this order
    if not quiet:
        callbacks.append(ProgressCallback(paths, spec, spec.trials))
    return tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearcher(paths, spec),
            scheduler=scheduler,
            num_samples=num_samples,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str(paths.storage),
            stop=BudgetStopper(paths, spec.budget.time_s),
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=spec.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )


def _cache_dir(opts: RunOptions, paths: StudyPaths) -> str | None:
    if opts.feature_cache == "off":
        return ""
    if opts.feature_cache == "auto":
        return None if opts.address else str(paths.features)
    return str(Path(opts.feature_cache).expanduser())


def _trial_context(spec: StudySpec, data_root: Path, opts: RunOptions, paths) -> TrialContext:
    if spec.data.synthetic is None:  # resolved again so a moved checkout still finds it
        data_root = spec.data_root() or data_root
    return TrialContext(
        preset=spec.preset,
        base_overrides=spec.base_overrides,
        data_root=str(data_root),
        units=spec.units,
        metric=spec.objective.metric,
        feature_cache_dir=_cache_dir(opts, paths),
        threads=max(1, int(spec.resources.cpu)),
        fit_fn=opts.fit_fn,
    )


def run_study(spec: StudySpec, opts: RunOptions | None = None) -> StudySummary:
    """Run (or resume) the study; returns its summary. Raises DhkdError before any trial runs
    when the spec, the data or the tracking server is not usable."""
    opts = opts or RunOptions()
    if spec.data.synthetic is None:  # the same data check as `study check`, before any work
        from dhkd.data.check import require_usable

        for warning in require_usable(spec.data_roots(), spec.data.category_names):
            if not opts.quiet:
                print(f"[dhkd] {warning}")
    start = time.monotonic()
    paths = StudyPaths(Path(opts.storage_path), spec.name)
    require_writable_dir(opts.storage_path, "--storage-path")  # before any work
    cache = _cache_dir(opts, paths)
    if cache:  # every trial would fail on it
        require_writable_dir(cache, "the feature cache (--feature-cache)")
    uri = normalize_uri(opts.tracking_uri)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # snapshots close to the truth
    # a failed trial is one progress line and its error in MLflow (error tag, error.txt), not
    # Ray's traceback on the console
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    phases = Phases()
    tracking_ready = start_tracking_check(uri)
    phases.mark("tracking_check")
    made = not paths.experiment.exists()
    lock = DriverLock(paths.dir).acquire()
    try:
        if lock.took_over and not opts.quiet:
            print(
                f"[dhkd] took over the lock of a driver that is gone ({describe(lock.took_over)})"
            )
        return _run_locked(spec, opts, paths, uri, start, phases, tracking_ready)
    finally:
        lock.release()
        if made and "study_run" not in phases.times:  # refused before anything ran: the
            shutil.rmtree(paths.experiment, ignore_errors=True)  # corrected command starts anew


def _run_locked(
    spec: StudySpec,
    opts: RunOptions,
    paths: StudyPaths,
    uri: str,
    start: float,
    phases: Phases,
    tracking_ready: Callable[[], None],
) -> StudySummary:
    resumed, extended = prepare_study_dir(paths, spec, opts.extend)
    if extended and not opts.quiet:
        print(f"[dhkd] extending study {spec.name}: every finished trial is kept")
    phases.mark("lock_and_spec")
    data_root = resolve_data(spec, paths)
    phases.mark("data")
    open_optuna_study(paths, spec)  # created here, once, before any trial
    write_json(paths.runtime, {"tracking_uri": uri, "artifact_location": opts.artifact_location})
    context = _trial_context(spec, data_root, opts, paths)
    phases.mark("optuna")
    started = _init_ray(opts)
    phases.mark("ray_init")
    try:
        tracking_ready()
        phases.mark("tracking_wait")
        tracker = Tracker(paths, uri, opts.artifact_location)
        tracker.check_name(spec.name)
        if tracker.pending and not opts.quiet:
            print(f"[dhkd] sending {tracker.pending} tracking operations left by an earlier run")
        tracker.flush()
        phases.mark("outbox")
        check_resources(spec)
        retried = reopen_failed(paths, spec) if opts.retry_failed else []
        if opts.retry_failed and not opts.quiet:
            listed = ", ".join(f"#{n}" for n in retried) or "none"
            print(f"[dhkd] retrying the FAILED trials of {spec.name}: {listed}")
        tags = {"dhkd.resumed": str(resumed), NOTE: study_note(spec),
                STORAGE_TAG: str(paths.storage)}  # fmt: skip
        if extended:
            tags["dhkd.extended"] = "True"
        tracker.start_study(spec.name, study_params(spec), tags, experiment_tags(spec))
        for number in retried:
            tracker.retry_trial(number)
        phases.mark("study_run")
        reference = measure_reference(
            spec, paths, Path(context.data_root), context.feature_cache_dir, opts.quiet
        )
        if reference is not None:
            tracker.submit(reference)
        phases.mark("reference")
        tune_start = time.monotonic()
        phases.times["tune_start_at"] = time.time()
        try:
            # a retried trial restarts from scratch in a new Ray trial (see _tuner)
            tuner = _tuner(spec, paths, context, opts.quiet, fresh=extended or bool(retried))
            if tuner is not None:
                quiet_ray_noise()
                tuner.fit()
        finally:  # the study run is closed (FINISHED, or KILLED to be resumed) in any case
            add_used_time(paths, time.monotonic() - tune_start)
            summary = finish_study(paths, spec, uri, time.monotonic() - start, opts.quiet)
            summary.startup = phases.times
            write_summary(paths, summary)
    finally:
        if started:
            import ray

            ray.shutdown()
    return summary


def study_params(spec: StudySpec) -> dict[str, object]:
    tree = spec_tree(spec)
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("scientific", "nuisance", "fixed"):
            flat.update({f"spec.{key}.{k}": v for k, v in value.items()})
        else:
            flat[f"spec.{key}"] = value
    return flat


def finish_study(
    paths: StudyPaths, spec: StudySpec, uri: str, wall_s: float, quiet: bool = False
) -> StudySummary:
    """Summarise, close the study run (FINISHED, or KILLED if trials remain) and flush."""
    rows, best = collect(paths, spec)
    final = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED", "FAILED")]
    exhausted = budget_state(paths).get("exhausted", False)
    complete = len(final) == len(rows) and (len(rows) >= spec.trials or exhausted)
    tracker = Tracker(paths, uri, read_runtime_artifacts(paths))
    summary = StudySummary(spec.name, complete, rows, best, uri, paths.experiment, wall_s=wall_s,
                           compute=study_cost(read_live(paths), spec.resources.gpu))  # fmt: skip
    summary_file = write_summary(paths, summary)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(summary_file, Path(tmp) / "summary.json")
        shutil.copy(paths.spec, Path(tmp) / "spec.yaml")
        counts = summary.counts()
        metrics = {f"trials_{k.lower()}": float(v) for k, v in counts.items()}
        if best:
            metrics["best_objective"] = float(best["value"])
        for key in ("wall_s", "cpu_s", "gpu_s"):
            metrics[f"cost/{key.removesuffix('_s')}_hours"] = summary.compute[key] / 3600
        note = study_note(spec, outcome_text(spec, summary))
        best_number = best["number"] if best else None
        tracker.end_study("FINISHED" if complete else "KILLED", metrics, tmp, note, best_number)
        summary.tracking_pending = tracker.flush()
    summary.tracking_rejected = tracker.rejected
    write_summary(paths, summary)
    if not quiet:
        print(format_summary(spec, summary))
    return summary


def outcome_text(spec: StudySpec, summary: StudySummary) -> str:
    """The study note's outcome: trial counts (what stopped the PRUNED ones) and the best."""
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts().items()) or "no trials"
    state = "finished" if summary.complete else "not finished (rerun the command to resume)"
    return f"**Trials**: {counts}; the study is {state}\n\n{best_line(spec, summary.best)}"


def read_runtime_artifacts(paths: StudyPaths) -> str | None:
    from dhkd.study.state.layout import read_json

    return (read_json(paths.runtime, {}) or {}).get("artifact_location")
