"""Reports of studies read back from MLflow: per-category tables in the DHKD paper's layout
(Markdown, LaTeX, CSV) with provenance, paired tests, figures, and published reference columns.

Modules: collect (MLflow -> StudyData), select (which trial each column shows), tables (the
table model), render (Markdown / LaTeX / CSV / provenance), stats (Wilcoxon + Holm), published
(reference numbers with sources), optuna_study (optuna.db or a study rebuilt from MLflow),
figures / figures_optuna (matplotlib object API), readme (the index page), build (all of it).
"""

from dhkd.report.build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
