"""dhkd: hyperparameter and ablation studies of knowledge-distillation anomaly detectors."""

__version__ = "0.1.0"
