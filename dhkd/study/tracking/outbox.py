"""Tracking operations kept on disk while the tracking server cannot take them.

One JSON object per line in `outbox.jsonl`, in the order they happened. An operation that
names local files (artifacts) gets a private copy under `outbox/<id>/`, because the trial
checkpoint it came from may be deleted before the server is back. Replaying applies the
operations in order and keeps what could not be applied.

The driver appends while `dhkd study sync` (another process) may replay, so:
- appends and every change of `outbox.jsonl` hold an flock on `outbox.lock` (short);
- a replay holds an flock on `outbox.replay.lock` for its whole length (one replayer at a
  time, and a driver that wants to log directly waits for an ongoing replay: order is kept);
- a replay first moves `outbox.jsonl` to `outbox.replaying.jsonl` (appending to what a
  killed replay left there), applies that file, then puts back what remains in front of
  whatever was appended meanwhile. Operations are idempotent, so a replay killed half-way
  applies some operations twice, never loses one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FILE_KEYS = ("artifacts",)  # operation keys that hold a local folder


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _parse(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    ops = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                ops.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed driver
                continue
    return ops


def _lines(ops: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(op, default=str) + "\n" for op in ops)


class Outbox:
    def __init__(self, path: Path, files: Path) -> None:
        self.path = Path(path)
        self.files = Path(files)
        self.replaying = self.path.with_name(self.path.stem + ".replaying.jsonl")
        self._append_lock = self.path.with_name(self.path.stem + ".lock")
        self._replay_lock = self.path.with_name(self.path.stem + ".replay.lock")

    def __len__(self) -> int:
        return len(self.read())

    def read(self) -> list[dict[str, Any]]:
        """Every waiting operation, in order (a replay's unfinished part first)."""
        return _parse(self.replaying) + _parse(self.path)

    def append(self, op: dict[str, Any]) -> None:
        op = dict(op)
        for key in FILE_KEYS:
            src = op.get(key)
            if src and Path(src).exists() and not Path(src).is_relative_to(self.files):
                dest = self.files / uuid.uuid4().hex
                shutil.copytree(src, dest)
                op[key] = str(dest)
        with _flock(self._append_lock), self.path.open("a") as f:
            f.write(json.dumps(op, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _take(self) -> list[dict[str, Any]]:
        """Move the outbox behind what a killed replay left; returns the operations to replay."""
        with _flock(self._append_lock):
            if self.path.is_file():
                ops = _parse(self.replaying) + _parse(self.path)
                self._write(self.replaying, ops)
                self.path.unlink()
        return _parse(self.replaying)

    def _put_back(self, remaining: list[dict[str, Any]]) -> None:
        with _flock(self._append_lock):
            if remaining:
                self._write(self.path, remaining + _parse(self.path))
            self.replaying.unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, ops: list[dict[str, Any]]) -> None:
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(_lines(ops))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def replay_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by a replay; taking it waits for a replay in another process to end."""
        return _flock(self._replay_lock)

    def replay(
        self, apply: Callable[[dict[str, Any]], bool], begin: Callable[[], None] | None = None
    ) -> int:
        """Apply operations in order until `apply` returns False (server down); returns how
        many of them remain (operations appended meanwhile wait for the next replay).
        `apply` returns True when the operation is done (or must be dropped).
        `begin` runs once the replay lock is held (e.g. to reload state another replayer saved)."""
        with self.replay_lock():
            if begin is not None:
                begin()
            ops = self._take()
            if not ops:
                self.replaying.unlink(missing_ok=True)
                return 0
            done = 0
            for op in ops:
                if not apply(op):
                    break
                done += 1
                for key in FILE_KEYS:
                    if op.get(key) and Path(op[key]).is_relative_to(self.files):
                        shutil.rmtree(op[key], ignore_errors=True)
            self._put_back(ops[done:])
            return len(ops) - done
