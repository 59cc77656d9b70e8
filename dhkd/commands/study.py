"""`dhkd study run|sync|status|check`: run a study file, replay its tracking outbox, show where
a study stands, validate files."""

from __future__ import annotations

import argparse

SMOKE_HELP = (
    "CI mode: the same study made tiny - preset tiny (random-init backbone), 64 px, 2 student "
    "epochs, at most 2 categories and 2 trials, one seed, CPU only, generated data standing in "
    "for an absent data root; named NAME-smoke unless --name is given"
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not positive; give 1 or more")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="run, resume and sync hyperparameter / ablation studies",
        description="Studies are YAML files (studies/*.yaml): Ray Tune runs the trials, a "
        "persistent Optuna study suggests them, MLflow records one study run with a nested run "
        "per trial.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    run = verbs.add_parser(
        "run",
        help="run a study, or resume it if one of that name exists under the storage path",
        description="Run SPEC. Running the same command again resumes an interrupted study: "
        "finished trials are kept, interrupted ones continue from their checkpoints; FAILED "
        "trials stay FAILED (exit status 1) until rerun with --retry-failed. "
        "Defaults: a local Ray instance, MLflow in sqlite:///runs/mlflow.db, Ray storage in "
        "runs/ray (relative to the working directory).",
    )
    run.add_argument("spec", help="study file, e.g. studies/quickstart.yaml")
    run.add_argument("--smoke-test", action="store_true", help=SMOKE_HELP)
    run.add_argument("--name", help="study name (default: the spec's name)")
    add_run_options(run)
    run.set_defaults(func=run_command)

    sync = verbs.add_parser(
        "sync",
        help="send tracking results kept while the MLflow server was down",
        description="Replay the outbox of study NAME (runs/ray/NAME/study/outbox.jsonl).",
    )
    sync.add_argument("name")
    sync.add_argument("--storage-path", default=None, help="Ray storage folder (runs/ray)")
    sync.add_argument("--tracking-uri", help="default: the URI the study last ran with")
    sync.set_defaults(func=sync_command)

    status = verbs.add_parser(
        "status",
        help="where a study stands: trials by state, running ones, best so far, ETA, compute",
        description="Show study NAME from any shell, while it runs or after; never writes to "
        "it. Reads the storage folder (runs/ray/NAME); where that folder is not at hand, "
        "--tracking-uri reads the picture MLflow has.",
    )
    status.add_argument("name")
    status.add_argument("--storage-path", default=None, help="Ray storage folder (runs/ray)")
    status.add_argument(
        "--tracking-uri", help="read MLflow instead, when the storage folder is not here"
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=10.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 10) until the study ends or Ctrl-C",
    )
    status.set_defaults(func=status_command)

    check = verbs.add_parser("check", help="validate study files without running them")
    check.add_argument("specs", nargs="+")
    check.add_argument("--smoke-test", action="store_true", help="also check the smoke version")
    check.set_defaults(func=check_command)


def load_for_run(path: str, smoke: bool, name: str | None):
    from dhkd.study import load_spec, smoke_spec
    from dhkd.study.design.spec import StudySpec, describe_spec_error

    spec = load_spec(path)
    if smoke:
        spec = smoke_spec(spec)
    if name is not None:
        from pydantic import ValidationError

        from dhkd.errors import ConfigError

        if not name.strip():
            raise ConfigError("--name is empty; give a study name, or leave --name out to use "
                              f"the spec's name ({spec.name})")  # fmt: skip
        try:
            spec = StudySpec.model_validate({**spec.model_dump(), "name": name})
        except ValidationError as exc:
            raise ConfigError(describe_spec_error(exc, "--name")) from None
    return spec


