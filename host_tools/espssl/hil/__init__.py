"""The hardware-in-the-loop loopback suite: ``espssl test`` runs it with pytest.

The suite (``test_loopback.py`` here) is a pytest plugin (``plugin.py``):
the board runs espconn over the raw REPL, the host runs TLS peers
(``peers.py``), certificates come from ``pki.py``.  ``espssl test`` is only
a front end to ``python -m pytest -p espssl.hil.plugin``.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pytest_args(ports=(), host=None, junit="out/hil/junit.xml", logs="out/hil/logs", extra=(), certs=None):
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
    return args + list(extra)


def _cmd(args):
    cmd = pytest_args(args.port or (), args.host, args.junit, args.logs, args.pytest_args, args.certs)
    if args.no_deploy:
        cmd.append("--hil-no-deploy")
    return subprocess.call(cmd)


def register(sub):
    p = sub.add_parser("test", help="run the loopback suite on a board (virtual by default)")
    p.add_argument("--port", "-p", action="append",
                   help="a real board's serial port; repeat for several boards in parallel")
    p.add_argument("--host", help="address the host's TLS peers listen on (the host's LAN address "
                   "for a real board; default 127.0.0.1)")
    p.add_argument("--junit", default="out/hil/junit.xml", help="JUnit XML report (default %(default)s)")
    p.add_argument("--logs", default="out/hil/logs", help="one log per board and test (default %(default)s)")
    p.add_argument("--certs", help="directory from `espssl certs` (ca.pem, ca.key.pem): test against "
                   "that CA, the one flashed at the board's CA sector")
    p.add_argument("--no-deploy", action="store_true", help="do not deploy espconn first")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --), e.g. -k client")
    p.set_defaults(func=_cmd)
