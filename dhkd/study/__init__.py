"""Studies: a YAML spec -> a Ray Tune experiment driven by a persistent Optuna study,
tracked in MLflow as one study run with one nested run per trial.

Package map:
    design/     what a study is
        spec          the typed study file (StudySpec)
        space         search-space parameters -> Optuna suggestions
        smoke         `--smoke-test`: the same study made tiny enough for CI
        units         (category, seed) units and a trial's metrics over more of them
    driver/     running it
        runner        `run_study`: spec -> Ray Tune experiment (new or resumed)
        searcher      Ray Searcher over a persistent Optuna study
        scheduler     ASHA with its rung state on disk
        trainable     one trial = one configuration trained on every (category, seed) unit
        callbacks     tracking + progress lines in the driver
        reference     the spec's reference method, measured once per unit
        extend        more trials, seeds or categories, keeping every finished trial
        lock          one driver per study (driver.lock)
        budget        wall-time and GPU-hour budgets over every run of the study
    tracking/   the study in MLflow (driver only)
        tracker       Tracker: study run, nested trial runs, outbox when the server is down
        operations    each tracking operation applied to MLflow, idempotently
        outbox        operations kept on disk until the server takes them
        presentation  how the study reads in the MLflow UI (views, notes, routes)
        provenance    fingerprint tags, dataset inputs and kept weights of a finished run
    state/      the study folder and what is read from it
        layout        where every file of a study lives; atomic JSON helpers
        outcome       the keys a trial reports and the rule that names its final state
        live          live.json: running trials and their compute
        summary       the end-of-run summary
        status        `dhkd study status`, from the folder or from MLflow alone
"""

from dhkd.study.design.smoke import smoke_spec
from dhkd.study.design.spec import StudySpec, load_spec

__all__ = ["StudySpec", "load_spec", "smoke_spec"]
