"""pytest plugin of the loopback suite: boards, certificates, logs and the summary table.

Load with ``-p espssl.hil.plugin`` (``espssl test`` does).  Options:

--port P          a real board's serial port; repeat for several boards (with
                  pytest-xdist's ``-n <boards> --dist each`` worker k drives board k,
                  every case on every board; without xdist, the cases run per board).  Without it
                  the virtual board: the running one, else one started for the session.
--hil-host ADDR   where the host's TLS peers listen: 127.0.0.1 for the virtual board;
                  the host's LAN address for a real board (see README, "Real hardware").
--hil-logs DIR    one log per board and test (default out/hil/logs).
--hil-no-deploy   do not deploy espconn first (default: deploy, copying only changes).

Fixtures: ``board`` (a Dut, fresh interpreter per test), ``hil`` (the session's
certificates, sectors and peer address), ``case`` (records handshake time and
heap for the summary and the JUnit XML).
"""

import os
import re
from pathlib import Path

import pytest

from .dut import Dut

VIRTUAL = "virtual"
# The virtual board runs the 64-bit unix port: its objects take about twice an
# ESP8266's 32-bit ones, so espconn needs about five times the board's 38 KiB
# there (the espconn tests run the unix port with the same figure).
VBOARD_HEAP = "176K"


def pytest_addoption(parser):
    g = parser.getgroup("espssl-hil", "espssl loopback suite")
    g.addoption("--port", action="append", dest="hil_ports", default=[],
                help="serial port of a real board (repeat for several)")
    g.addoption("--hil-host", default=None, help="address the host's TLS peers bind to (default 127.0.0.1)")
    g.addoption("--hil-logs", default="out/hil/logs", help="directory for one log per board and test")
    g.addoption("--hil-no-deploy", action="store_true", help="skip deploying espconn before the suite")
    g.addoption("--hil-board", default=None, help="board profile (default: from the detected flash size)")
    g.addoption("--hil-certs", default=None,
                help="use the CA `espssl certs` wrote to this directory (ca.pem, ca.key.pem); its bin is "
                "expected at the profile's CA sector and written there only if it is not")
    g.addoption("--hil-vboard-heap", default=VBOARD_HEAP,
                help="GC heap of a virtual board the suite starts itself (default %(default)s)")


def pytest_configure(config):
    config.addinivalue_line("markers", "hil: a loopback case run on a board")
    config._hil_rows = []


def _ports(config):
    return config.getoption("hil_ports") or [VIRTUAL]


def pytest_generate_tests(metafunc):
    if "board_port" in metafunc.fixturenames:
        ports = _ports(metafunc.config)
        worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
        if worker and len(ports) > 1:
            # `-n <boards> --dist each`: every worker runs every case, worker k on board k.
            ports = [ports[int(worker[2:]) % len(ports)]]
        metafunc.parametrize(
            "board_port",
            [pytest.param(p, id=_port_id(p)) for p in ports],
            indirect=True, scope="session",
        )


def _port_id(port):
    return VIRTUAL if port == VIRTUAL else re.sub(r"\W+", "_", port.strip("/"))


# ---------------------------------------------------------------- session fixtures


@pytest.fixture(scope="session")
def _virtual_board(tmp_path_factory, request):
    """The running virtual board's port, or one started (and stopped) for this session."""
    from ..flash import virtual_port
    from ..vboard import cli as vboard

    port = virtual_port()
    if port:
        yield port
        return
    d = tmp_path_factory.mktemp("vboard")
    port = vboard.start(d, flash="4M", heap=request.config.getoption("hil_vboard_heap"))
    try:
        yield port
    finally:
        vboard.stop(d)


@pytest.fixture(scope="session")
def board_port(request):
    if request.param == VIRTUAL:
        return request.getfixturevalue("_virtual_board")
    return request.param


@pytest.fixture(scope="session")
def hil(board_port, request, tmp_path_factory):
    """Per board: certificates, CA sectors flashed with esptool, espconn deployed."""
    from .pki import make_pki

    config = request.config
    from ..flash import is_virtual_port

    virtual = is_virtual_port(board_port)
    host = config.getoption("hil_host") or "127.0.0.1"
    if not virtual and host.startswith("127."):
        pytest.exit(
            "a real board cannot reach the host at %s: pass --hil-host with the host's LAN "
            "address (see README, 'Real hardware')" % host, returncode=4,
        )
    work = tmp_path_factory.mktemp("hil-" + _port_id(board_port))
    pki = make_pki(work, host, config.getoption("hil_certs"))
    setup = _prepare_board(board_port, pki, work, config.getoption("hil_board"), virtual)
    if not config.getoption("hil_no_deploy"):
        from ..deploy import deploy

        deploy(board_port, out=lambda *_: None)
    if not virtual:
        _join_wifi(board_port, Path(config.getoption("hil_logs")) / _port_id(board_port) / "wifi.log")
    return dict(setup, pki=pki, host=host, port=board_port, virtual=virtual)


