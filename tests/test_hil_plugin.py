"""The loopback suite as a tool: espssl test / make demo on real virtual boards, JUnit, logs, peers."""

import os
import socket
import ssl
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from espssl.hil import peers
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


def test_suite_on_two_boards_in_parallel(tmp_path):
    dirs = [tmp_path / "b1", tmp_path / "b2"]
    ports = [vboard.start(d, flash=f, heap=HEAP) for d, f in zip(dirs, ("4M", "1M"))]
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
    assert "espssl loopback summary" in out and "heap before" in out
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


def test_real_board_needs_the_hosts_lan_address(tmp_path):
    # A real board cannot reach 127.0.0.1 on the host: refused before anything touches the port.
    cmd = ESPSSL + ["test", "--port", "/dev/ttyUSB-espssl-absent", "--junit", str(tmp_path / "j.xml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=120)
    assert proc.returncode == 4
    assert "pass --hil-host with the host's LAN address" in proc.stdout + proc.stderr


def test_make_demo(tmp_path):
    proc = subprocess.run(["make", "demo", "VBOARD_DIR=%s" % (tmp_path / "vb")], capture_output=True, text=True,
                          cwd=ROOT, env=_env(tmp_path), timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    assert "Wrote 4096 bytes at 0x000F0000 (sector 0xF0); read back and compared: verified" in out
    assert "sha256 of all" in out and "verified" in out
    assert "espssl loopback summary" in out and " failed" not in out.split("espssl loopback summary")[1]
    assert "stopped the board" in out


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
