"""One driver per study: the lock names its holder, and stale locks of gone drivers are taken."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import pytest

from dhkd.study.driver.lock import DriverLock, StudyLocked, read_lock


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write(study_dir, **record):
    study_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    base = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": None,
            "since": now, "heartbeat": now}  # fmt: skip
    (study_dir / "driver.lock").write_text(json.dumps({**base, **record}))


def test_a_second_driver_is_refused_with_the_holder_named(tmp_path):
    first = DriverLock(tmp_path).acquire()
    try:
        with pytest.raises(StudyLocked) as err:
            DriverLock(tmp_path).acquire()
        text = str(err.value)
        assert f"host {socket.gethostname()}" in text and f"pid {os.getpid()}" in text
        assert "since 20" in text
    finally:
        first.release()
    assert not (tmp_path / "driver.lock").exists()
    DriverLock(tmp_path).acquire().release()  # free again


@pytest.mark.parametrize(
    "record",
    [
        {"pid": -7},  # placeholder, replaced by a pid that has exited
        {"pid_start": "1"},  # this pid now belongs to a later process (pid reuse)
        {"host": "elsewhere", "heartbeat": time.time() - 3600},  # another host, silent
    ],
)
def test_a_stale_lock_is_taken_over(tmp_path, record):
    if record.get("pid") == -7:
        record = {"pid": _dead_pid()}
    _write(tmp_path, **record)
    lock = DriverLock(tmp_path).acquire()
    try:
        assert lock.took_over is not None
        assert read_lock(tmp_path / "driver.lock")["pid"] == os.getpid()
        assert read_lock(tmp_path / "driver.lock")["since"] == lock.record["since"]
    finally:
        lock.release()


def test_another_host_with_a_fresh_heartbeat_holds_the_lock(tmp_path):
    _write(tmp_path, host="elsewhere", pid=12345)
    with pytest.raises(StudyLocked, match="host elsewhere, pid 12345"):
        DriverLock(tmp_path).acquire()
    assert read_lock(tmp_path / "driver.lock")["host"] == "elsewhere"


def test_two_drivers_taking_one_stale_lock_at_once_one_wins(tmp_path):
    _write(tmp_path, pid=_dead_pid())
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def take():
        barrier.wait()
        try:
            outcomes.append(DriverLock(tmp_path).acquire())
        except StudyLocked as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [o for o in outcomes if isinstance(o, DriverLock)]
    assert len(won) == 1 and len(outcomes) == 4
    won[0].release()


def test_release_leaves_a_lock_taken_by_another_driver(tmp_path):
    lock = DriverLock(tmp_path).acquire()
    _write(tmp_path, host="elsewhere", pid=4242)
    lock.release()
    assert read_lock(tmp_path / "driver.lock")["pid"] == 4242
