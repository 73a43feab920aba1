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
#   ESPSSL_VBOARD_CAUSE       the RESET kind of the last boot that restarted
#                             the chip ("crash": an exception reset), for
#                             machine.reset_cause(); default: ESPSSL_VBOARD_RESET
#   ESPSSL_VBOARD_ROMFS       "start,end" (decimal bytes) of the ROMFS partition
#                             (FLASH_2M_ROMFS variant); unset: no ROMFS
#
# It must be the main script (not imported): boot.py and main.py run in its
# globals, which `-i` then hands to the REPL, as a board's REPL sees them.
#
# Heap: on a board `esp`, `network`, `machine`, `os` and `tls` are built in
# and cost no GC heap; here they are Python modules loaded at boot (~37 KiB, ~28 KiB on a 32-bit port).
# Give micropython a heap larger than ESPSSL_VBOARD_HEAP, by HEAP_SLACK below
# (96 KiB: the modules keep ~45 KiB on the 64-bit port, their flash buffers included;
# compiling them needs more for a moment).
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
# Steps: reserve the user's heap (one block, on the still empty heap); map
# the ROMFS partition if there is one (esp._rom_load); install the device
# modules in sys.modules (the unix port's built-in `machine`, `os`, `vfs`,
# `socket` and an mbedTLS `tls` would shadow files of those names; the frozen
# `ssl` wrapper then builds on the `tls` shim, as on a board; an axTLS `tls`
# is kept as it is), unmount the host filesystem from '/', mount a valid
# ROMFS at /rom (as mp_init() does), mount the board's filesystem from the
# image at '/' (littlefs v2 or FAT, detected, as vfs.mount(bdev, "/") does on
# the ESP8266); if it does not mount and its first sector is erased, make it
# as inisetup.py does on first boot (VfsLfs2.mkfs + a default boot.py); if it
# is not erased, report it corrupt as inisetup.fs_corrupted() does (repeating;
# Ctrl-C goes on to the REPL without a filesystem).  Then chdir('/'), sys.path
# = ['', '.frozen', ('/rom', '/rom/lib',) '/lib', '/'], take the surplus away
# (fill every hole, free the reserve), boot.py, and main.py on a normal boot.
import gc
import sys
from os import getenv as _vboard_getenv  # the unix port's; the board's os has none

HEAP_SLACK = 96 * 1024  # what the supervisor adds to ESPSSL_VBOARD_HEAP for -X heapsize


def _vboard_setup():
    import os
    import vfs

    import esp
    import flashbdev

    esp.flash_size()  # opens the image while the host filesystem is mounted
    # The shims are loaded now: once the host filesystem is unmounted, no file
    # of this directory can be imported any more.
    import tls

    # An axTLS build (a board's own tls, e.g. a 32-bit ESP8266-like port) is
    # used as it is; only the unix port's mbedTLS gets the shim.
    shims = ("network", "machine_shim", "os_shim", "vfs_shim", "socket_shim")
    if hasattr(tls, "MBEDTLS_VERSION"):
        shims += ("tls_shim",)
    romfs = esp._rom_load()  # the mapped ROMFS partition, before the user's heap is measured
    for name in shims:
        try:
            __import__(name)
        except MemoryError:
            print("vboard: heap too small for the device modules: run micropython with -X heapsize=HEAP+96K")
            break
        gc.collect()
    if "machine_shim" in sys.modules:
        sys.modules["machine"] = sys.modules["machine_shim"]
    if "tls_shim" in sys.modules:
        sys.modules["tls"] = sys.modules["tls_shim"]
        sys.modules.pop("ssl", None)  # the frozen wrapper is imported over the shim
    if "os_shim" in sys.modules:
        sys.modules["os"] = sys.modules["os_shim"]
    if "socket_shim" in sys.modules:
        sys.modules["socket"] = sys.modules["socket_shim"]
    vfs_shim = sys.modules.get("vfs_shim")
    if vfs_shim is not None:
        if romfs is not None:
            vfs_shim._romfs()
        sys.modules["vfs"] = vfs_shim

    # The board's '/' is its own storage, never the host's.
    try:
        vfs.umount("/")
    except OSError:
        pass
    # mp_init() mounts a valid ROMFS at /rom (and puts /rom, /rom/lib on
    # sys.path) before _boot.py mounts the filesystem at '/'.
    rom_path = []
    if romfs is not None:
        try:
            vfs.mount(vfs.VfsRom(vfs_shim._seg), "/rom")
            rom_path = ["/rom", "/rom/lib"]
        except OSError:
            pass  # erased or not a ROMFS: not mounted, as on a board
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
    sys.path[:] = ["", ".frozen"] + rom_path + ["/lib", "/"]  # as runtime.c and main.c make it


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

    import micropython

    micropython.kbd_intr(3)  # as inisetup.fs_corrupted(): Ctrl-C leaves the loop
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
    micropython.kbd_intr(-1)


