"""`espssl vboard start|stop|status|run`: a virtual board in the background.

A board lives in a directory (default ``~/.espssl/vboard``, or
``$ESPSSL_VBOARD_DIR``)::

    flash.bin    the flash image: the board's whole state, kept across restarts
    board.lock   held (flock) by the running board: the truth about "running"
    board.pid    its process id
    port         symlink to its serial port (a pseudo-terminal, /dev/pts/N)
    board.log    what the board process logs

    variant      the MicroPython build it runs (variants.py), kept across restarts

``start`` runs ``espssl vboard run`` detached and prints the port once the
board listens; ``run`` serves in the foreground until SIGTERM or Ctrl-C.
"""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import layout
from ..errors import EspsslError, LayoutError

FLASH_SIZES = ("1M", "2M", "4M")
DEFAULT_FLASH = "4M"
DEFAULT_HEAP = None  # board.default_heap(): 56K on the 64-bit port, 38K on a 32-bit one
IMAGE = "flash.bin"
LOCK = "board.lock"
PIDFILE = "board.pid"
PORTLINK = "port"
LOG = "board.log"
VARIANT = "variant"
_START_TIMEOUT = 20.0  # s for the board process to open its port


def default_dir():
    return Path(os.environ.get("ESPSSL_VBOARD_DIR") or Path.home() / ".espssl" / "vboard")


def _profile_name(flash):
    return "esp8266-" + flash.lower()


