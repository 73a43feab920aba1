# The ESP8266 port's `os` module for the virtual board.  vboard_boot.py
# installs it as sys.modules["os"] in place of the unix port's, which has
# what a board lacks (getenv/putenv/unsetenv, system, VfsPosix, VfsLfs1,
# errno) and lacks what a board has (uname, sync, dupterm).  Everything
# else is the unix port's own function: the filesystem calls act on the
# board's filesystem mounted at '/' by vboard_boot.py.
from os import (  # noqa: F401  (re-exported: the board's os has them)
    VfsFat,
    VfsLfs2,
    chdir,
    getcwd,
    ilistdir,
    listdir,
    mkdir,
    mount,
    remove,
    rename,
    rmdir,
    sep,
    stat,
    statvfs,
    umount,
    urandom,
)

_UNAME = (
    "esp8266",  # sysname
    "esp8266",  # nodename
    "2.2.0-dev(9422289)",  # release: the NONOS SDK MicroPython 1.2x builds with
    "v1.29.0 on 2026-07-05 (virtual board)",  # version
    "ESP module (virtual) with ESP8266",  # machine
)


class _Uname(tuple):
    # os.uname() on a board: a tuple whose fields also have names.
    sysname = property(lambda self: self[0])
    nodename = property(lambda self: self[1])
    release = property(lambda self: self[2])
    version = property(lambda self: self[3])
    machine = property(lambda self: self[4])


def uname():
    """(sysname, nodename, release, version, machine) of the (virtual) ESP8266."""
    return _Uname(_UNAME)


def sync():
    """Flush the filesystems: every write already went to the flash image."""


_dupterm = [None, None]  # streams attached to the REPL (not wired up here)


def dupterm(stream_object, index=0):
    """Attach a stream to the REPL: recorded, not wired up on the virtual board."""
    prev = _dupterm[index]
    _dupterm[index] = stream_object
    return prev


def dupterm_notify(obj):
    pass