# Joins the Wi-Fi named in /wifi.cfg (stored by `espssl deploy --wifi-from-env`);
# prints the address, never the password.
_WIFI = r"""
import network, time
w = network.WLAN(network.STA_IF)
w.active(True)
if not w.isconnected():
    try:
        with open('/wifi.cfg') as f:
            ssid, pw = f.read().split('\n')[:2]
    except OSError:
        print("RESULT", repr({"error": "no /wifi.cfg on the board: run espssl deploy --wifi-from-env with SSID/PASSWORD set"}))
        raise SystemExit
    w.connect(ssid, pw)
    t0 = time.ticks_ms()
    while not w.isconnected() and time.ticks_diff(time.ticks_ms(), t0) < 20000:
        time.sleep_ms(200)
print("RESULT", repr({"connected": w.isconnected(), "ip": w.ifconfig()[0]}))
"""


def _join_wifi(port, log):
    with Dut(port, log) as dut:
        res = dut.result(_WIFI, timeout=40)
    if not res.get("connected"):
        pytest.exit("the board did not join the Wi-Fi: %s (log: %s)" % (res.get("error", "timeout"), log), returncode=4)


def _prepare_board(port, pki, work, board_name, virtual):
    """Write the right CA bin at the profile's CA sector and the wrong one at a free sector."""
    from .. import flash, layout

    before, after = flash.reset_modes(port, virtual)
    quiet = lambda *_: None  # noqa: E731
    with flash.Session(port, before, after) as sess:
        prof = layout.load(board_name) if board_name else sess.profile  # ROMFS-aware (flash.Session)
        fw_len = sess.firmware_len()
        right = prof.default_ca_sector
        spare = [s for s in layout.free_sectors(prof, fw_len) if s != right and s != prof.default_cert_sector]
        if not spare:
            raise pytest.UsageError("no free sector for the wrong-CA bin on %s" % prof.name)
        wrong = spare[-1]
        for sector, data, der in ((right, pki["ca_bin"], pki["ca_der"]), (wrong, pki["wrong_ca_bin"], None)):
            if der is not None and _holds_cert(sess.read(sector * flash.SECTOR, flash.SECTOR), der):
                continue  # the user's bundle is there already (make demo flashed it): keep it
            flash.write_region(sess, flash.KIND_CA, sector * flash.SECTOR, data,
                               backup_dir=work / "backups", board=board_name, out=quiet)
    return {"profile": prof.name, "ca_sector": right, "wrong_ca_sector": wrong}


def _holds_cert(sector_bytes, der):
    """True when a CA bin in SECTOR_BYTES has an entry whose DER is DER."""
    from espconn import binfmt
    from espconn.errors import FormatError

    try:
        return any(bytes(body) == der for _name, body in binfmt.parse(sector_bytes))
    except FormatError:
        return False


# ---------------------------------------------------------------- per test


@pytest.fixture
def board(hil, request):
    """The board, soft-reset into a fresh interpreter; one log per board and test."""
    logs = Path(request.config.getoption("hil_logs"))
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    log = logs / _port_id(hil["port"]) / (name + ".log")
    if log.exists():
        log.unlink()
    with Dut(hil["port"], log) as dut:
        request.node._hil_log = str(log)
        yield dut


@pytest.fixture
def case(request, record_property):
    """``case.record(handshake_ms=..., heap_before=..., heap_after=...)`` for the summary."""

    class Case:
        def record(self, **kw):
            for k, v in kw.items():
                if v is not None:
                    record_property(k, v)

    return Case()


# ---------------------------------------------------------------- summary


def pytest_runtest_logreport(report):
    config = _CONFIG.get("config")
    if config is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        props = dict(report.user_properties)
        outcome = report.outcome
        reason = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).replace("Skipped: ", "")
        elif report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            reason = crash.message.splitlines()[0] if crash is not None else "error"
        config._hil_rows.append((report.nodeid.split("::")[-1], outcome, props, reason))


_CONFIG = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _CONFIG["config"] = session.config


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = getattr(config, "_hil_rows", [])
    if not rows:
        return
    tr = terminalreporter
    tr.section("espssl loopback summary")
    head = "%-60s %-8s %10s %11s %10s  %s" % ("case", "result", "handshake", "heap before", "heap after", "note")
    tr.write_line(head)
    tr.write_line("-" * len(head))
    for name, outcome, props, reason in rows:
        hs = props.get("handshake_ms")
        tr.write_line(
            "%-60s %-8s %10s %11s %10s  %s"
            % (name[:60], outcome, "%d ms" % hs if hs is not None else "-",
               props.get("heap_before", "-"), props.get("heap_after", "-"), reason[:80])
        )
    counts = {}
    for _n, o, _p, _r in rows:
        counts[o] = counts.get(o, 0) + 1
    tr.write_line("  ".join("%s: %d" % kv for kv in sorted(counts.items())))
