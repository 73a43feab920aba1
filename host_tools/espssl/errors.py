"""Errors that mean the user, a file or the board said no (not bugs).

The CLI prints them as one line and exits 2, as esptool does for FatalError;
anything else is a bug and keeps its traceback.
"""

from espconn.errors import EspError


class EspsslError(Exception):
    """A refusal by the input, the user's request or the board."""


class LayoutError(EspsslError):
    """A write would touch firmware, filesystem or SDK parameters."""


class DeviceError(EspsslError):
    """The board did not answer, or answered wrongly."""


# Format problems found by the shared firmware codec are refusals too.
REFUSALS = (EspsslError, EspError)
