"""The loopback suite as a tool: espssl test / make demo on real virtual boards, JUnit, logs, peers."""

import os
import signal
import socket
import time
import ssl
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from espconn import binfmt
from espssl import certs
from espssl.hil import peers, sectors
from espssl.hil.pki import make_pki
from espssl.vboard import cli as vboard

pytestmark = [pytest.mark.vboard, pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ESPSSL = [sys.executable, "-m", "espssl"]
HEAP = "176K"  # see espssl.hil.plugin.VBOARD_HEAP


def _env(tmp_path):
    env = dict(os.environ)
    env["ESPSSL_VBOARD_DIR"] = str(tmp_path / "no-running-board")
    env["ESPSSL_BACKUP_DIR"] = str(tmp_path / "backups")
    return env


def _junit(path):
    cases = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        kind = "passed"
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                kind = child.tag
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        cases[tc.get("name")] = (kind, props)
    return cases


def _outside_fs(image, flash):
    """The flash image without MicroPython's filesystem (which deploy writes to)."""
    from espssl import layout

    fs = layout.load("esp8266-" + flash.lower()).filesystem
    data = image.read_bytes()
    return data[: fs[0]] + data[fs[1] :]


def test_suite_on_two_boards_in_parallel(tmp_path):
    dirs = [tmp_path / "b1", tmp_path / "b2"]
    ports = [vboard.start(d, flash=f, heap=HEAP) for d, f in zip(dirs, ("4M", "1M"))]
    before = [_outside_fs(d / "flash.bin", f) for d, f in zip(dirs, ("4M", "1M"))]
    try:
        junit, logs = tmp_path / "junit.xml", tmp_path / "logs"
        cmd = ESPSSL + ["test", "--junit", str(junit), "--logs", str(logs)]
        for p in ports:
            cmd += ["--port", p]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=600)
    finally:
        for d in dirs:
            vboard.stop(d)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    # xdist's controller wrote both boards' sectors and put them back (deploy changed only the filesystem)
    assert [_outside_fs(d / "flash.bin", f) for d, f in zip(dirs, ("4M", "1M"))] == before
    assert out.count("restored as it was before the run (read back: identical)") == 4
    cases = _junit(junit)
    names = [n for n in cases]
    # every case ran on both boards (parametrized by port)
    ids = [os.path.basename(p) for p in ports]
    for i in ids:
        assert sum(1 for n in names if i in n) >= 14, names
    assert not [n for n, (k, _) in cases.items() if k in ("failure", "error")]
    # passed cases carry the heap figures in the JUnit XML; skips carry their reason
    passed = [props for k, props in cases.values() if k == "passed"]
    assert passed and all("heap_before" in p and "heap_after" in p for p in passed)
    # the summary table and one log per board and test
    assert "espssl loopback summary" in out and "free before" in out
    assert "gc.mem_free() right after gc.collect()" in out and "not a leak" in out  # says what it measures
    for i in ids:
        board_logs = list((logs / ("dev_pts_" + i)).glob("*.log"))
        assert len(board_logs) >= 14
        text = (logs / ("dev_pts_" + i) / ("test_api_misuse_error_codes_dev_pts_%s_.log" % i)).read_text()
        assert "espconn_secure_set_size(1, 0)" in text and "RESULT" in text


