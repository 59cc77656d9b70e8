"""Running a study: the driver process and the Tune trainable its trials run.

Modules: runner (`run_study`), searcher (Ray Searcher over a persistent Optuna study),
scheduler (ASHA with its rung state on disk), trainable (one trial = one configuration trained
on every (category, seed) unit), callbacks (tracking + progress in the driver), reference (the
spec's reference method, measured once), extend (more trials, seeds or categories), lock (one
driver per study), budget (the study's time and GPU budget).
"""
