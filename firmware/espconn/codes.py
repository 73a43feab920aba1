"""The SDK's espconn numbers (espconn.h of the ESP8266 NONOS SDK), by name.

Public names without an underscore so ``from espconn import *`` gives them;
values are the SDK's and never change.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


# Return / callback error codes (espconn.h)
ESPCONN_OK = const(0)  # no error
ESPCONN_MEM = const(-1)  # out of memory
ESPCONN_TIMEOUT = const(-3)  # timeout
ESPCONN_RTE = const(-4)  # routing problem (no network)
ESPCONN_INPROGRESS = const(-5)  # operation in progress
ESPCONN_MAXNUM = const(-7)  # total number exceeds the maximum
ESPCONN_ABRT = const(-8)  # connection aborted
ESPCONN_RST = const(-9)  # connection reset
ESPCONN_CLSD = const(-10)  # connection closed
ESPCONN_CONN = const(-11)  # not connected
ESPCONN_ARG = const(-12)  # illegal argument
ESPCONN_IF = const(-14)  # low-level error
ESPCONN_ISCONN = const(-15)  # already connected
ESPCONN_HANDSHAKE = const(-28)  # SSL handshake failed
ESPCONN_SSL_INVALID_DATA = const(-61)  # SSL application data invalid

# enum espconn_type
ESPCONN_INVALID = const(0)
ESPCONN_TCP = const(0x10)
ESPCONN_UDP = const(0x20)

# enum espconn_state
ESPCONN_NONE = const(0)
ESPCONN_WAIT = const(1)
ESPCONN_LISTEN = const(2)
ESPCONN_CONNECT = const(3)
ESPCONN_WRITE = const(4)
ESPCONN_READ = const(5)
ESPCONN_CLOSE = const(6)

# espconn_level (espconn_secure_* level argument)
ESPCONN_IDLE = const(0)
ESPCONN_CLIENT = const(1)
ESPCONN_SERVER = const(2)
ESPCONN_BOTH = const(3)
