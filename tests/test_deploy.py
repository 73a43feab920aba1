"""espssl deploy on the real virtual board: .mpy compile, copy only what changed, verify."""

import hashlib
import os
import pty
import re
import shutil

import pytest

from espssl import deploy
from espssl.vboard import cli as vboard
from conftest import espssl

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
    return espssl(argv, capsys)


def board_hashes(port, dest, names=None):
    from mpremote.transport_serial import SerialTransport

    t = SerialTransport(port)
    try:
        t.enter_raw_repl(soft_reset=True)  # a fresh heap: deploy left espconn imported
        names = names or [f.name for f in t.fs_listdir(dest) if f.name != deploy.MANIFEST]
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


def board_files(port):
    """{path: sha256} of every file on the board's filesystem (mpremote raw REPL, soft reset)."""
    with deploy.Board(port) as b:
        return deploy.remote_hashes(b, "")


def put_files(port, files):
    from mpremote.transport_serial import SerialTransport

    t = SerialTransport(port)
    try:
        t.enter_raw_repl(soft_reset=True)
        for path, data in files.items():
            parts = path.strip("/").split("/")[:-1]
            for i in range(len(parts)):
                d = "/" + "/".join(parts[: i + 1])
                if not t.fs_exists(d):
                    t.fs_mkdir(d)
            t.fs_writefile(path, data)
    finally:
        t.exit_raw_repl()
        t.close()


USER_FILES = {
    "/lib/mylib.py": b"X = 1\n",
    "/lib/umqtt/simple.py": b"# the user's MQTT client\n",
    "/main_app.py": b"print('app')\n",
}


def test_deploy_leaves_the_users_files_alone(port, capsys):
    put_files(port, USER_FILES)
    before = board_files(port)
    rc, out, err = run(["deploy", "--port", port, "--examples"], capsys)
    assert rc == 0, err
    after = board_files(port)
    ours = {p for p in after if p.startswith("/lib/espconn/")} | {
        "/lib/" + f.name for f in deploy.EXAMPLES_SRC.glob("*.py")}
    # Every file that is not ours is there, byte for byte as before (boot.py included).
    assert {p: h for p, h in after.items() if p not in ours} == {p: h for p, h in before.items() if p not in ours}
    for path, data in USER_FILES.items():
        assert after[path] == hashlib.sha256(data).hexdigest()
    assert "/boot.py" in after
    # The manifest on the board lists exactly what deploy put in the package folder.
    with deploy.Board(port) as b:
        listed = deploy.parse_manifest(b.t.fs_readfile("/lib/espconn/" + deploy.MANIFEST).decode())
    assert set(listed) == {p for p in ours if not p.endswith(deploy.MANIFEST)}


def test_edited_example_is_not_overwritten(port, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ESPSSL_BACKUP_DIR", str(tmp_path / "backups"))
    rc, out, err = run(["deploy", "--port", port, "--examples"], capsys)
    assert rc == 0, err
    edited = deploy.EXAMPLES_SRC.joinpath("ssl_demo.py").read_bytes().replace(
        b"SERVER_PORT = 8443", b"SERVER_PORT = 9443  # my server")
    put_files(port, {"/lib/ssl_demo.py": edited})
    rc, out, err = run(["deploy", "--port", port, "--examples"], capsys)
    assert rc == 0, err
    assert "left alone: /lib/ssl_demo.py differs from what deploy put there" in out
    assert board_files(port)["/lib/ssl_demo.py"] == hashlib.sha256(edited).hexdigest()
    rc, out, err = run(["deploy", "--port", port, "--examples", "--force"], capsys)
    assert rc == 0, err
    saved = list((tmp_path / "backups").glob("file-*-ssl_demo.py"))
    assert len(saved) == 1 and saved[0].read_bytes() == edited
    src = deploy.EXAMPLES_SRC.joinpath("ssl_demo.py").read_bytes()
    assert board_files(port)["/lib/ssl_demo.py"] == hashlib.sha256(src).hexdigest()


@pytest.mark.parametrize("dest", ["/", "/lib", "/lib/", "lib", "/rom", "/lib/my-pkg"])
def test_dest_that_is_not_a_package_folder_refused(port, dest, capsys):
    before = board_files(port)
    rc, out, err = run(["deploy", "--port", port, "--dest", dest], capsys)
    assert rc == 2
    assert "is not a package folder" in err and len(err.strip().splitlines()) == 1
    assert board_files(port) == before


def test_dest_holding_other_files_refused(port, capsys):
    put_files(port, USER_FILES)
    before = board_files(port)
    rc, out, err = run(["deploy", "--port", port, "--dest", "/lib/umqtt"], capsys)
    assert rc == 2
    assert "/lib/umqtt holds files that espssl deploy did not put there (/lib/umqtt/simple.py)" in err
    assert board_files(port) == before


def test_users_file_in_the_package_folder_is_kept(port, src, capsys):
    dest = "/lib/t_espconn3"
    rc, out, err = run(["deploy", "--port", port, "--src", str(src), "--dest", dest], capsys)
    assert rc == 0, err
    put_files(port, {dest + "/notes.txt": b"mine\n", dest + "/conn.py": b"# my patched copy\n"})
    rc, out, err = run(["deploy", "--port", port, "--src", str(src), "--dest", dest], capsys)
    assert rc == 0, err
    assert "left alone: %s/notes.txt (not put there by espssl deploy)" % dest in out
    assert "WARNING: %s/conn.py shadows %s/conn.mpy on import" % (dest, dest) in out
    files = board_files(port)
    assert files[dest + "/notes.txt"] == hashlib.sha256(b"mine\n").hexdigest()
    assert files[dest + "/conn.py"] == hashlib.sha256(b"# my patched copy\n").hexdigest()


def test_lib_target_says_what_it_costs(port, capsys):
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith("Target /lib: "))
    assert "no ROMFS on this firmware" in line and "FLASH_2M_ROMFS" in line and "8.8 KB" in line
    assert "import espconn on the board: ok, from /lib/espconn/__init__.mpy; free heap" in out
    rc, out, err = run(["deploy", "--port", port, "--target", "romfs"], capsys)
    assert rc == 2 and "this firmware has no ROMFS partition" in err


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