def test_suite_starts_its_own_virtual_board(tmp_path):
    junit = tmp_path / "junit.xml"
    cmd = ESPSSL + ["test", "--junit", str(junit), "--logs", str(tmp_path / "logs"), "--", "-k", "misuse or oversize"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cases = _junit(junit)
    assert {n.split("[")[0] for n in cases} == {"test_api_misuse_error_codes", "test_client_oversize_record"}
    assert all(k == "passed" for k, _ in cases.values())


def _espssl(args, tmp_path, env, timeout=300):
    return subprocess.run(ESPSSL + [str(a) for a in args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("args,words", [
    (["--port", "/dev/ttyUSB-espssl-absent"], "no serial port /dev/ttyUSB-espssl-absent"),
    (["--certs", "/nonexist"], "--certs /nonexist: cannot read /nonexist/ca.pem"),
    (["--junit", "/proc/j.xml"], "/proc/j.xml: No such file or directory"),
])
def test_bad_input_is_one_line_before_any_case(tmp_path, args, words):
    proc = _espssl(["test"] + args, tmp_path, _env(tmp_path), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("A fatal error occurred: ") and words in proc.stderr


def test_real_board_needs_the_hosts_lan_address(tmp_path):
    # A real board cannot reach 127.0.0.1 on the host: refused before anything touches the port.
    port = tmp_path / "ttyUSB-stand-in"
    port.write_text("")  # exists, but is no pty: taken for a real board
    proc = _espssl(["test", "--port", port], tmp_path, _env(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "pass --host with this machine's LAN address" in proc.stderr


def test_a_board_that_does_not_answer_is_one_line_once(tmp_path):
    """A port with no board behind it: the suite says so once, before any case (not once per case)."""
    import pty

    master, slave = pty.openpty()  # a pty nobody answers on
    try:
        proc = _espssl(["test", "--port", os.ttyname(slave), "--no-deploy"], tmp_path, _env(tmp_path), timeout=300)
    finally:
        os.close(master)
        os.close(slave)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert text.count("is not responding to esptool") == 1 and "(nothing ran)" in text, text
    assert len(text.strip().splitlines()) == 1, text
    assert "Traceback" not in text and "passed" not in text


# ---------------------------------------------------------------- the board as the suite found it

USER_CASES = """
def test_a_case_that_fails(board, hil):
    board.run("x = 1")
    assert False, "fails on purpose"


def test_a_slow_case(board, hil):
    board.run("import time\\ntime.sleep(60)", timeout=120)


def test_the_board_goes_away(board, hil):
    import os
    from espssl.vboard import cli

    cli.stop(os.environ["ESPSSL_VBOARD_DIR"])
"""


@pytest.fixture
def users_board(tmp_path):
    """The user's running virtual board: their CA bin at the CA sector 0xF0 and another bin at 0xFF.

    Yields (env, flash image path, the user's backup dir).
    """
    d = tmp_path / "vb"
    vboard.start(d, flash="4M", heap=HEAP)
    env = _env(tmp_path)
    env["ESPSSL_VBOARD_DIR"] = str(d)
    try:
        for name, sector in (("users.cer", "0xF0"), ("users_other.cer", "0xFF")):
            der = certs.cert_der(certs.make_cert(name, certs.new_key(1024), is_ca=True))
            (tmp_path / (name + ".bin")).write_bytes(binfmt.entry(name, der))
            proc = _espssl(["flash-ca", "--sector", sector, tmp_path / (name + ".bin")], tmp_path, env, 120)
            assert proc.returncode == 0, proc.stderr
        (tmp_path / "test_user_cases.py").write_text(USER_CASES)
        yield env, d / "flash.bin", tmp_path / "backups"
    finally:
        vboard.stop(d)


def _listing(d):
    return sorted(p.name for p in d.iterdir())


def _sector_lines(out):
    """The sectors the suite said it writes, and those it said it restored."""
    import re

    used = re.search(r"writes sectors? ([0-9A-Fx, ]+) \(", out)
    restored = re.findall(r"sector (0x[0-9A-F]+) restored as it was before the run \(read back: identical\)", out)
    return (used.group(1).split(", ") if used else []), restored


def test_a_failing_case_leaves_the_board_as_it_was(tmp_path, users_board):
    env, image, backups = users_board
    before, listing = image.read_bytes(), _listing(backups)
    proc = _espssl(["test", "--no-deploy", "--junit", tmp_path / "j.xml", "--logs", tmp_path / "logs", "--",
                    "-k", "fails or misuse", tmp_path / "test_user_cases.py"], tmp_path, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "fails on purpose" in out, out[-3000:]
    used, restored = _sector_lines(out)
    assert len(used) == 2 and sorted(restored) == sorted(used), out[-3000:]
    assert "0xF0" not in used and "0xFF" not in used  # the user's bins: never written
    assert out.index("writes sector") < out.index("test_a_case_that_fails")  # said before any case ran
    assert image.read_bytes() == before  # the whole flash, byte for byte
    new = sorted(set(_listing(backups)) - set(listing))  # backups where the user keeps theirs
    assert [n[:12] for n in new] == sorted("ca-0x%06X-" % (int(s, 16) * 4096) for s in used for _ in "bj")
    assert not list((tmp_path / "logs").rglob("*.bin"))


def test_an_interrupted_run_leaves_the_board_as_it_was(tmp_path, users_board):
    env, image, _backups = users_board
    before = image.read_bytes()
    logs = tmp_path / "logs"
    proc = subprocess.Popen(ESPSSL + ["test", "--no-deploy", "--junit", str(tmp_path / "j.xml"), "--logs", str(logs),
                                      "--", "-k", "slow", str(tmp_path / "test_user_cases.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,  # its own process group, as a terminal's job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(600):  # until the board is inside the case
            if any("time.sleep(60)" in f.read_text() for f in logs.rglob("test_a_slow_case*.log")):
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        else:
            raise AssertionError("the slow case never started")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at the terminal: the whole process group
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    used, restored = _sector_lines(out)
    assert proc.returncode == 2 and "KeyboardInterrupt" in out and "passed" not in out, out[-3000:]
    assert "interrupted; waiting for the suite to restore the board" in out
    assert len(used) == 2 and sorted(restored) == sorted(used), out[-3000:]
    assert image.read_bytes() == before


def test_a_board_that_cannot_be_restored_says_how(tmp_path, users_board):
    """The board vanishes mid-run: the suite says so and prints, per sector, the command that restores it."""
    import shlex

    env, image, _backups = users_board
    before = image.read_bytes()
    proc = _espssl(["test", "--no-deploy", "--junit", tmp_path / "j.xml", "--logs", tmp_path / "logs", "--",
                    "-k", "goes_away", tmp_path / "test_user_cases.py"], tmp_path, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "could not restore the board" in out, out[-3000:]
    cmds = [x.split("with: ", 1)[1] for x in out.splitlines() if "espssl flash-ca --port" in x]
    assert len(cmds) == 2 and image.read_bytes() != before, out[-3000:]
    vboard.start(image.parent, heap=HEAP)  # plugged in again: a new pty
    new_port = vboard.status(image.parent)["port"]
    for cmd in cmds:
        argv = shlex.split(cmd)[1:]
        argv[argv.index("--port") + 1] = new_port
        done = _espssl(argv, tmp_path, env, 120)
        assert done.returncode == 0, done.stdout + done.stderr
    after = image.read_bytes()
    fs = slice(0x100000, 0x3FB000)  # MicroPython may touch its filesystem at boot
    assert after[: fs.start] == before[: fs.start] and after[fs.stop :] == before[fs.stop :]


def test_sectors_restore_what_was_there(tmp_path, users_board, monkeypatch):
    """No erased sector among those probed: the suite uses a sector holding data, and puts it back."""
    env, image, backups = users_board
    monkeypatch.setenv("ESPSSL_VBOARD_DIR", env["ESPSSL_VBOARD_DIR"])
    port = vboard.status(env["ESPSSL_VBOARD_DIR"])["port"]
    monkeypatch.setattr(sectors, "_MAX_PROBES", 2)  # 0xFF (the user's bin) and 0xFE
    before = image.read_bytes()
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    written, lines = [], []
    setup = sectors.place(port, pki, written, backup_dir=backups, out=lines.append)
    assert {setup["ca_sector"], setup["wrong_ca_sector"]} == {0xFE, 0xFF}
    mid = image.read_bytes()
    assert mid[0xFF000:0x100000] != before[0xFF000:0x100000]  # the user's bin replaced for the run
    found = {s: bytes(binfmt.parse(mid[s * 4096 : s * 4096 + 4096])[0][1]) for s in (0xFE, 0xFF)}
    assert found == {setup["ca_sector"]: pki["ca_der"], setup["wrong_ca_sector"]: pki["wrong_ca_der"]}
    assert sectors.restore_all(written, out=lines.append) and written == []
    assert image.read_bytes() == before, lines


def test_make_demo(tmp_path):
    proc = subprocess.run(["make", "demo", "VBOARD_DIR=%s" % (tmp_path / "vb")], capture_output=True, text=True,
                          cwd=ROOT, env=_env(tmp_path), timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    import re

    flashed = re.search(r"Wrote 4096 bytes at 0x000([0-9A-F]{2})000 \(sector 0x([0-9A-F]+)\); read back and "
                        r"compared: verified", out)
    assert flashed and flashed.group(1) == flashed.group(2), out[-4000:]
    # the suite used that CA sector as it is (the --certs CA is there) and wrote one other sector only
    assert "the CA sector 0x%s holds the --certs CA and is used unchanged" % flashed.group(2) in out
    assert "sha256 of all" in out and "verified" in out
    assert "espssl loopback summary" in out and " failed" not in out.split("espssl loopback summary")[1]
    assert "stopped the board" in out
    # It ends with what to do next; doing it gives a board with espconn and the CA bundle on it.
    nxt = out.split("== what next")[1].splitlines()
    export = next(x for x in nxt if "export ESPSSL_VBOARD_DIR=" in x).split("#")[0].strip()
    start = next(x for x in nxt if "vboard start" in x).strip()
    repl = next(x for x in nxt if "mpremote connect" in x).strip()
    assert repl.endswith(" repl") and any(">>> from espconn import *" in x for x in nxt)
    call = next(x for x in nxt if "espconn_secure_ca_enable" in x).split(">>> ")[1].split("#")[0].strip()
    *first, last = call.split("; ")  # the last statement's value is what the REPL would show
    code = "; ".join(["from espconn import *"] + first + ["print(%s)" % last])
    script = "set -e; %s; %s; %s exec '%s'" % (export, start, repl[: -len(" repl")], code)
    try:
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, env=_env(tmp_path),
                              timeout=120)
    finally:
        vboard.stop(tmp_path / "vb")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("True"), proc.stdout + proc.stderr


# ---------------------------------------------------------------- the host peers


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_server_peer_speaks_only_what_axtls_speaks(pki):
    crt, key = pki["server"]
    srv = peers.TLSServer(peers.server_context(crt, key), mode="echo").start()
    ctx = ssl.create_default_context(cafile=str(pki["ca_pem"]))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # axTLS cannot: the peer must refuse
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    assert "handshake" in (srv.join(10)["error"] or "")

    srv = peers.TLSServer(peers.server_context(crt, key), mode="echo").start()
    cli = peers.TLSClient(peers.client_context(pki["ca_pem"]), "127.0.0.1", srv.port, payload=b"abc",
                          expect=3, server_hostname="127.0.0.1").start().join(10)
    assert cli["error"] is None and cli["received"] == b"abc"
    assert cli["cipher"] in ("AES128-SHA", "AES256-SHA", "AES128-SHA256", "AES256-SHA256")  # RSA key exchange


def test_expired_and_wrong_name_peers_are_what_they_claim(pki):
    for leaf, needle in (("expired", "expired"), ("wrong_name", "match")):
        crt, key = pki[leaf]
        srv = peers.TLSServer(peers.server_context(crt, key), mode="echo").start()
        cli = peers.TLSClient(peers.client_context(pki["ca_pem"]), "127.0.0.1", srv.port,
                              server_hostname="127.0.0.1").start().join(10)
        assert needle in (cli["error"] or ""), cli


# ---------------------------------------------------------------- the README's TLS peers


def _readme_peers():
    """The openssl s_server line and the CPython script of README 'TLS peers for an axTLS board'."""
    import re

    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## TLS peers for an axTLS board")[1].split("\n## ")[0]
    sh = re.search(r"```sh\n(openssl s_server .*?)\n```", section, re.S).group(1)
    py = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return sh, py


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_listening(port, proc, timeout=30):
    """Until something listens on 127.0.0.1:PORT (read from /proc/net/tcp: a probe connection
    would be the one connection the CPython peer accepts)."""
    want = ":%04X" % port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            if any(line.split()[1].endswith(want) and line.split()[3] == "0A" for line in list(f)[1:]):
                return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    raise AssertionError("nothing listens on port %d" % port)


def test_readme_tls_peers_work_with_the_board(tmp_path):
    """Each README peer line, as written (only the port changed), serves ssl_demo on the virtual board."""
    import shutil

    if not shutil.which("openssl"):
        pytest.skip("no openssl command")
    sh, py = _readme_peers()
    env = _env(tmp_path)
    env["ESPSSL_VBOARD_DIR"] = str(tmp_path / "vb")
    port = vboard.start(tmp_path / "vb", flash="4M", heap=HEAP)
    try:
        demo = tmp_path / "out" / "demo"  # the paths the README names, relative to the clone
        for args in (["certs", "--out", demo, "--ip", "127.0.0.1"],
                     ["ca-bin", "build", "--out", demo / "ca.bin", demo / "ca.der"],
                     ["flash-ca", demo / "ca.bin"],
                     ["deploy", "--examples"]):
            proc = _espssl(args, tmp_path, env)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
        (tmp_path / "peer.py").write_text(py)
        for cmd, answer in ((["bash", "-c", sh], b"HTTP/1.0 200 ok"),
                            ([sys.executable, "peer.py"], b"hello from CPython")):
            tcp = _free_port()
            cmd = [c.replace("8443", str(tcp)) for c in cmd]
            if cmd[0] == sys.executable:
                (tmp_path / "peer.py").write_text(py.replace("8443", str(tcp)))
            peer = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                _wait_listening(tcp, peer)
                code = ("import ssl_demo\nfrom espconn import espconn_run\n"
                        "ssl_demo.SERVER_PORT = %d\nssl_demo.user_init()\n"
                        "espconn_run(4000)\nprint(bytes(ssl_demo.received[:200]))\n" % tcp)
                board = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "exec", code],
                                       capture_output=True, timeout=60)
            finally:
                os.killpg(peer.pid, signal.SIGKILL)
                peer.wait()
            got = board.stdout
            assert b"ssl_demo: connected to 127.0.0.1" in got and answer in got, (cmd, got, board.stderr)
            assert b"reconnect callback" not in got  # no handshake or certificate failure
    finally:
        vboard.stop(tmp_path / "vb")
