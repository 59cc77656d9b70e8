"""Errors the command line reports as a message and a non-zero exit, without a traceback."""


class DhkdError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class ConfigError(DhkdError, ValueError):
    """A configuration or study spec that cannot be used."""


class DataError(DhkdError, ValueError):
    """A dataset that is missing, malformed or unusable for the requested run."""


class TrainingError(DhkdError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); what was written so far is kept."""
