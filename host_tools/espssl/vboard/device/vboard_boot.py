# Boot script of the virtual ESP8266 board: what the ESP8266 port's _boot.py
# and pyexec do at power-on, for the MicroPython unix port.
#
# How the board supervisor runs it (espssl/vboard/board.py):
#
#     MICROPYPATH=<this directory>:.frozen:/lib \
#     micropython -X heapsize=<H> -i vboard_boot.py
#
# with the working directory anywhere, and these environment variables:
#
#   ESPSSL_VBOARD_FLASH       path of the flash image file (required)
#   ESPSSL_VBOARD_FLASH_SIZE  flash size in bytes (decimal; default: file size)
#   ESPSSL_VBOARD_FS_START    filesystem region [START, END) in the image, in
#   ESPSSL_VBOARD_FS_END      bytes (decimal); END <= START: no filesystem
#   ESPSSL_VBOARD_HEAP        the board's GC heap ("38K", "38912"; default 38K)
#   ESPSSL_VBOARD_RESET       "power" (default), "hard" (reset pin), "reset"
#                             (after machine.reset()), "soft": boot.py then
#                             main.py; "soft-raw": boot.py only (a soft reset
#                             in the raw REPL, as pyexec does on a board).
#                             machine.reset_cause() reports it.
#   ESPSSL_VBOARD_MAC         optional station MAC, 12 hex digits
#
# It must be the main script (not imported): boot.py and main.py run in its
# globals, which `-i` then hands to the REPL, as a board's REPL sees them.
#
# Heap: on a board `esp`, `network`, `machine`, `os` and `tls` are built in
# and cost no GC heap; here they are Python modules loaded at boot (~25 KiB).
# Give micropython a heap larger than ESPSSL_VBOARD_HEAP, by HEAP_SLACK below
# (32 KiB: the modules keep ~25 KiB, compiling them needs more for a moment).
# After loading everything this script takes the surplus away, filling the
# holes the loading left first, so that user code finds what an ESP8266 with
# that heap has free after boot (the heap less BOOT_USE), in one contiguous
# region.  With exactly HEAP, nothing is taken and user code has that much
# less free than on a board.  Caveat: the unix port is 64-bit, its objects
# take about twice the bytes of the ESP8266's, so the same bytes hold fewer
# objects here; bytearrays and TLS buffers take the same.
#
# Exit status of the process: EXIT_HARD_RESET (0x5A) from machine.reset()
# asks for a hard reset (the supervisor boots with "power"); anything else is a
# soft reset (Ctrl-D, sys.exit(), machine.soft_reset()).
#
# Steps: install the device modules in sys.modules (the unix port's built-in
# `machine`, `tls` and `os` would shadow files of those names; the frozen
# `ssl` wrapper then builds on the `tls` shim, as on a board), open the flash
# image, unmount the host filesystem from '/', mount the board's filesystem from the
# image there (littlefs v2 or FAT, detected, as vfs.mount(bdev, "/") does on
# the ESP8266); if it does not mount and its first sector is erased, make it
# as inisetup.py does on first boot (VfsLfs2.mkfs + a default boot.py); if it
# is not erased, report it corrupt as inisetup.fs_corrupted() does (repeating;
# Ctrl-C goes on to the REPL without a filesystem).  Then chdir('/'),
# sys.path = ['', '.frozen', '/lib'], boot.py, and main.py on a normal boot.
import gc
import sys
from os import getenv as _vboard_getenv  # the unix port's; the board's os has none

HEAP_SLACK = 32 * 1024  # what the supervisor adds to ESPSSL_VBOARD_HEAP for -X heapsize


