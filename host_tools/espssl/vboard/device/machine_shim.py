# The ESP8266 port's `machine` module for the virtual board.  vboard_boot.py
# installs it as sys.modules["machine"] (the unix port has a built-in
# `machine` that would shadow a file of that name).  Only what the virtual
# board can honour is here, with the ESP8266's signatures (typings/machine.pyi):
#
# - Timer(-1): software timers with soft callbacks, as on the ESP8266: one
#   background thread (started by the first armed timer, ended with the last)
#   queues each due callback with micropython.schedule(), so it runs in the
#   main thread between bytecodes and during time.sleep_ms().  At the REPL
#   prompt (and in other blocking reads) the unix port sits in read(): a
#   callback still queued after _KICK_MS makes the timer thread run
#   gc.collect(), whose stack-scan signal (MP_THREAD_GC_SIGNAL) interrupts
#   that read(); the port's EINTR retry loop then runs the pending callbacks,
#   so they fire at the idle prompt too, as on a board.
# - reset(): ends the process with EXIT_HARD_RESET; the board supervisor then
#   boots again as after a hard reset (boot.py and main.py).  soft_reset():
#   a plain exit, which the supervisor treats as a soft reset.
# - unique_id() (the chip id the loader reports), freq(), idle(), reset_cause(),
#   disable_irq()/enable_irq(), a minimal Pin with no hardware behind it.
import gc
import sys
import time
from os import getenv as _getenv  # the unix port's (the board's os has none)

import _thread
import micropython
from micropython import const

EXIT_HARD_RESET = const(0x5A)  # = espssl.vboard.board.EXIT_HARD_RESET

PWRON_RESET = const(0)
WDT_RESET = const(1)
SOFT_RESET = const(4)
DEEPSLEEP_RESET = const(5)
HARD_RESET = const(6)
DEEPSLEEP = const(4)

_TICK_MS = const(10)  # longest sleep of the timer thread: callback jitter bound
_NO_TIMER_MS = const(200)  # idle time after which the timer thread ends
_KICK_MS = const(20)  # a callback queued this long: the main thread is blocked

_freq = 80000000  # CPU clock: 80 MHz at boot, 160 MHz on request
_lock = _thread.allocate_lock()  # guards _armed and _thread_on
_armed = []  # Timers with a pending expiry, shared with the timer thread
_thread_on = False


def _timer_thread():
    global _thread_on
    idle = 0
    kicked = 0
    while True:
        _lock.acquire()
        now = time.ticks_ms()
        wait = _TICK_MS
        stuck = False
        if not _armed:
            idle += _TICK_MS
            if idle >= _NO_TIMER_MS:
                _thread_on = False
                _lock.release()
                return
        else:
            idle = 0
        for t in _armed:
            if t._queued and time.ticks_diff(now, t._queued_at) >= _KICK_MS:
                stuck = True
            left = time.ticks_diff(t._due, now)
            if left <= 0 and not t._queued:
                try:
                    micropython.schedule(t._fire_ref, None)
                except RuntimeError:  # schedule queue full: retry next tick
                    left = 1
                else:
                    t._queued = True
                    t._queued_at = now
                    if t._mode == Timer.PERIODIC:
                        t._due = time.ticks_add(t._due, t._period)
                        left = time.ticks_diff(t._due, now)
                    else:
                        left = _TICK_MS
            if 0 < left < wait:
                wait = left
        _lock.release()
        if stuck and time.ticks_diff(now, kicked) >= _KICK_MS:
            kicked = now
            gc.collect()  # interrupts a blocking read() in the main thread
        time.sleep_ms(wait)


