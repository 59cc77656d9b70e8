"""One module per `dhkd` subcommand; each defines `register(subparsers)`.

Modules here import heavy libraries (torch, ray, mlflow) inside their handlers only, so that
`dhkd --help` stays fast.
"""
