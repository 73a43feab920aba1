"""Exceptions shared by the device modules and the host tools.

Each exception carries a short, stable ``reason`` code (a string such as
``"expired"`` or ``"truncated"``) and a human-readable message.  Codes are
never renamed or reused: scripts, tests and ``espconn_secure_last_error``
depend on them.  Texts live next to the code that raises them, built once at
the raise, never on a hot path.
"""


class EspError(Exception):
    """Base: ``.reason`` is a stable code, ``str(e)`` the message."""

    def __init__(self, reason, msg=None):
        super().__init__(msg or reason)
        self.reason = reason
        self.msg = msg or reason


class FormatError(EspError):
    """An esp_ca_cert.bin / esp_cert_private_key.bin image is not well formed."""


class StoreError(EspError):
    """The CA store in flash is erased, truncated, corrupt or unreadable."""


class VerifyError(EspError):
    """The peer's certificate chain was rejected (see ``.reason``)."""

