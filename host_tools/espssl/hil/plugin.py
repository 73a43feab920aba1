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
--hil-certs DIR   test against the CA ``espssl certs`` wrote to DIR.
--hil-backup-dir  where the backups of the sectors the suite writes go (as flash-ca's).

Before any case runs, every board is prepared once (see ``sectors.py``): the
suite says which sectors it writes, backs them up, and after the run (also
after a failure or Ctrl-C) writes them back and reads them back.

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
_CONFIG = {}
# A board the suite starts itself is a plain build with espconn as .mpy in /lib:
# that needs more heap than an ESP8266 has once the CA check runs (README, "RAM
# on a real ESP8266"), so it gets more than the calibrated default (56K).
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
                help="use the CA `espssl certs` wrote to this directory (ca.pem, ca.key.pem): used as it is at "
                "the profile's CA sector when flashed there, else written to a free sector for the run")
    g.addoption("--hil-backup-dir", default=None,
                help="where the backups of the sectors the suite writes go (default $ESPSSL_BACKUP_DIR "
                "or ./espssl-backups, as for flash-ca)")
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


# ---------------------------------------------------------------- the boards, once per run
#
# The controlling process (pytest itself, or xdist's controller) prepares every
# board before any case runs and gives it back at the end: one refusal, said
# once, instead of the same error in every case; the sectors written are
# restored even when a case fails or the run is interrupted.  xdist workers get
# the result through ``workerinput``.


def _controller(config):
    return not hasattr(config, "workerinput")


def _out(config):
    """Print one line on the terminal, outside pytest's capture."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        return lambda text: tr.write_line(text)
    import sys

    return lambda text: print(text, file=sys.__stdout__, flush=True)


def _prepare_all(config):
    from .. import flash
    from ..errors import REFUSALS
    from ..vboard import cli as vboard
    from . import sectors
    from .pki import make_pki

    out = _out(config)
    host = config.getoption("hil_host") or "127.0.0.1"
    for name in _ports(config):
        try:
            port = flash.virtual_port() if name == VIRTUAL else name
            backup_dir = config.getoption("hil_backup_dir")
            if port is None:  # no virtual board running: one for this run, in a throwaway directory
                d = config._tmp_path_factory.mktemp("vboard")
                port = vboard.start(d, flash="4M", heap=config.getoption("hil_vboard_heap"))
                config._hil_started.append((d, port))
                backup_dir = d / "backups"  # nothing of the user's on it: its backups go with it
                out("espssl test: started a virtual board on %s for this run (stopped and thrown away "
                    "after it)" % port)
            virtual = flash.is_virtual_port(port)
            if not virtual and host.startswith("127."):
                raise pytest.UsageError("a real board cannot reach the host at %s: pass --hil-host with the "
                                        "host's LAN address (see README, 'Real hardware')" % host)
            work = config._tmp_path_factory.mktemp("hil-" + _port_id(name))
            pki = make_pki(work, host, config.getoption("hil_certs"))
            setup = sectors.place(port, pki, config._hil_written, config.getoption("hil_board"),
                                  certs_given=bool(config.getoption("hil_certs")),
                                  backup_dir=backup_dir, out=out,
                                  throwaway=any(p == port for _d, p in config._hil_started))
            if not config.getoption("hil_no_deploy"):
                out("espssl test: deploying espconn to %s" % port)
                _deploy(port)
            if not virtual:
                _join_wifi(port, Path(config.getoption("hil_logs")) / _port_id(name) / "wifi.log")
        except REFUSALS as e:
            # One line, once, before any case (pytest prints "ERROR: ..." and exits 4; espssl test: 2).
            raise pytest.UsageError("%s (nothing ran)" % e) from None
        config._hil_setups[name] = dict(setup, pki=pki, host=host, port=port, virtual=virtual)


def _deploy(port):
    """espssl deploy, quietly (deploy.Board waits out a board still booting after esptool)."""
    from ..deploy import deploy

    deploy(port, out=lambda *_: None)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    config = session.config
    _CONFIG["config"] = config
    config._hil_written = []  # sectors.Written, for restore_all
    config._hil_started = []  # virtual boards started for this run
    if not _controller(config):
        config._hil_setups = _from_wire(config.workerinput["hil_setups"])
        return
    config._hil_setups = {}
    if not config.option.collectonly:
        _prepare_all(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist: each worker gets the boards the controller prepared."""
    node.workerinput["hil_setups"] = _to_wire(node.config._hil_setups)


