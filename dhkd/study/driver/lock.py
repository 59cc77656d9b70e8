"""One driver per study: `study/driver.lock` names the driver that holds the study.

The lock file is created with O_CREAT | O_EXCL (atomic on local filesystems and NFSv3+) and
holds {host, pid, pid_start, since, heartbeat}; a thread of the holder rewrites `heartbeat`
every HEARTBEAT_S seconds. Another driver finds the lock stale when
- it is on the same host and the holder's process is gone (or its pid now belongs to a
  process that started later: pid reuse), or
- it is on another host and the heartbeat is older than the stale limit
  ($DHKD_LOCK_STALE_S, default STALE_S): a host cannot see another host's processes.
A stale lock is taken over under an flock on `driver.lock.guard`, after reading it again, so
two drivers that find the same stale lock cannot both take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from dhkd.errors import DhkdError

HEARTBEAT_S = 10.0
STALE_S = 120.0


class StudyLocked(DhkdError):
    """Another live driver holds the study."""


def _stale_limit() -> float:
    return float(os.environ.get("DHKD_LOCK_STALE_S", STALE_S))


def process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (None if unknown or gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def holder_alive(holder: dict[str, Any], now: float | None = None) -> bool:
    """Whether the driver named by a lock record is (still) running."""
    now = time.time() if now is None else now
    if holder.get("host") == socket.gethostname():
        pid = int(holder.get("pid", -1))
        if pid <= 0 or not _alive(pid):
            return False
        started = process_start(pid)
        return holder.get("pid_start") is None or started is None or started == holder["pid_start"]
    return now - float(holder.get("heartbeat", 0.0)) < _stale_limit()


def describe(holder: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(float(holder.get("since", 0))))
    return f"host {holder.get('host')}, pid {holder.get('pid')}, since {since}"


class DriverLock:
    def __init__(self, study_dir: Path) -> None:
        self.path = Path(study_dir) / "driver.lock"
        self.guard = Path(study_dir) / "driver.lock.guard"
        self.record: dict[str, Any] | None = None
        self.took_over: dict[str, Any] | None = None  # the stale holder replaced, if any
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _new_record(self) -> dict[str, Any]:
        now = time.time()
        pid = os.getpid()
        return {"host": socket.gethostname(), "pid": pid, "pid_start": process_start(pid),
                "since": now, "heartbeat": now}  # fmt: skip

    def _write(self, record: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.path)

    def acquire(self) -> DriverLock:
        """Take the lock, or raise StudyLocked naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = self._new_record()
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._take_over(record)
        else:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(record))
        self.record = record
        self._thread = threading.Thread(target=self._beat, name="dhkd-lock", daemon=True)
        self._thread.start()
        return self

    def _take_over(self, record: dict[str, Any]) -> None:
        with self.guard.open("a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            holder = read_lock(self.path)
            if holder is None and self.path.exists():  # being written: give its writer a moment
                time.sleep(0.5)
                holder = read_lock(self.path)
            if holder is not None and holder_alive(holder):
                raise StudyLocked(
                    f"another driver runs this study ({describe(holder)}); wait for it to end, "
                    f"or stop it (lock file {self.path})"
                )
            self.took_over = holder
            self._write(record)

    def _ours(self, current: dict[str, Any] | None) -> bool:
        keys = ("host", "pid", "since")
        return bool(self.record and current) and all(
            current.get(k) == self.record.get(k) for k in keys
        )

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self._ours(read_lock(self.path)):
                return  # released, or taken by another driver: never overwrite its record
            self.record["heartbeat"] = time.time()
            with contextlib.suppress(OSError):
                self._write(self.record)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._ours(read_lock(self.path)):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.record = None

    def __enter__(self) -> DriverLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
