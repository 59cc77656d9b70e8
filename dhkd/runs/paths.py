"""Output locations checked before any work: every command that writes calls one of these
first, so that a file where a folder is expected, a folder where a file is expected, a location
it cannot write to, or an output that is one of its own inputs is one line (DhkdError, exit 2)
instead of a traceback after the work is done. Nothing is left behind: writing is tried with a
file that is removed at once."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from dhkd.errors import DhkdError
from dhkd.runs.layout import RunFolder


def existing_ancestor(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists (a dangling link counts as absent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_folder(folder: Path) -> bool:
    """Whether a file can be created in the existing folder (tried, as permissions do not
    tell for root or a read-only file system)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".dhkd-write-check-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def require_writable_dir(path: str | Path, what: str) -> Path:
    """`path` as a folder that exists or can be created and written to."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise DhkdError(f"{what} {path} is a file, not a folder; pass a folder path")
    base = existing_ancestor(path.absolute())
    if not base.is_dir():
        raise DhkdError(
            f"{what} {path} cannot be created: {base} is a file, not a folder; pass a folder path"
        )
    if not writable_folder(base):
        raise DhkdError(f"{what} {path} is not writable ({base}); pass a folder you can write to")
    return path


def require_writable_file(path: str | Path, what: str) -> Path:
    """`path` as a file that can be written (created, or replaced when it exists)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DhkdError(f"{what} {path} is a folder, not a file; pass a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise DhkdError(f"{what} {path} is not writable; pass a file you can write to")
    base = existing_ancestor(path.absolute().parent)
    if not base.is_dir():
        raise DhkdError(
            f"{what} {path} cannot be created: {base} is a file, not a folder; pass a file path "
            "in a folder"
        )
    if not writable_folder(base):
        raise DhkdError(f"{what} {path} is not writable ({base}); pass a file you can write to")
    return path


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def require_not_input(out: str | Path, inputs: Iterable[str | Path], what: str) -> None:
    """Refuse an output that is one of the command's inputs (a file, or a folder given as
    input, or a location inside such a folder)."""
    out = Path(out).expanduser()
    for item in inputs:
        item = Path(item).expanduser()
        if _same(out, item) or (item.is_dir() and _inside(out, item)):
            raise DhkdError(
                f"{what} {out} would write over the input {item}; pass an output outside it"
            )


def require_outside(
    out: str | Path, written: Iterable[str | Path], inputs: Iterable[str | Path], what: str
) -> None:
    """Refuse when a path the command writes (`written`, under `out`) is or holds an input."""
    for target in written:
        target = Path(target).expanduser()
        for item in inputs:
            item = Path(item).expanduser()
            if _same(target, item) or _inside(item, target):
                raise DhkdError(
                    f"{what} {out} would write over the input {item}; pass an output outside it"
                )


def require_run_out(out: str | Path, overwrite: bool | None) -> Path:
    """An output folder for a new run folder (layout.write_run_folder): one that does not
    exist, is empty, or holds a run that `overwrite` allows to replace (None: the command has
    no --overwrite). The run is built beside it, so its parent must be writable."""
    out = Path(out).expanduser()
    if not out.is_dir():
        return require_writable_dir(out, "--out")
    run = RunFolder(out)
    if run.holds_run():
        if not overwrite:
            names = ", ".join(p.name for p in run.run_files()[:3])
            fix = (
                ""
                if overwrite is None
                else "--overwrite to replace it once the new run completes, or "
            )
            raise DhkdError(f"--out {out} holds a run ({names}, ...); pass {fix}a new folder")
    elif any(out.iterdir()):
        raise DhkdError(f"--out {out} is not empty and holds no run; pass a new or empty folder")
    require_writable_dir(out.absolute().parent, f"the folder of --out {out}")
    return out
