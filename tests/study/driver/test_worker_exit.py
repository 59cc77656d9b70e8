"""A SystemExit that Python cannot raise (SIGTERM landing in a GC callback) prints nothing."""

import subprocess
import sys

SCRIPT = """
import gc, sys, weakref
{install}

class Thing:
    pass

def raise_exit(_):
    raise SystemExit(1)

def raise_value(_):
    raise ValueError("a real problem")

a, b = Thing(), Thing()
keep = [weakref.ref(a, raise_exit), weakref.ref(b, raise_value)]
del a
gc.collect()
del b
gc.collect()
print("still running")
"""


def _run(install: str) -> subprocess.CompletedProcess:
    code = SCRIPT.format(install=install)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_plain_python_prints_both_tracebacks():
    result = _run("")
    assert "SystemExit" in result.stderr and "ValueError" in result.stderr


def test_hook_drops_the_exit_and_keeps_other_errors():
    install = (
        "from dhkd.study.driver.trainable import install_quiet_exit_hook\n"
        "install_quiet_exit_hook()\ninstall_quiet_exit_hook()"
    )
    result = _run(install)
    assert result.returncode == 0, result.stderr
    assert "still running" in result.stdout
    assert "SystemExit" not in result.stderr
    assert "ValueError: a real problem" in result.stderr
    assert result.stderr.count("Traceback") == 1