def _traceback_on_board(port, dest):
    # The text of the traceback raised inside the deployed package's conn.ip_text(None).
    parent, name = dest.rsplit("/", 1)
    with deploy.Board(port) as b:
        return b.eval_code(
            "import sys, io\nsys.path.insert(0, %r)\nfrom %s import conn\n"
            "s = io.StringIO()\ntry:\n    conn.ip_text(None)\nexcept TypeError as e:\n"
            "    sys.print_exception(e, s)\nprint(repr(s.getvalue()))" % (parent, name)
        )


def test_deploy_strips_line_numbers_unless_asked(port, tmp_path, capsys):
    # -O3 by default (less heap as .mpy); --lines: mpy-cross -O0, tracebacks name the line.
    # A two-module package, deployed over the full copy an earlier test may have left at
    # this dest (deploy removes its own files first): a 1 MiB board's filesystem is small.
    pkg = tmp_path / "espconn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "conn.py").write_text('def ip_text(ip):\n    return "%d.%d.%d.%d" % (ip[0], ip[1], ip[2], ip[3])\n')
    dest = "/lib/t_espconn2"
    try:
        rc, out, err = run(["deploy", "--port", port, "--src", str(pkg), "--dest", dest], capsys)
        assert rc == 0, out + err
        tb = _traceback_on_board(port, dest)
        assert 'File "espconn/conn.py", line 1, in ip_text' in tb  # (no line table: MicroPython says 1)
        rc, out, err = run(["deploy", "--port", port, "--src", str(pkg), "--dest", dest, "--lines"], capsys)
        assert rc == 0, out + err
        assert 'File "espconn/conn.py", line 2, in ip_text' in _traceback_on_board(port, dest)  # the line that raised
    finally:
        with deploy.Board(port) as b:
            b.exec("import os\nfor f in os.listdir(%r):\n    os.remove(%r + '/' + f)\nos.rmdir(%r)" % (dest, dest, dest))
    # and on the real package, -O3 is what makes the bytecode smaller
    cmd, _ver = deploy.compiler_for(6)
    plain = deploy.compile_package(cmd, deploy.PACKAGE_SRC, tmp_path / "o3")
    lines = deploy.compile_package(cmd + ["-O0"], deploy.PACKAGE_SRC, tmp_path / "o0")
    assert sum(map(len, plain.values())) < 0.95 * sum(map(len, lines.values()))


def test_deploy_default_package_imports_on_board(port, capsys):
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 0, err
    assert "verified" in out


