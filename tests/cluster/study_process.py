"""`dhkd study run|sync ...` as a subprocess whose output a test can act on while it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

from .multinode import stop_session, wait_for


class StudyProcess:
    """`dhkd study run|sync ...` in a subprocess whose output lines are collected as they come
    (with their arrival time), so a test can act on progress lines while it runs."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.start = time.time()
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dhkd", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})},
            start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def tail(self, n: int = 60) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def wait_line(self, pattern: str, timeout: float) -> re.Match:
        """The first output line matching `pattern` (waits for it)."""

        def find():
            for _, line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"the study ended without printing /{pattern}/:\n"
                                     f"{self.tail()}")  # fmt: skip
            return None

        return wait_for(find, timeout, f"a line /{pattern}/ from the study", step=0.2)

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_session(self.proc, grace=5)
            raise AssertionError(f"the study ran over {timeout:.0f} s:\n{self.tail()}") from None
        self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_session(self.proc, grace=5)
