"""Suites: the studies of a paper in one file with shared data, seeds, preset, resources and
budget (docs/suites.md).

Modules: spec (a suite file -> SuiteSpec, expanded into StudySpecs), costs (seconds per
(category, seed) unit from MLflow or the suite's costs table), plan (trials, units and expected
compute per study, against the budget), run (`dhkd suite run`: every study in order through
the study runner, the reference shared, the estimate beside the actual wall time).
"""