def test_deploy_examples_as_source(port, capsys):
    with deploy.Board(port) as b:  # an earlier test may have deployed them
        for f in deploy.EXAMPLES_SRC.glob("*.py"):
            b.exec("import os\ntry:\n os.remove(%r)\nexcept OSError:\n pass" % ("/lib/" + f.name))
    rc, out, err = run(["deploy", "--port", port, "--examples"], capsys)
    assert rc == 0, err
    names = sorted(p.name for p in deploy.EXAMPLES_SRC.glob("*.py"))
    assert "Examples in /lib: %d copied, 0 unchanged, 0 left alone; sha256: verified" % len(names) in out
    on_board = board_hashes(port, "/lib", names)
    for n in names:
        assert on_board[n] == hashlib.sha256((deploy.EXAMPLES_SRC / n).read_bytes()).hexdigest()
    rc, out, err = run(["deploy", "--port", port, "--examples"], capsys)
    assert "0 copied, %d unchanged" % len(names) in out
    # The example finds the 1 MiB profile's sectors by itself.
    with deploy.Board(port) as b:
        assert b.eval_code("import ssl_demo\nprint(repr(ssl_demo.default_sectors()))") == (0x98, 0x97)


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
    m = re.search(r"does not answer with a MicroPython raw REPL \((\d) attempts in 1 s; it last sent nothing\)", err)
    assert m and 2 <= int(m.group(1)) <= deploy.RAW_REPL_ATTEMPTS, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_raw_repl_right_after_an_esptool_session(port, capsys):
    # esptool's --after soft-reset reboots the board as it lets go of the port, and keys that
    # reach a booting board can be lost: the raw-REPL entry that follows (deploy, `espssl test`)
    # must work every time, without its caller trying again (before the fix: ~1 in 10 failed).
    from espssl import flash

    for _ in range(20):
        with flash.Session(port, "no-reset", "soft-reset", probe=False):
            pass
        with deploy.Board(port) as b:
            assert b.eval("sum(range(5))") == 10


def test_mpy_versions():
    assert deploy.decode_mpy(0xB06) == (6, 3, "x64")  # MicroPython 1.29 unix port, x64
    assert deploy.decode_mpy(6 | 3 << 8 | 9 << 10) == (6, 3, "xtensa")  # an ESP8266
    with pytest.raises(deploy.EspsslError, match="loads .mpy v7 files but this mpy-cross emits v6"):
        deploy.compiler_for(7)


def earlier_release(tmp_path):
    """What the espssl release before the manifest left in /lib/espconn: its modules as .mpy
    (compiled by the real mpy-cross; what they hold does not matter, their names do)."""
    old = tmp_path / "earlier"
    old.mkdir()
    for m in deploy.EARLIER_RELEASE_MODULES:
        (old / (m + ".py")).write_text("RELEASE = 'earlier'\n")
    cmd, _ver = deploy.compiler_for(6)
    return {deploy.DEST + "/" + rel: data for rel, data in deploy.compile_package(cmd, old, tmp_path / "mpy").items()}


def wipe(port, folder):
    with deploy.Board(port) as b:
        b.exec("import os\ntry:\n for _n in os.listdir(%r):\n  os.remove(%r + '/' + _n)\n os.rmdir(%r)\n"
               "except OSError:\n pass" % (folder, folder, folder))


def test_upgrade_from_the_release_before_the_manifest(port, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ESPSSL_BACKUP_DIR", str(tmp_path / "backups"))
    wipe(port, deploy.DEST)
    old = earlier_release(tmp_path)
    put_files(port, old)
    before = board_files(port)
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 0, err
    said = [x for x in out.splitlines() if "earlier espssl" in x]
    assert said == ["/lib/espconn was deployed by an earlier espssl (%d .mpy files, no manifest): saved to %s, "
                    "replacing it" % (len(old), tmp_path / "backups")], out
    # Every old file was saved, byte for byte, before it was replaced or removed.
    for path, data in old.items():
        saved = list((tmp_path / "backups").glob("file-*-lib-espconn-" + path.rsplit("/", 1)[1]))
        assert len(saved) == 1 and saved[0].read_bytes() == data
    assert "removed /lib/espconn/codes.mpy (an earlier deploy put it there" in out  # gone from the package
    after = board_files(port)
    pkg = {p for p in after if p.startswith(deploy.DEST + "/")}
    assert pkg == {deploy.DEST + "/" + r.with_suffix(".mpy").as_posix() for r in deploy.package_files()} | {
        deploy.DEST + "/" + deploy.MANIFEST}
    assert {p: h for p, h in after.items() if p not in pkg} == {p: h for p, h in before.items() if p not in old}
    assert "import espconn on the board: ok, from /lib/espconn/__init__.mpy" in out


@pytest.mark.parametrize("extra", [{"/lib/espconn/mylib.py": b"X = 1\n"},  # the user's module in it
                                   {"/lib/espconn/check.mpy": b"M\x06\x00\x1f"}])  # not that release's
def test_folder_not_an_earlier_release_is_still_refused(port, tmp_path, extra, capsys):
    wipe(port, deploy.DEST)
    put_files(port, dict(earlier_release(tmp_path), **extra))
    before = board_files(port)
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 2
    assert "/lib/espconn holds files that espssl deploy did not put there" in err and next(iter(extra)) in err
    assert "earlier espssl" not in out
    assert board_files(port) == before
    wipe(port, deploy.DEST)
