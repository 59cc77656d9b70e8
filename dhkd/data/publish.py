"""Folders a study builds under its storage path (generated data, joined roots), published in
one step: built in a temporary sibling, then renamed, so that a killed run never leaves half a
folder and two drivers building the same one keep a single copy."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def publish_folder(out: Path, fill: Callable[[Path], None], ready: Callable[[Path], bool]) -> Path:
    """fill(tmp) builds the folder in a temporary sibling of `out`, which is then renamed to
    `out`; if the rename fails because another process published `out` meanwhile, that copy
    is kept when ready(out), else the error is raised."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    fill(tmp)
    try:
        os.replace(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ready(out):
            raise
    return out
