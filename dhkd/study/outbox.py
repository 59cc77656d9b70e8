"""Tracking operations kept on disk while the tracking server cannot take them.

One JSON object per line in `outbox.jsonl`, in the order they happened. An operation that
names local files (artifacts) gets a private copy under `outbox/<id>/`, because the trial
checkpoint it came from may be deleted before the server is back. Replaying applies the
operations in order and keeps what could not be applied.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

FILE_KEYS = ("artifacts",)  # operation keys that hold a local folder


class Outbox:
    def __init__(self, path: Path, files: Path) -> None:
        self.path = Path(path)
        self.files = Path(files)

    def __len__(self) -> int:
        return len(self.read())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        ops = []
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    ops.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a killed driver
                    continue
        return ops

    def append(self, op: dict[str, Any]) -> None:
        op = dict(op)
        for key in FILE_KEYS:
            src = op.get(key)
            if src and Path(src).exists() and not Path(src).is_relative_to(self.files):
                dest = self.files / uuid.uuid4().hex
                shutil.copytree(src, dest)
                op[key] = str(dest)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(op, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _rewrite(self, ops: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(op, default=str) + "\n" for op in ops))
        os.replace(tmp, self.path)

    def replay(self, apply: Callable[[dict[str, Any]], bool]) -> int:
        """Apply operations in order until `apply` returns False (server down); returns how
        many remain. `apply` returns True when the operation is done (or must be dropped)."""
        ops = self.read()
        done = 0
        for op in ops:
            if not apply(op):
                break
            done += 1
            for key in FILE_KEYS:
                if op.get(key) and Path(op[key]).is_relative_to(self.files):
                    shutil.rmtree(op[key], ignore_errors=True)
        remaining = ops[done:]
        if remaining:
            self._rewrite(remaining)
        elif self.path.exists():
            self.path.unlink()
        return len(remaining)
