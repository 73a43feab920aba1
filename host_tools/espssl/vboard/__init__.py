"""The virtual ESP8266 board: flash image, serial loader, MicroPython REPL, device shims."""


def register(subparsers):
    """Add `espssl vboard start|stop|status|run` (see cli.py)."""
    from .cli import register as _register  # noqa: PLC0415

    _register(subparsers)