class Timer:
    ONE_SHOT = const(0)
    PERIODIC = const(1)

    def __init__(self, id):
        # The ESP8266's Timer takes exactly its id (every timer is a software
        # one); the period and callback come with init().
        self._id = id
        self._mode = Timer.PERIODIC
        self._period = 0
        self._due = 0
        self._cb = None
        self._queued = False
        self._queued_at = 0
        self._fire_ref = self._fire  # bound once: the timer thread allocates nothing

    def init(self, *, mode=PERIODIC, callback=None, period=0xFFFFFFFF, tick_hz=1000, freq=None):
        """Arm the timer: period in 1/tick_hz s (ms by default) or freq in Hz."""
        global _thread_on
        self.deinit()
        if freq is not None:
            ms = int(1000 / freq) if freq > 0 else 0
        else:
            ms = period * 1000 // tick_hz
        self._mode = mode
        self._period = ms if ms > 0 else 1
        self._cb = callback
        self._queued = False
        self._due = time.ticks_add(time.ticks_ms(), self._period)
        _lock.acquire()
        _armed.append(self)
        start = not _thread_on
        _thread_on = True
        _lock.release()
        if start:
            _thread.start_new_thread(_timer_thread, ())

    def deinit(self):
        """Disarm the timer; a callback already queued is dropped."""
        _lock.acquire()
        if self in _armed:
            _armed.remove(self)
        _lock.release()
        self._cb = None

    def _fire(self, _):
        self._queued = False
        cb = self._cb
        if cb is None:
            return
        if self._mode != Timer.PERIODIC:
            self.deinit()
        cb(self)


class Pin:
    """A GPIO without hardware: it remembers its output level and reads it back."""

    IN = const(0)
    OUT = const(1)
    OPEN_DRAIN = const(2)
    PULL_UP = const(1)
    IRQ_RISING = const(1)
    IRQ_FALLING = const(2)

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        self._id = id
        self._value = 0
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        if mode != -1:
            self._mode = mode
        if pull == Pin.PULL_UP:
            self._value = 1
        if value is not None:
            self._value = 1 if value else 0

    def value(self, x=None):
        if x is None:
            return self._value
        self._value = 1 if x else 0
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self._value = 1

    def off(self):
        self._value = 0


def reset():
    """Hard-reset the board: the supervisor boots it again (boot.py, main.py)."""
    sys.exit(EXIT_HARD_RESET)


def soft_reset():
    """Soft-reset the board, as Ctrl-D does."""
    sys.exit(0)


def reset_cause():
    """Why the chip last started, from the supervisor's ESPSSL_VBOARD_CAUSE (the
    last boot that restarted the chip; a soft reboot keeps it), else ESPSSL_VBOARD_RESET.

    "reset" (after machine.reset(): the SDK's system_restart) -> SOFT_RESET,
    "hard" (the reset pin, e.g. esptool's hard reset) -> HARD_RESET, "crash"
    (an exception reset) -> 2 (REASON_EXCEPTION_RST), anything
    else ("power", and soft reboots, which do not restart the chip) ->
    PWRON_RESET.
    """
    kind = _getenv("ESPSSL_VBOARD_CAUSE") or _getenv("ESPSSL_VBOARD_RESET") or "power"
    if kind == "crash":
        return 2  # REASON_EXCEPTION_RST: the port has no name for it
    if kind == "reset":
        return SOFT_RESET
    if kind == "hard":
        return HARD_RESET
    return PWRON_RESET


def unique_id():
    """The chip id (system_get_chip_id(), from the efuse MAC), 4 bytes little-endian."""
    import network

    mac = network.WLAN(network.STA_IF).config("mac")
    cid = mac[5] | mac[4] << 8 | mac[3] << 16
    return bytes((cid & 0xFF, cid >> 8 & 0xFF, cid >> 16 & 0xFF, 0))


def freq(hz=None):
    """CPU frequency in Hz: 80 MHz or 160 MHz (the only ones the ESP8266 has)."""
    global _freq
    if hz is None:
        return _freq
    if hz != 80000000 and hz != 160000000:
        raise ValueError("frequency can only be either 80Mhz or 160MHz")
    _freq = hz
    return None


def idle():
    """Wait a little, letting scheduled callbacks run; returns the CPU cycles waited."""
    t = time.ticks_us()
    time.sleep_ms(1)
    return time.ticks_diff(time.ticks_us(), t) * (_freq // 1000000)


def disable_irq():
    return 0


def enable_irq(state):
    return None
