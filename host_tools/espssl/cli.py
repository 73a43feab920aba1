"""The `espssl` command line: parsing and the one error handler.

Each command family lives in its own module and exposes
``register(subparsers)``, which adds its sub-commands and sets ``func`` (a
function taking the parsed ``args``).  ``main(argv)`` runs in-process, so tests
and other tools can call it.
"""

import argparse
import importlib
import sys

from . import __version__
from .errors import REFUSALS

# Command-family modules, in --help order.  Each has register(subparsers).
_FAMILIES = ["certs", "cabin", "vboard", "flash", "deploy", "hil"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="espssl",
        description="Host tools for espssl: certificates, ESP8266 CA bins, flashing, "
        "deploying espconn, the virtual board and the loopback test suite.",
    )
    parser.add_argument("--version", action="version", version="espssl " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _FAMILIES:
        importlib.import_module("espssl." + name).register(sub)
    return parser


def main(argv=None):
    """Run one command; exit 0 on success, 2 on a refusal (one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except REFUSALS as e:
        print("A fatal error occurred: %s" % e, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)
