"""A study's state on disk and what is read from it.

Modules: layout (where every file of a study lives), outcome (the keys a trial reports and the
rule that names its final state), live (what the driver knows about its running trials and
their compute), summary (the end-of-run summary), status (`dhkd study status`).
"""
