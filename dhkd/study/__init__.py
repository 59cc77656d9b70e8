"""Studies: a YAML spec -> a Ray Tune experiment driven by a persistent Optuna study,
tracked in MLflow as one study run with one nested run per trial.

Modules: spec (the typed study file), space (search space -> Optuna suggestions), searcher
(Ray Searcher over a persistent Optuna study), scheduler (ASHA with its rung state on disk),
trainable (one trial = one configuration trained on every (category, seed) unit), tracking
(MLflow with an outbox for a tracking server that is down), callbacks (tracking + progress in
the driver), runner (`run_study`), layout (where each file of a study lives).
"""

from dhkd.study.smoke import smoke_spec
from dhkd.study.spec import StudySpec, load_spec

__all__ = ["StudySpec", "load_spec", "smoke_spec"]
