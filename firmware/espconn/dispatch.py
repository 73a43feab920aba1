"""Events -> callbacks: the engine that drives every open connection.

As on the SDK, callbacks fire by themselves: on a board a ``machine.Timer(-1)``
(soft callbacks) polls the open connections every _PERIOD_MS, and the lwIP
socket callback (``setsockopt(SOL_SOCKET, 20, cb)``, ESP8266 only: it fires
on data, FIN and accept) polls at once when something arrives, so the REPL
stays free.  The timer runs only while a connection or server is open.

Scripts and tests can drive the same engine explicitly:
    poll()        one pass over the open connections
    run(ms)       poll for ms milliseconds (or until nothing is open, ms < 0)
    await wait(esp, ms)   asyncio: until the next callback on esp (or any)
Re-entry is guarded: a timer tick arriving while a pass runs is dropped.
"""

from micropython import const  # device only: the unix port or a board


import sys
import time

_PERIOD_MS = const(20)  # background poll period
_WAIT_MS = const(5)  # longest sleep in run() between passes
_SO_CALLBACK = const(20)  # modlwip's SOF_CALLBACK socket option (ESP8266 only)
_SOL_SOCKET = const(1)
_ROUNDS = const(4)  # passes in one poll() while connections keep making progress

items = []  # type: list  # open Conn/Listener objects, driven in order
events = 0  # callbacks fired so far (any connection): wait() watches it
last = None  # name of the last callback fired (any connection)
_busy = False  # a pass is running (timer re-entry guard)
_timer = None  # machine.Timer(-1) while anything is open
kicked = False  # something asked for a pass soon (conn: send, close)


_pl = [None, []]  # type: list  # run(): a select.poll and the sockets registered in it, kept between waits


def _idle(ms):
    # Sleep until a socket is readable (or ms pass): no fixed latency per round trip.
    import select

    # readable, or writable for a TCP connect in progress (a Conn's poller is set then);
    # the poll is rebuilt only when that changed (compared without allocating: once per wait)
    old = _pl[1]
    k = 0
    for it in items:
        if it.sock is not None and not it.closed:
            if k >= len(old) or old[k][0] is not it.sock or old[k][1] != (getattr(it, "poller", None) is not None):
                k = -1
                break
            k += 1
    if k != len(old):  # a connection opened, closed or changed its socket: a new poll
        socks = [(it.sock, getattr(it, "poller", None) is not None) for it in items if it.sock is not None and not it.closed]
        p = _pl[0] = select.poll()
        _pl[1] = socks
        for s, out in socks:
            p.register(s, select.POLLOUT if out else select.POLLIN)
    if _pl[1]:
        _pl[0].poll(ms)  # type: ignore[attr-defined]
    else:
        time.sleep_ms(ms)  # type: ignore[attr-defined]


def add(item):
    global _timer
    if item not in items:
        items.append(item)
    s = getattr(item, "sock", None)
    if s is not None and sys.platform == "esp8266":
        try:
            # modlwip runs the callback through micropython.schedule: already soft context
            s.setsockopt(_SOL_SOCKET, _SO_CALLBACK, _tick)  # type: ignore[arg-type]
        except (OSError, TypeError, ValueError):
            pass
    if _timer is not None:
        return
    try:
        # __import__: the stubs' machine.pyi does not type-check by itself
        Timer = __import__("machine").Timer
    except (ImportError, AttributeError):
        return  # unix port without the board shim: explicit driving only
    try:
        _timer = Timer(-1)
        _timer.init(period=_PERIOD_MS, mode=Timer.PERIODIC, callback=_tick)
    except (OSError, ValueError, TypeError):
        _timer = None


def remove(item):
    # (the timer's start and stop written out here: each function is heap from a ROMFS)
    global _timer
    if item in items:
        items.remove(item)
    if not items:
        _pl[0] = None  # nothing open: the poll and the sockets it held go too
        _pl[1] = []
        t = _timer
        _timer = None
        if t is not None:
            t.deinit()


def poll():
    """One pass over every open connection; number of connections still open."""
    global _busy, kicked
    if _busy:
        return len(items)
    _busy = True
    try:
        kicked = True
        rounds = 0
        while kicked and rounds < _ROUNDS:
            rounds += 1
            kicked = False
            did = False
            for it in items[:]:
                if it.step():
                    did = True
            if did:
                kicked = True
    finally:
        _busy = False
    return len(items)


def run(ms=-1):
    """Drive the engine for ``ms`` milliseconds (ms < 0: until nothing is open)."""
    t0 = time.ticks_ms()
    while True:
        n = poll()
        if ms >= 0 and time.ticks_diff(time.ticks_ms(), t0) >= ms:
            return n
        if ms < 0 and n == 0:
            return 0
        _idle(_WAIT_MS)


async def wait(esp=None, timeout_ms=-1):
    """asyncio: drive the engine until the next callback (on ``esp``, or any);
    the event's name ("connect", "recv", "sent", "disconnect", "reconnect",
    "write_finish") or None on timeout."""
    import asyncio

    mark = esp._events if esp is not None else events
    t0 = time.ticks_ms()
    while True:
        poll()
        now = esp._events if esp is not None else events
        if now != mark:
            return esp._last if esp is not None else last
        if timeout_ms >= 0 and time.ticks_diff(time.ticks_ms(), t0) >= timeout_ms:
            return None
        await asyncio.sleep_ms(_WAIT_MS)


def _tick(_t):
    try:
        poll()
    except Exception as e:  # the background must never die silently
        pe = getattr(sys, "print_exception", None)
        if pe is not None:
            pe(e)
