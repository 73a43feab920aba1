# The `socket` module of the virtual board: the unix port's real sockets,
# kept on the host's loopback.  vboard_boot.py installs it as
# sys.modules["socket"].
#
# A virtual board's network is the host's 127.0.0.1 (network.py reports it as
# both interfaces' address), but its sockets are the host's: a program that
# listens on 0.0.0.0 (espconn_secure_accept with local_ip unset does) would
# listen on every interface of the host.  So getaddrinfo(), the only way to
# make an address on the unix port (bind/connect take the raw sockaddr it
# returns),
# gives 127.0.0.1 for every IPv4 host, whatever the program asks: 0.0.0.0,
# the board's "own" address, or any other.  (A sockaddr a program builds
# byte by byte is not rewritten: no ESP8266 program has one.)
import socket as _s

from socket import *  # noqa: F401,F403  (the unix port's names, as a board's socket has them)

_LOOPBACK = b"\x7f\x00\x00\x01"
# A board's socket (modlwip, MicroPython 1.23+) has TCP_NODELAY; the unix
# port's lacks the names, so they are given here with Linux's numbers.
IPPROTO_TCP = 6
TCP_NODELAY = 1


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    """As the port's, with every IPv4 address turned into 127.0.0.1."""
    out = _s.getaddrinfo(host, port, af, type, proto, flags)
    for i in range(len(out)):
        e = out[i]
        addr = e[-1]
        if len(addr) >= 8 and addr[0] == AF_INET and addr[4:8] != _LOOPBACK:
            addr = bytearray(addr)
            addr[4:8] = _LOOPBACK
            out[i] = e[:-1] + (addr,)
    return out
