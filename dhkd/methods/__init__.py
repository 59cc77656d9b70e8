"""Anomaly-detection methods: one folder per method, named by the registry (registry.py).

docs/methods.md says how to add one; methods/base.py is what a method's training unit provides.
"""
