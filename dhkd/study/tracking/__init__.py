"""A study in MLflow, written by the driver only.

Modules: tracker (Tracker: the study run and one nested run per trial), operations (each
tracking operation applied to MLflow, idempotently), outbox (operations kept on disk while the
server is down), presentation (how the study reads in the MLflow UI), provenance (fingerprint
tags, dataset inputs and kept weights of a finished run).
"""
