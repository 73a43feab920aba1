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


# The texts of the device layer's failures, loaded only when one is asked for
# (espconn_secure_last_error): on the board the resident modules keep a short
# message id and its numbers, not the sentences.  (id, format) pairs.
_TEXTS = (
    'level',
    'level must be ESPCONN_CLIENT (1), ESPCONN_SERVER (2) or ESPCONN_BOTH (3)',
    'busy',
    'settings are made before espconn_secure_connect/accept',
    'past_flash',
    'sector 0x%x is not inside the %d-byte flash (esp.flash_size())',
    'size',
    'size must be 1..8192 (default 2048); axTLS takes incoming records up to 5115 bytes whatever the size',
    'server_ca',
    'axTLS cannot request a client certificate: a server cannot check one',
    'sector',
    'flash_sector must be a sector number',
    'der',
    'DER bytes, before espconn_secure_accept',
    'one_client',
    'one secure client connection at a time',
    'address',
    'proto.tcp.remote_ip must be 4 bytes and remote_port 1..65535',
    'data',
    'data must be 1 or more bytes (bytes, bytearray, memoryview) and length 1..len(data)',
    'not_open',
    'no open secure connection on this espconn',
    'plain_send',
    'use espconn_secure_send on a secure connection',
    'mem_conn',
    '%d bytes of heap free (or no %d-byte block); a connection needs %d',
    'mem_buf',
    'no heap for the connection buffers',
    'mem_sock',
    'no heap for a socket',
    'connect',
    'connect failed: errno %d',
    'route',
    'no route to %s',
    'mem_tls',
    '%d bytes of heap free (or no %d-byte block): TLS needs %d',
    'mem_verify',
    'out of heap while verifying the certificate chain',
    'mem_run',
    'out of heap during TLS',
    'timeout',
    'TCP connect timed out',
    'refused',
    'TCP connection refused or failed',
    'not_up',
    'the connection is not established',
    'pending',
    'the previous send has not finished',
    'too_long',
    '%d bytes exceed the buffer size %d (espconn_secure_set_size)',
    'mem_copy',
    'no heap to copy %d bytes to send',
    'closed_hs',
    'peer closed the connection during the handshake',
    'overflow',
    "record larger than 5115 bytes, axTLS's limit whatever espconn_secure_set_size says (RECORD_OVERFLOW)",
    'reset',
    'connection reset by the peer %s the handshake',
    'hs_failed',
    'TLS handshake failed: %s',
    'tls_error',
    'TLS error: %s',
    'cut_reset',
    'connection reset inside a TLS record',
    'cut_close',
    'peer closed inside a TLS record',
    'not_tls',
    'not a TLS 1.x record (type %d, version %d.%d)',
    'axtls_max',
    'record of %d bytes: axTLS takes incoming records up to 5115 bytes, whatever espconn_secure_set_size says (RECORD_OVERFLOW)',
    'early',
    'peer went encrypted before its certificate was seen (TLS 1.3 or resumption)',
    'early_data',
    'application data before the handshake finished',
    'record',
    "record of %d bytes exceeds the buffer: raise espconn_secure_set_size (up to 5115 bytes, axTLS's limit)",
    'no_cert',
    'peer sent no certificate',
    'cert_big',
    'certificate message of %d bytes exceeds the %d-byte buffer: espconn_secure_set_size(ESPCONN_CLIENT, %d) or more',
    'mem_kx',
    '%d bytes of heap free: the key exchange with this certificate needs %d',
    'changed',
    'the peer showed another certificate than the one just verified',
)


def text(detail):
    """The one-line text of a recorded failure: ``detail`` is a text already,
    or (message id, *numbers) formatted with its entry of _TEXTS."""
    if isinstance(detail, str):
        return detail
    i = _TEXTS.index(detail[0])
    return _TEXTS[i + 1] % tuple(detail[1:]) if len(detail) > 1 else _TEXTS[i + 1]
