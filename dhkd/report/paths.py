"""Paths in a report that is meant to be committed: nothing specific to the machine it ran on.

A report names where it read from (the tracking URI, the Optuna storage, the command that made
it). Absolute paths in that text are rewritten: below the working directory they become
relative to it (what a reader in a checkout can use), anywhere else only their last component
is kept behind "…/" (the rest names someone's machine).
"""

from __future__ import annotations

import re
from pathlib import Path

# An absolute path: "/" at the start of a token (after whitespace, a quote, a backtick, "(",
# "[" or "="), or right after the "sqlite:///" or "file://" of a URI.
ABSOLUTE = re.compile(r"(?:(?<=sqlite:///)|(?<=file://)|(?<![^\s`'\"(\[=]))/[^\s`'\"),;\]]+")


def portable_path(path: str | Path, base: Path | None = None) -> str:
    """`path` relative to `base` (default: the working directory) when below it, else "…/name"."""
    path, base = Path(path), (base or Path.cwd()).resolve()
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.resolve().relative_to(base)) or "."
    except ValueError:
        return f"…/{path.name}"


def portable_text(text: str, base: Path | None = None) -> str:
    """`text` with every absolute path in it made portable (see portable_path)."""
    return ABSOLUTE.sub(lambda m: portable_path(m.group(0), base), text)
