"""The `espssl` command line: parsing and the one error handler.

Each command family lives in its own module and exposes
``register(subparsers)``, which adds its sub-commands and sets ``func`` (a
function taking the parsed ``args``).  ``main(argv)`` runs in-process, so tests
and other tools can call it.

The error handler is the only place that turns a failure into what the user
reads: a refusal (``REFUSALS``) or a file the system would not let us read or
write (an ``OSError`` naming a path) becomes one line on stderr and exit 2; a
closed pipe (``espssl ca-bin inspect F | head``) ends quietly, as CPython's own
tools do.  Anything else is a bug and keeps its traceback.
"""

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import REFUSALS

# Command-family modules, in --help order.  Each has register(subparsers).
_FAMILIES = ["certs", "cabin", "vboard", "flash", "deploy", "hil"]


def int_arg(text):
    """argparse type for sizes and sector numbers: decimal or 0x hex, never negative."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number (use decimal, e.g. 4096, or 0x hex, e.g. 0x1000)"
                                         % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("%s is negative: give 0 or more (decimal or 0x hex)" % text)
    return value


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


def os_error_text(e):
    """One line for an OSError about a file: the path(s) and what the system said."""
    path = str(e.filename) if e.filename2 is None else "%s -> %s" % (e.filename, e.filename2)
    return "%s: %s" % (path, e.strerror or e)


def _quiet_broken_pipe():
    # The reader went away: send what is still buffered nowhere, so the
    # interpreter's last flush does not print a second error.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(1)


def main(argv=None):
    """Run one command; exit 0 on success, 2 on a refusal (one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler
    except BrokenPipeError:
        _quiet_broken_pipe()
    except REFUSALS as e:
        print("A fatal error occurred: %s" % e, file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.filename is None:
            raise  # not about a file: a bug or a board problem that should have been a DeviceError
        print("A fatal error occurred: %s" % os_error_text(e), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)
