"""The hardware-in-the-loop loopback suite: ``espssl test`` runs it with pytest.

The suite (``test_loopback.py`` here) is a pytest plugin (``plugin.py``):
the board runs espconn over the raw REPL, the host runs TLS peers
(``peers.py``), certificates come from ``pki.py``, the CA bins go to sectors
that are backed up and restored (``sectors.py``).  ``espssl test`` is a front
end to ``python -m pytest -p espssl.hil.plugin``: it checks what it can before
pytest starts (one line, exit 2), and on Ctrl-C waits for the suite to give
the board back.
"""

import os
import subprocess
import sys
from pathlib import Path

from ..errors import EspsslError

HERE = Path(__file__).resolve().parent


def pytest_args(ports=(), host=None, junit="out/hil/junit.xml", logs="out/hil/logs", extra=(), certs=None,
                backup_dir=None):
    """The pytest command line for the suite (several ports: one xdist worker per board)."""
    args = [sys.executable, "-m", "pytest", "-p", "espssl.hil.plugin", str(HERE / "test_loopback.py"),
            "--rootdir", str(HERE), "-c", str(HERE / "pytest.ini"), "-q",
            "--junitxml", str(junit), "--hil-logs", str(logs)]
    for p in ports:
        args += ["--port", p]
    if len(ports) > 1:
        args += ["-n", str(len(ports)), "--dist", "each"]  # worker k drives board k
    if host:
        args += ["--hil-host", host]
    if certs:
        args += ["--hil-certs", str(certs)]
    if backup_dir:
        args += ["--hil-backup-dir", str(backup_dir)]
    return args + list(extra)


def check_inputs(ports, host, certs, junit, logs):
    """Refuse (EspsslError, or OSError naming the path) what would fail in every case."""
    from ..flash import is_virtual_port

    for port in ports:
        if "://" in port or is_virtual_port(port):
            continue
        if not os.path.exists(port):
            raise EspsslError("no serial port %s: is the board plugged in? (`python -m serial.tools.list_ports` "
                              "lists the ports)" % port)
        if not host or host.startswith("127."):
            raise EspsslError("a real board (%s) cannot reach this machine at %s: pass --host with this "
                              "machine's LAN address (see README, 'Real hardware')" % (port, host or "127.0.0.1"))
    if certs:
        from .pki import load_ca

        load_ca(certs)
    Path(logs).mkdir(parents=True, exist_ok=True)
    junit = Path(junit)
    junit.parent.mkdir(parents=True, exist_ok=True)
    if not junit.exists():  # can it be written? (pytest would say so only after the last case)
        junit.open("ab").close()
        junit.unlink()


def _cmd(args):
    ports = args.port or ()
    check_inputs(ports, args.host, args.certs, args.junit, args.logs)
    cmd = pytest_args(ports, args.host, args.junit, args.logs, args.pytest_args, args.certs, args.backup_dir)
    if args.no_deploy:
        cmd.append("--hil-no-deploy")
    proc = subprocess.Popen(cmd)
    while True:
        try:
            rc = proc.wait()
            return 2 if rc == 4 else rc  # pytest's usage error: a refusal, as everywhere in espssl
        except KeyboardInterrupt:
            # The suite got the same Ctrl-C and is putting the board's sectors back: wait for it.
            print("espssl test: interrupted; waiting for the suite to restore the board", file=sys.stderr)


def register(sub):
    p = sub.add_parser(
        "test", help="run the loopback suite on a board (virtual by default)",
        description="Runs the loopback suite (pytest) on one or more boards.  Before any case it says which "
        "flash sectors it writes (free ones, never the CA or certificate sector) and backs them up; "
        "after the run, also after a failure or Ctrl-C, it writes them back and reads them back.",
    )  # fmt: skip
    p.add_argument("--port", "-p", action="append",
                   help="a real board's serial port; repeat for several boards in parallel")
    p.add_argument("--host", help="address the host's TLS peers listen on (the host's LAN address "
                   "for a real board; default 127.0.0.1)")
    p.add_argument("--junit", default="out/hil/junit.xml", help="JUnit XML report (default %(default)s)")
    p.add_argument("--logs", default="out/hil/logs", help="one log per board and test (default %(default)s)")
    p.add_argument("--certs", help="directory from `espssl certs` (ca.pem, ca.key.pem): test against "
                   "that CA (used as it is when it is already flashed at the board's CA sector)")
    p.add_argument("--backup-dir", help="where the backups of the sectors the suite writes go "
                   "(default $ESPSSL_BACKUP_DIR or ./espssl-backups, as for flash-ca)")
    p.add_argument("--no-deploy", action="store_true", help="do not deploy espconn first")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --), e.g. -k client")
    p.set_defaults(func=_cmd)
