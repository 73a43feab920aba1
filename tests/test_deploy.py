"""espssl deploy on the real virtual board: .mpy compile, copy only what changed, verify."""

import hashlib
import os
import pty
import shutil

import pytest

from espssl import deploy
from espssl.cli import main
from espssl.vboard import cli as vboard

pytestmark = pytest.mark.vboard


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    d = tmp_path_factory.mktemp("vboard-deploy")
    # The 64-bit unix port needs about five times a board's 38K to import espconn
    # (deploy's import check fails otherwise): as in the loopback suite.
    p = vboard.start(d, flash="1M", heap="176K")
    yield p
    vboard.stop(d)


@pytest.fixture
def src(tmp_path):
    """A copy of the real package to modify."""
    dst = tmp_path / "espconn"
    shutil.copytree(deploy.PACKAGE_SRC, dst, ignore=shutil.ignore_patterns("__pycache__", "test_*"))
    return dst


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def board_hashes(port, dest, names=None):
    from mpremote.transport_serial import SerialTransport

    t = SerialTransport(port)
    try:
        t.enter_raw_repl(soft_reset=True)  # a fresh heap: deploy left espconn imported
        names = names or [f.name for f in t.fs_listdir(dest)]
        return {n: t.fs_hashfile(dest + "/" + n, "sha256").hex() for n in names}
    finally:
        t.exit_raw_repl()
        t.close()


def test_deploy_copies_only_changes_and_verifies(port, src, capsys):
    dest = "/lib/t_espconn"
    rc, out, err = run(["deploy", "--port", port, "--src", str(src), "--dest", dest], capsys)
    assert rc == 0, out + err
    n = len(list(src.glob("*.py")))
    assert "%d copied, 0 unchanged" % n in out and "verified" in out
    # What is on the board is byte for byte what mpy-cross made (hashes read with mpremote).
    on_board = board_hashes(port, dest)
    assert sorted(on_board) == sorted(p.stem + ".mpy" for p in src.glob("*.py"))

    rc, out, _ = run(["deploy", "--port", port, "--src", str(src), "--dest", dest], capsys)
    assert rc == 0 and "0 copied, %d unchanged, 0 removed" % n in out

    # Change one module: only it is copied; a stale file of ours is removed.
    (src / "errors.py").write_text((src / "errors.py").read_text() + "\n_DEPLOY_TEST = 1\n")
    extra = src / "zz_extra.py"
    extra.write_text("X = 1\n")
    rc, out, _ = run(["deploy", "--port", port, "--src", str(src), "--dest", dest], capsys)
    assert rc == 0 and "2 copied, %d unchanged, 0 removed" % (n - 1) in out
    assert "/errors.mpy" in out and "/zz_extra.mpy" in out
    extra.unlink()
    rc, out, _ = run(["deploy", "--port", port, "--src", str(src), "--dest", dest], capsys)
    assert rc == 0 and "0 copied, %d unchanged, 1 removed" % n in out
    assert "zz_extra.mpy" not in board_hashes(port, dest)


def test_deployed_files_are_mpy_cross_output(port, src, tmp_path, capsys):
    dest = "/lib/t_espconn2"
    rc, out, _ = run(["deploy", "--port", port, "--src", str(src), "--dest", dest], capsys)
    assert rc == 0
    cmd, _ver = deploy.compiler_for(6)
    files = deploy.compile_package(cmd, src, tmp_path / "mpy")
    on_board = board_hashes(port, dest)
    for rel, data in files.items():
        assert data[:2] == b"M\x06"  # .mpy magic and version 6
        assert data[2] >> 2 == 0  # no architecture: bytecode only, loads on any v6 board
        assert on_board[rel] == hashlib.sha256(data).hexdigest()


def test_deploy_default_package_imports_on_board(port, capsys):
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 0, err
    assert "verified" in out


def test_deploy_examples_as_source(port, capsys):
    rc, out, err = run(["deploy", "--port", port, "--examples"], capsys)
    assert rc == 0, err
    names = sorted(p.name for p in deploy.EXAMPLES_SRC.glob("*.py"))
    assert "Examples in /lib: %d copied, 0 unchanged; sha256: verified" % len(names) in out
    on_board = board_hashes(port, "/lib", names)
    for n in names:
        assert on_board[n] == hashlib.sha256((deploy.EXAMPLES_SRC / n).read_bytes()).hexdigest()
    rc, out, err = run(["deploy", "--port", port, "--examples"], capsys)
    assert "0 copied, %d unchanged" % len(names) in out


def test_missing_port_is_refused(capsys):
    rc, out, err = run(["deploy", "--port", "/dev/espssl-no-such-port"], capsys)
    assert rc == 2
    assert err.startswith("A fatal error occurred: cannot open /dev/espssl-no-such-port")
    assert len(err.strip().splitlines()) == 1


def test_silent_board_is_refused(monkeypatch, capsys):
    # A pty with nobody behind it: opens fine, never answers the raw REPL.
    master, slave = pty.openpty()
    try:
        monkeypatch.setattr(deploy, "RAW_REPL_TIMEOUT", 1)
        monkeypatch.setattr(deploy, "SERIAL_TIMEOUT", 0.5)
        rc, out, err = run(["deploy", "--port", os.ttyname(slave)], capsys)
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 2
    assert "does not answer with a MicroPython raw REPL" in err


def test_mpy_versions():
    assert deploy.decode_mpy(0xB06) == (6, 3, "x64")  # MicroPython 1.29 unix port, x64
    assert deploy.decode_mpy(6 | 3 << 8 | 9 << 10) == (6, 3, "xtensa")  # an ESP8266
    with pytest.raises(deploy.EspsslError, match="loads .mpy v7 files but this mpy-cross emits v6"):
        deploy.compiler_for(7)
