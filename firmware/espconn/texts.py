"""The texts of the device layer's failures, loaded only when one is asked for
(espconn_secure_last_error).

On the board the resident modules (conn, tap, the API) record a failure as
(text id, *numbers): a small int and no string, so neither the reason names
nor the sentences cost heap until someone reads them.  Each module names the
ids it uses as ``_T_<NAME> = const(id)`` (folded away by the compiler); the
comment beside each entry below gives that name (tests/test_espconn_tap.py
checks that they agree).  The verifier's failures are (reason, text) strings.
"""
# (reason, format) of text id 0, 1, 2, ...: ids are grouped so that the
# connection can tell a failure's kind by range (see conn.Conn.fail)
_TEXTS = (
    'bad_level',  # 0 _T_LEVEL
    'level must be ESPCONN_CLIENT (1), ESPCONN_SERVER (2) or ESPCONN_BOTH (3)',
    'busy',  # 1 _T_BUSY
    'settings are made before espconn_secure_connect/accept',
    'bad_sector',  # 2 _T_PAST_FLASH
    'sector 0x%x is not inside the %d-byte flash (esp.flash_size())',
    'bad_size',  # 3 _T_SIZE
    'size must be 1..8192 (default 2048); axTLS takes incoming records up to 5115 bytes whatever the size',
    'unsupported',  # 4 _T_SERVER_CA
    'axTLS cannot request a client certificate: a server cannot check one',
    'bad_sector',  # 5 _T_SECTOR
    'flash_sector must be a sector number',
    'bad_arg',  # 6 _T_DER
    'DER bytes, before espconn_secure_accept',
    'is_connected',  # 7 _T_ONE_CLIENT
    'one secure client connection at a time',
    'bad_address',  # 8 _T_ADDRESS
    'proto.tcp.remote_ip must be 4 bytes and remote_port 1..65535',
    'bad_arg',  # 9 _T_DATA
    'data must be 1 or more bytes (bytes, bytearray, memoryview) and length 1..len(data)',
    'not_connected',  # 10 _T_NOT_OPEN
    'no open secure connection on this espconn',
    'not_secure_send',  # 11 _T_PLAIN_SEND
    'use espconn_secure_send on a secure connection',
    'connect_failed',  # 12 _T_CONNECT
    'connect failed: errno %d',
    'no_route',  # 13 _T_ROUTE
    'no route to %s',
    'timeout',  # 14 _T_TIMEOUT
    'TCP connect timed out',
    'connect_failed',  # 15 _T_REFUSED
    'TCP connection refused or failed',
    'not_connected',  # 16 _T_NOT_UP
    'the connection is not established',
    'in_progress',  # 17 _T_PENDING
    'the previous send has not finished',
    'too_long',  # 18 _T_TOO_LONG
    '%d bytes exceed the buffer size %d (espconn_secure_set_size)',
    'closed_in_handshake',  # 19 _T_CLOSED_HS
    'peer closed the connection during the handshake',
    'reset',  # 20 _T_RESET
    'connection reset by the peer %s the handshake',
    'handshake_failed',  # 21 _T_HS_FAILED
    'TLS handshake failed: %s',
    'tls_error',  # 22 _T_TLS_ERROR
    'TLS error: %s',
    'bad_record',  # 23 _T_NOT_TLS
    'not a TLS 1.x record (type %d, version %d.%d)',
    'tls13_or_resumed',  # 24 _T_EARLY
    'peer went encrypted before its certificate was seen (TLS 1.3 or resumption)',
    'bad_record',  # 25 _T_EARLY_DATA
    'application data before the handshake finished',
    'no_certificate',  # 26 _T_NO_CERT
    'peer sent no certificate',
    'cert_too_big',  # 27 _T_CERT_BIG
    'certificate message of %d bytes exceeds the %d-byte buffer: espconn_secure_set_size(ESPCONN_CLIENT, %d) or more',
    'certificate_changed',  # 28 _T_CHANGED
    'the peer showed another certificate than the one just verified',
    'truncated_record',  # 29 _T_CUT_RESET
    'connection reset inside a TLS record',
    'truncated_record',  # 30 _T_CUT_CLOSE
    'peer closed inside a TLS record',
    'oversize_record',  # 31 _T_OVERFLOW
    "record larger than 5115 bytes, axTLS's limit whatever espconn_secure_set_size says (RECORD_OVERFLOW)",
    'oversize_record',  # 32 _T_AXTLS_MAX
    'record of %d bytes: axTLS takes incoming records up to 5115 bytes, whatever espconn_secure_set_size says (RECORD_OVERFLOW)',
    'oversize_record',  # 33 _T_RECORD
    "record of %d bytes exceeds the buffer: raise espconn_secure_set_size (up to 5115 bytes, axTLS's limit)",
    'no_memory',  # 34 _T_MEM_CONN
    '%d bytes of heap free (or no %d-byte block); a connection needs %d',
    'no_memory',  # 35 _T_MEM_BUF
    'no heap for the connection buffers',
    'no_memory',  # 36 _T_MEM_SOCK
    'no heap for a socket',
    'no_memory',  # 37 _T_MEM_TLS
    '%d bytes of heap free (or no %d-byte block): TLS needs %d',
    'no_memory',  # 38 _T_MEM_VERIFY
    'out of heap while verifying the certificate chain',
    'no_memory',  # 39 _T_MEM_RUN
    'out of heap during TLS',
    'no_memory',  # 40 _T_MEM_COPY
    'no heap to copy %d bytes to send',
    'no_memory',  # 41 _T_MEM_KX
    '%d bytes of heap free: the key exchange with this certificate needs %d',
    'no_memory',  # 42 _T_MEM_CERT
    'no heap for the %d-byte certificate message',
    'no_memory',  # 43 _T_MEM_KX_BLOCK
    'the key exchange\'s pieces (the largest %d bytes) do not fit the heap: %d bytes free, but cut smaller',
    'no_memory',  # 44 _T_MEM_TAP
    'no heap to follow the handshake',
)


def explain(err):
    """(reason, one-line text) of a recorded failure: (text id, *numbers), or a
    (reason, text) pair already."""
    i = err[0]
    if isinstance(i, str):
        return err
    f = _TEXTS[2 * i + 1]
    return (_TEXTS[2 * i], f % tuple(err[1:]) if len(err) > 1 else f)