def _to_wire(obj):
    if isinstance(obj, dict):
        return {k: _to_wire(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_wire(v) for v in obj]
    return str(obj) if isinstance(obj, Path) else obj


def _from_wire(obj):
    if isinstance(obj, dict):
        return {k: _from_wire(v) for k, v in obj.items()}
    return tuple(obj) if isinstance(obj, list) else obj


def _give_back(config):
    """Restore what was written, stop what was started; False when a sector is not back."""
    from ..vboard import cli as vboard
    from . import sectors

    ok = True
    if getattr(config, "_hil_written", None):
        started = {port for _d, port in config._hil_started}
        mine = [w for w in config._hil_written if w.port not in started]  # a throwaway board needs none
        config._hil_written[:] = mine
        if mine:
            out = _out(config)
            out("")  # off the progress line
            ok = sectors.restore_all(config._hil_written, out=out)
    for d, _port in getattr(config, "_hil_started", []):
        vboard.stop(d)
    config._hil_started = []
    return ok


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if _controller(session.config) and not _give_back(session.config) and exitstatus == 0:
        session.exitstatus = 1


def pytest_unconfigure(config):
    if _controller(config):
        _give_back(config)  # a run stopped before sessionfinish (Ctrl-C while preparing)


@pytest.fixture(scope="session")
def board_port(request):
    return request.config._hil_setups[request.param]["port"]


@pytest.fixture(scope="session")
def hil(board_port, request):
    """Per board: certificates, CA sectors, espconn deployed (all done before the run)."""
    return next(s for s in request.config._hil_setups.values() if s["port"] == board_port)


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
    from ..errors import DeviceError
    from .dut import BoardError

    try:
        with Dut(port, log) as dut:
            res = dut.result(_WIFI, timeout=40)
    except BoardError as e:
        raise DeviceError(str(e)) from None
    if not res.get("connected"):
        raise DeviceError("the board on %s did not join the Wi-Fi: %s (log: %s)" % (port, res.get("error", "timeout"), log))


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




# What the two heap columns measure, printed under the table.
HEAP_LEGEND = (
    "free before / free after: the board's free GC heap in bytes (gc.mem_free() right after gc.collect()),",
    "  before: at the start of the case, espconn's SDK layer imported; after: at its end, the connection deleted.",
    "  The drop between them is mostly the espconn modules the case loaded on first use (TLS, certificate",
    "  checks), which stay loaded: not a leak. test_heap_back_to_baseline checks leaks (3 connections in a row).",
)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = getattr(config, "_hil_rows", [])
    if not rows:
        return
    tr = terminalreporter
    tr.section("espssl loopback summary")
    head = "%-60s %-8s %10s %11s %10s  %s" % ("case", "result", "handshake", "free before", "free after", "note")
    tr.write_line(head)
    tr.write_line("-" * len(head))
    for name, outcome, props, reason in rows:
        hs = props.get("handshake_ms")
        tr.write_line(
            "%-60s %-8s %10s %11s %10s  %s"
            % (name[:60], outcome, "%d ms" % hs if hs is not None else "-",
               props.get("heap_before", "-"), props.get("heap_after", "-"), reason[:80])
        )
    for line in HEAP_LEGEND:
        tr.write_line(line)
    counts = {}
    for _n, o, _p, _r in rows:
        counts[o] = counts.get(o, 0) + 1
    tr.write_line("  ".join("%s: %d" % kv for kv in sorted(counts.items())))