def _vboard_setup():
    import os
    import vfs

    import esp
    import flashbdev

    esp.flash_size()  # opens the image while the host filesystem is mounted
    # The shims are loaded now: once the host filesystem is unmounted, no file
    # of this directory can be imported any more.
    for name in ("network", "machine_shim", "tls_shim", "os_shim"):
        try:
            __import__(name)
        except MemoryError:
            print("vboard: heap too small for the device modules: run micropython with -X heapsize=HEAP+32K")
            break
        gc.collect()
    if "machine_shim" in sys.modules:
        sys.modules["machine"] = sys.modules["machine_shim"]
    if "tls_shim" in sys.modules:
        sys.modules["tls"] = sys.modules["tls_shim"]
        sys.modules.pop("ssl", None)  # the frozen wrapper is imported over the shim
    if "os_shim" in sys.modules:
        sys.modules["os"] = sys.modules["os_shim"]

    # The board's '/' is its own storage, never the host's.
    try:
        vfs.umount("/")
    except OSError:
        pass
    bdev = flashbdev.bdev
    if bdev is not None:
        try:
            vfs.mount(bdev, "/")
        except OSError:
            _vboard_initial_setup(vfs, bdev)
    try:
        os.chdir("/")
    except OSError:
        pass
    sys.path[:] = ["", ".frozen", "/lib"]


def _vboard_initial_setup(vfs, bdev):
    # inisetup.check_bootsec(): only an erased filesystem is made anew.
    buf = bytearray(bdev.SEC_SIZE)
    bdev.readblocks(0, buf)
    for b in buf:
        if b != 0xFF:
            _vboard_fs_corrupted(bdev)
            return
    buf = None
    print("Performing initial setup")
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), "/")
    with open("/boot.py", "w") as f:
        f.write(
            "# This file is executed on every boot (including wake-boot from deepsleep)\n"
            "#import esp\n"
            "#esp.osdebug(None)\n"
            "import os, machine\n"
            "#os.dupterm(None, 1) # disable REPL on UART(0)\n"
            "import gc\n"
            "#import webrepl\n"
            "#webrepl.start()\n"
            "gc.collect()\n"
        )


def _vboard_fs_corrupted(bdev):
    import time

    try:
        while True:
            print(
                "The filesystem starting at sector %d with size %d sectors looks corrupt.\n"
                "You may want to make a flash snapshot and try to recover it. Otherwise,\n"
                "format it with vfs.VfsLfs2.mkfs(bdev), or completely erase the flash and\n"
                "reprogram MicroPython.\n" % (bdev.start_sec, bdev.blocks)
            )
            time.sleep(3)
    except KeyboardInterrupt:
        pass


def _vboard_heap():
    # Take the surplus of the process's heap away (see the header).
    import esp

    BOOT_USE = 4 * 1024  # GC heap an ESP8266 has in use after boot
    text = _vboard_getenv("ESPSSL_VBOARD_HEAP") or "38K"
    mult = 1
    if text[-1] in "kK":
        text, mult = text[:-1], 1024
    elif text[-1] in "mM":
        text, mult = text[:-1], 1024 * 1024
    heap = int(text) * mult
    target = heap - BOOT_USE
    # First fit from the bottom: chunks fill the holes the module loading left
    # (compiler garbage) before they eat into the free top of the heap, so
    # what stays free is one contiguous region, as on a freshly booted board
    # (axTLS needs a contiguous ~5.4 KiB block for each handshake).
    gc.collect()
    if gc.mem_free() <= target + 64:
        return
    pad = [None] * 256
    i = 0
    for chunk in (1024, 256, 64):
        while i < 255 and gc.mem_free() - target >= chunk:
            try:
                pad[i] = bytearray(chunk - 16)  # the GC block of a bytearray's data
            except MemoryError:
                break
            i += 1
    esp._heap_surplus = pad
    gc.collect()


def _vboard_run(name, g):
    try:
        f = open(name)
    except OSError:
        return
    try:
        src = f.read()
    finally:
        f.close()
    try:
        exec(src, g)
    except SystemExit:
        raise
    except BaseException as e:  # as pyexec: print it and go on to the REPL
        sys.print_exception(e)


_vboard_setup()
_vboard_heap()
_vboard_run("boot.py", globals())
if (_vboard_getenv("ESPSSL_VBOARD_RESET") or "power") != "soft-raw":
    _vboard_run("main.py", globals())
del HEAP_SLACK, _vboard_getenv, _vboard_setup, _vboard_initial_setup, _vboard_fs_corrupted, _vboard_heap, _vboard_run
gc.collect()