def prepare_image(directory, flash=None):
    """The board's profile; creates DIR/flash.bin if missing, never touches a wrong one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / IMAGE
    wanted = layout.load(_profile_name(flash)) if flash else None
    if image.exists():
        size = image.stat().st_size
        if wanted is not None and size != wanted.flash_size:
            raise EspsslError(
                "%s holds %d bytes but --flash %s needs %d: left untouched; use another --dir "
                "or remove the image to start afresh" % (image, size, flash, wanted.flash_size)
            )
        try:
            return wanted or layout.for_flash_size(size)
        except LayoutError:
            raise EspsslError(
                "%s is %d bytes, not the size of any supported flash (%s): corrupt image, "
                "left untouched" % (image, size, ", ".join(FLASH_SIZES))
            ) from None
    from . import flashimage  # noqa: PLC0415

    profile = wanted or layout.load(_profile_name(DEFAULT_FLASH))
    flashimage.create(image, profile)  # atomic: no partial image on failure
    return profile


def board_setup(directory, flash=None, variant=None):
    """(profile, Variant) of the board in DIR for --flash FLASH and --variant VARIANT.

    Without --variant the one the board last ran (DIR/variant) is kept, else the
    plain build for the flash size.  Makes the image if missing (prepare_image).
    """
    from . import variants  # noqa: PLC0415

    directory = Path(directory)
    image = directory / IMAGE
    sizes = {layout.load(_profile_name(f)).flash_size: f for f in FLASH_SIZES}
    image_flash = sizes.get(image.stat().st_size) if image.exists() else None
    if image.exists() and image_flash is None:
        prepare_image(directory, flash)  # says what is wrong with it
    if variant is None and (directory / VARIANT).exists():
        kept = (directory / VARIANT).read_text().strip()
        if flash is None or flash in variants.VARIANTS.get(kept, variants.VARIANTS[variants.GENERIC]).flash:
            variant = kept
    v, size = variants.resolve(variant, flash, image_flash)
    profile = prepare_image(directory, size)
    (directory / VARIANT).write_text(v.name + "\n")
    return profile, v


def _check_micropython(path):
    if path is None:
        return None
    p = Path(path)
    if not p.is_file() or not os.access(p, os.X_OK):
        raise EspsslError("--micropython %s: not an executable file (a MicroPython unix-port binary)" % path)
    return str(p.resolve())


def _check_heap(heap):
    from .board import heap_bytes  # noqa: PLC0415

    if heap is None:
        return
    try:
        heap_bytes(heap)
    except ValueError:
        raise EspsslError("--heap %s: give a size from 16K to 64M, e.g. 56K (default; 38K on a 32-bit binary)" % heap) from None


def _lock(directory):
    """An fd holding DIR/board.lock exclusively, or None if a board holds it."""
    fd = os.open(Path(directory) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _state(directory):
    """(pid, port) of the board running in DIR, or None (stale files are removed)."""
    directory = Path(directory)
    if not (directory / LOCK).exists():
        return None
    fd = _lock(directory)
    if fd is not None:  # nobody holds it: no board; forget what a dead one left
        for name in (PIDFILE, PORTLINK):
            p = directory / name
            if p.is_symlink() or p.exists():
                p.unlink()
        os.close(fd)
        return None
    pid = port = None
    try:
        pid = int((directory / PIDFILE).read_text())
        port = os.readlink(directory / PORTLINK)
    except (OSError, ValueError):
        pass  # still starting
    return pid, port


def serve(directory, flash=None, heap=DEFAULT_HEAP, boot_script=None, announce=print, variant=None,
          micropython=None):
    """Run a board in this process until SIGTERM/SIGINT; announce(port) once it listens."""
    from .board import Board  # noqa: PLC0415

    directory = Path(directory).resolve()
    _check_heap(heap)
    micropython = _check_micropython(micropython)
    directory.mkdir(parents=True, exist_ok=True)
    fd = _lock(directory)
    if fd is None:
        raise EspsslError("a board is already running in %s (see `espssl vboard status`)" % directory)
    try:
        profile, v = board_setup(directory, flash, variant)

        def log(msg):
            print("%s %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)

        board = Board(directory, profile, heap=heap, boot_script=boot_script, log=log, variant=v,
                      micropython=micropython)
        signal.signal(signal.SIGTERM, board.request_stop)
        signal.signal(signal.SIGINT, board.request_stop)
        signal.signal(signal.SIGHUP, board.request_stop)
        port = board.open_port()
        link = directory / PORTLINK
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(port, link)
        (directory / PIDFILE).write_text("%d\n" % os.getpid())
        log("board %s (%s, %s, heap %s, %s) on %s"
            % (directory, profile.name, v.name, board.heap, micropython or "default micropython", port))
        announce(port)
        try:
            board.run()
        finally:
            for name in (PIDFILE, PORTLINK):
                p = directory / name
                if p.is_symlink() or p.exists():
                    p.unlink()
            log("board stopped")
    finally:
        os.close(fd)


def start(directory, flash=None, heap=DEFAULT_HEAP, boot_script=None, variant=None, micropython=None):
    """Start a board in the background; returns its serial port path."""
    directory = Path(directory).resolve()
    _check_heap(heap)
    micropython = _check_micropython(micropython)
    directory.mkdir(parents=True, exist_ok=True)
    if _state(directory) is not None:
        raise EspsslError("a board is already running in %s (see `espssl vboard status`)" % directory)
    _, v = board_setup(directory, flash, variant)  # clear errors here, before detaching
    argv = [sys.executable, "-m", "espssl", "vboard", "run", "--dir", str(directory), "--variant", v.name]
    if heap:
        argv += ["--heap", heap]
    if micropython:
        argv += ["--micropython", micropython]
    if flash:
        argv += ["--flash", flash]
    if boot_script:
        argv += ["--boot-script", str(boot_script)]
    with open(directory / LOG, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        # Not _state(): taking the lock, even briefly, could make the new board fail.
        try:
            if int((directory / PIDFILE).read_text()) == proc.pid:
                return os.readlink(directory / PORTLINK)
        except (OSError, ValueError):
            pass  # not up yet (or what a dead board left)
        if proc.poll() is not None:
            raise EspsslError("the board did not start: %s" % _last_line(directory / LOG))
        time.sleep(0.05)
    proc.terminate()
    proc.wait()
    raise EspsslError("the board did not open its port within %ds; see %s" % (_START_TIMEOUT, directory / LOG))


def _last_line(path):
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def stop(directory, timeout=10.0):
    """Stop the board in DIR; False if none was running."""
    state = _state(directory)
    if state is None:
        return False
    pid = state[0]
    if pid is None:
        raise EspsslError("the board in %s has no pid file; is it still starting?" % directory)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state(directory) is None:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    _state(directory)
    return True


def status(directory):
    """A dict describing the board in DIR (``running`` False if none)."""
    directory = Path(directory).resolve()
    info = {"dir": str(directory), "running": False}
    image = directory / IMAGE
    if image.exists():
        info["image"] = str(image)
        info["flash_size"] = image.stat().st_size
    if (directory / VARIANT).exists():
        info["variant"] = (directory / VARIANT).read_text().strip()
    state = _state(directory)
    if state is not None:
        info.update(running=True, pid=state[0], port=state[1])
    return info


# -- argparse glue ---------------------------------------------------------------
def _cmd_start(args):
    print(start(args.dir, args.flash, args.heap, args.boot_script, args.variant, args.micropython))


def _cmd_run(args):
    serve(args.dir, args.flash, args.heap, args.boot_script, announce=lambda p: print(p, flush=True),
          variant=args.variant, micropython=args.micropython)


def _cmd_stop(args):
    if stop(args.dir):
        print("stopped the board in %s" % Path(args.dir).resolve())
    else:
        print("no board running in %s" % Path(args.dir).resolve())


def _cmd_status(args):
    info = status(args.dir)
    size = info.get("flash_size")
    flash = "%d KiB flash image %s" % (size // 1024, info["image"]) if size else "no flash image yet"
    if info.get("variant"):
        flash += ", %s" % info["variant"]
    if info["running"]:
        print("running: pid %s, port %s, %s" % (info["pid"], info["port"], flash))
        return 0
    print("stopped: %s (%s)" % (info["dir"], flash))
    return 1


def register(subparsers):
    p = subparsers.add_parser(
        "vboard", help="the virtual ESP8266 board (esptool and mpremote work on its port)",
        description="A virtual ESP8266: a flash image, MicroPython's raw REPL for mpremote and "
        "the ROM/stub serial loader for esptool, on one pseudo-terminal.",
    )
    sub = p.add_subparsers(dest="vboard_command", metavar="ACTION")
    sub.required = True

    def common(q):
        q.add_argument("--dir", type=Path, default=default_dir(),
                       help="board directory holding flash.bin, the port link and the log "
                       "(default: $ESPSSL_VBOARD_DIR or ~/.espssl/vboard)")

    def board_opts(q):
        q.add_argument("--flash", choices=FLASH_SIZES, type=str.upper,
                       help="flash size of a new image (default %s, 1M for --variant FLASH_1M); an existing image must match"
                       % DEFAULT_FLASH)
        q.add_argument("--heap", default=DEFAULT_HEAP,
                       help="MicroPython GC heap; default: what leaves a program the headroom of an "
                       "ESP8266's 38K: 56K on the 64-bit unix port (its objects are bigger, mbedTLS "
                       "needs more than axTLS), 38K on a 32-bit binary")
        q.add_argument("--variant", type=str.upper, metavar="VARIANT",
                       help="the MicroPython ESP8266_GENERIC build: FLASH_2M_ROMFS (2 MiB+ with a "
                       "320 KiB ROMFS at 0xB0000, mounted at /rom), FLASH_1M, or GENERIC (the plain "
                       "2 MiB+ build); default: what the board last ran, else the plain build for the flash")
        q.add_argument("--micropython", metavar="PATH",
                       help="MicroPython unix-port binary to run as the board (default: "
                       "$ESPSSL_MICROPYTHON, else the one installed); an axTLS build's tls is used "
                       "as it is")
        q.add_argument("--boot-script", type=Path, help=argparse_suppress())

    q = sub.add_parser("start", help="start a board in the background; prints its serial port")
    common(q)
    board_opts(q)
    q.set_defaults(func=_cmd_start)
    q = sub.add_parser("run", help="run a board in the foreground (Ctrl-C stops it)")
    common(q)
    board_opts(q)
    q.set_defaults(func=_cmd_run)
    q = sub.add_parser("stop", help="stop the board")
    common(q)
    q.set_defaults(func=_cmd_stop)
    q = sub.add_parser("status", help="say whether the board runs, and on which port (exit 1 if not)")
    common(q)
    q.set_defaults(func=_cmd_status)


def argparse_suppress():
    import argparse  # noqa: PLC0415

    return argparse.SUPPRESS