def add_run_options(run: argparse.ArgumentParser) -> None:
    """The options of `dhkd study run` that say where and how a study runs (also `dhkd suite
    run`'s, for each of its studies)."""
    run.add_argument(
        "--address",
        help="Ray cluster to join, e.g. auto (default: start locally); then --storage-path and "
        "the data root must be folders every node sees at the same path (e.g. NFS)",
    )
    run.add_argument("--tracking-uri", default=None, help="MLflow URI (sqlite:///runs/mlflow.db)")
    run.add_argument("--storage-path", default=None, help="Ray storage folder (runs/ray)")
    run.add_argument("--artifact-location", help="MLflow artifact root for a new experiment")
    run.add_argument(
        "--num-cpus", type=_positive_int, help="CPUs of the local Ray instance (default all)"
    )
    run.add_argument(
        "--feature-cache",
        default="auto",
        metavar="DIR|auto|off",
        help="frozen-backbone feature cache on each node; auto: STORAGE/features locally, "
        "~/.cache/dhkd/features (or $DHKD_FEATURE_CACHE) with --address",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument(
        "--extend",
        action="store_true",
        help="the study exists and SPEC only adds trials (num_samples), seeds or categories: "
        "keep every finished trial and run only the new work",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="run the study's FAILED trials again from scratch, once their cause is fixed: "
        "each keeps its Optuna trial number, params and MLflow run",
    )


def run_options(args: argparse.Namespace):
    """The study runner's RunOptions from the options of add_run_options."""
    from dhkd.runs.tracking import DEFAULT_TRACKING_URI
    from dhkd.study.driver.runner import DEFAULT_STORAGE, RunOptions

    return RunOptions(
        storage_path=args.storage_path or DEFAULT_STORAGE,
        tracking_uri=args.tracking_uri or DEFAULT_TRACKING_URI,
        address=args.address,
        artifact_location=args.artifact_location,
        num_cpus=args.num_cpus,
        feature_cache=args.feature_cache,
        quiet=args.quiet,
        extend=args.extend,
        retry_failed=args.retry_failed,
    )


def run_command(args: argparse.Namespace) -> int:
    from dhkd.study.driver.runner import run_study

    spec = load_for_run(args.spec, args.smoke_test, args.name)
    summary = run_study(spec, run_options(args))
    failed = summary.counts().get("FAILED", 0)
    if failed:
        print(f"{failed} trial(s) FAILED (their errors: the `error` tag of their MLflow runs); "
              f"once the cause is fixed, run them again with: {retry_command(args)}")  # fmt: skip
    return 0 if summary.complete and not failed else 1


def retry_command(args: argparse.Namespace) -> str:
    """The `dhkd study run` command of `args` with --retry-failed."""
    import shlex

    words = ["dhkd", "study", "run", args.spec]
    words += ["--smoke-test"] if args.smoke_test else []
    for flag in ("name", "storage_path", "tracking_uri", "address", "num_cpus", "feature_cache"):
        value = getattr(args, flag)
        if value is not None and not (flag == "feature_cache" and value == "auto"):
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return shlex.join([*words, "--retry-failed"])


def sync_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dhkd.runs.tracking import check_tracking, normalize_uri
    from dhkd.study.driver.runner import DEFAULT_STORAGE, read_runtime_artifacts
    from dhkd.study.state.layout import StudyPaths
    from dhkd.study.tracking.tracker import Tracker

    paths = StudyPaths(Path(args.storage_path or DEFAULT_STORAGE), args.name)
    if args.tracking_uri:
        if not paths.runtime.is_file():
            Tracker.open(paths)  # raises: no study there
        uri = normalize_uri(args.tracking_uri)
        tracker = Tracker(paths, uri, read_runtime_artifacts(paths))
    else:
        tracker = Tracker.open(paths)
    check_tracking(tracker.uri)
    remaining, sent = tracker.flush(), tracker.sent
    print(f"study {args.name}: sent {sent} tracking operations to {tracker.uri}, "
          f"{remaining} could not be sent")  # fmt: skip
    newer = tracker.pending - remaining
    if newer > 0:
        print(
            f"{newer} operations were added meanwhile by the running driver; it sends "
            "them itself, or run sync again"
        )
    for text in tracker.rejected:
        print(f"rejected: {text}")
    return 0 if remaining == 0 else 1


def status_command(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    from dhkd.runs.tracking import client_for
    from dhkd.study.driver.runner import DEFAULT_STORAGE
    from dhkd.study.state.layout import StudyPaths
    from dhkd.study.state.status import format_status, mlflow_status, study_status

    paths = StudyPaths(Path(args.storage_path or DEFAULT_STORAGE), args.name)
    use_mlflow = args.tracking_uri is not None and not paths.spec.is_file()
    client, uri = client_for(args.tracking_uri) if use_mlflow else (None, None)
    while True:
        status = mlflow_status(client, uri, args.name) if use_mlflow else study_status(paths)
        text = json.dumps(status, indent=1, default=str) if args.json else format_status(status)
        if args.watch and sys.stdout.isatty() and not args.json:
            text = "\033[2J\033[H" + text  # redraw in place
        print(text, flush=True)
        counts = status["counts"]
        if not args.watch or not (counts["RUNNING"] or (status["driver"] or {}).get("alive")):
            return 0
        time.sleep(args.watch)


def check_command(args: argparse.Namespace) -> int:
    import sys

    from dhkd.data.check import require_usable
    from dhkd.errors import DhkdError
    from dhkd.study import load_spec, smoke_spec

    invalid = 0
    for path in args.specs:  # every spec is checked and reported, valid or not
        try:
            spec = load_spec(path)
            if args.smoke_test:
                smoke_spec(spec)
            if spec.data.synthetic is None:  # the same data check as `study run`
                for warning in require_usable(spec.data_roots(), spec.data.category_names):
                    print(f"{path}: {warning}")
        except DhkdError as exc:
            invalid += 1
            text = str(exc)
            print(text if text.startswith(path) else f"{path}: {text}", file=sys.stderr)
            continue
        print(f"{path}: ok - {spec.name}: {spec.trials} trials x {len(spec.units)} units, "
              f"{spec.sampler.type} sampler, scheduler {spec.scheduler.type}, "
              f"search {sorted(spec.space)}")  # fmt: skip
    return 2 if invalid else 0