def _vboard_target():
    # What user code finds free after boot: the board's heap less BOOT_USE,
    # the GC heap an ESP8266 has in use once booted.
    BOOT_USE = 4 * 1024
    text = _vboard_getenv("ESPSSL_VBOARD_HEAP") or "38K"
    mult = 1
    if text[-1] in "kK":
        text, mult = text[:-1], 1024
    elif text[-1] in "mM":
        text, mult = text[:-1], 1024 * 1024
    return int(text) * mult - BOOT_USE


def _vboard_reserve():
    # First thing at boot, on an empty heap: the user's share, as one block
    # at the bottom.  The device modules load above it (their long-lived
    # objects would otherwise be strewn through what the user gets, and axTLS
    # needs a contiguous ~5.4 KiB block per handshake).  None if the process
    # has no surplus (started with exactly HEAP): then nothing is taken away.
    try:
        return bytearray(_vboard_target() - 64)
    except MemoryError:
        return None


def _vboard_heap():
    # Take the surplus of the process's heap away (see the header): fill every
    # hole above the reserve, then free it, so the user's heap is one region.
    global _vboard_reserved
    import esp

    if _vboard_reserved is None:
        return
    gc.collect()
    pad = []
    for chunk in (4096, 1024, 256, 64, 16):
        while True:
            try:
                pad.append(bytearray(chunk - 16))  # the GC block of a bytearray's data
            except MemoryError:
                break
    esp._heap_surplus = pad
    _vboard_reserved = None  # freed by the caller's collect: this frame still holds a copy


def _vboard_trim():
    # What the boot's garbage left free beyond the target (holes freed after
    # the fill) is taken too, from the bottom of the user's region.
    import esp

    if not hasattr(esp, "_heap_surplus"):
        return
    want = _vboard_target()
    for chunk in (1024, 256, 64):
        while gc.mem_free() - want >= chunk:
            esp._heap_surplus.append(bytearray(chunk - 16))


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


# The board's own boot is not interruptible (on an ESP8266 it takes
# milliseconds; here, loading the device modules, up to a second): a Ctrl-C
# that comes now (mpremote's, right after a reset) waits for the REPL, as
# input does.  boot.py and main.py take Ctrl-C again.
import micropython

micropython.kbd_intr(-1)
gc.collect()
_vboard_reserved = _vboard_reserve()
_vboard_setup()
_vboard_heap()
# The boot's own code goes before the user's heap is measured.
_vboard_run_main = (_vboard_getenv("ESPSSL_VBOARD_RESET") or "power") != "soft-raw"
del HEAP_SLACK, _vboard_setup, _vboard_initial_setup, _vboard_fs_corrupted, _vboard_heap
del _vboard_reserved, _vboard_reserve
gc.collect()  # here, not in _vboard_heap: the GC scans the C stack, a live frame's stale copy would keep the reserve
_vboard_trim()
del _vboard_trim, _vboard_target, _vboard_getenv
micropython.kbd_intr(3)
del micropython
_vboard_run("boot.py", globals())
if _vboard_run_main:
    _vboard_run("main.py", globals())
del _vboard_run, _vboard_run_main
gc.collect()
