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
watch = 0  # wait()s running: callbacks are counted only while one is
events = 0  # callbacks counted so far (any connection)
last = None  # name of the last callback counted (any connection)
_busy = False  # a pass is running (timer re-entry guard)
_timer = None  # machine.Timer(-1) while anything is open
kicked = False  # something asked for a pass soon (conn: send, close)
cur = None  # the item whose step() is running (its own sends need no extra pass)


# run()'s wait: a select.poll of the open sockets, and whether it is stale
# (add/remove, and a connection whose TCP connect completed, set it: conn.py)
_pl = [None, True]  # type: list


def add(item):
    global _timer
    _pl[1] = True
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
    _pl[1] = True
    if item in items:
        items.remove(item)
    if not items:
        _pl[0] = None  # nothing open: the poll and the sockets it held go too
        t = _timer
        _timer = None
        if t is not None:
            t.deinit()


def poll():
    """One pass over every open connection; number of connections still open."""
    run(0)
    return len(items)


def run(ms):
    """Drive the engine for ``ms`` milliseconds (ms < 0: until nothing is open;
    0: one pass); the number of connections still open."""
    global _busy, kicked, cur
    ticks, diff = time.ticks_ms, time.ticks_diff
    t0 = ticks()
    while True:
        if not _busy:  # (a timer tick inside a pass: dropped)
            _busy = True
            try:
                r = _ROUNDS
                while r:  # another round while a step left work that needs no new bytes
                    r -= 1
                    kicked = did = False
                    # the list itself, not a copy (no allocation per pass): an item removed
                    # while this runs may make the next one wait for the next round or pass
                    for it in items:
                        cur = it
                        if it.step():
                            did = True
                    if not (did or kicked):
                        break
            finally:
                _busy = False
                cur = None
        if not ms or ms > 0 and diff(ticks(), t0) >= ms:
            return len(items)
        if ms < 0 and not items:
            return 0
        # Sleep until a socket is readable (writable for a TCP connect in
        # progress: its Conn has a poller then), at most _WAIT_MS: no fixed
        # latency per round trip.  The poll is rebuilt only when it is stale.
        p = _pl[0]
        if _pl[1]:
            import select

            p = None
            for it in items:
                if it.sock is not None and not it.closed:
                    if p is None:
                        p = select.poll()
                    p.register(it.sock, select.POLLOUT if getattr(it, "poller", None) is not None else select.POLLIN)
            _pl[0] = p
            _pl[1] = False
        if p is not None:
            p.poll(_WAIT_MS)
        else:
            time.sleep_ms(_WAIT_MS)  # type: ignore[attr-defined]


async def wait(esp, timeout_ms):
    """asyncio: drive the engine until the next callback (on ``esp``, or any);
    the event's name ("connect", "recv", "sent", "disconnect", "reconnect",
    "write_finish") or None on timeout."""
    import asyncio

    global watch
    mark = esp._events if esp is not None else events
    t0 = time.ticks_ms()
    watch += 1
    try:
        while True:
            run(0)
            now = esp._events if esp is not None else events
            if now != mark:
                return esp._last if esp is not None else last
            if timeout_ms >= 0 and time.ticks_diff(time.ticks_ms(), t0) >= timeout_ms:
                return None
            await asyncio.sleep_ms(_WAIT_MS)
    finally:
        watch -= 1


def _tick(_t):
    try:
        run(0)
    except Exception as e:  # the background must never die silently
        pe = getattr(sys, "print_exception", None)
        if pe is not None:
            pe(e)
