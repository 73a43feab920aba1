"""`espssl deploy` into a board's ROMFS partition, where .mpy bytecode runs from flash.

MicroPython's ESP8266_GENERIC FLASH_2M_ROMFS firmware (1.25+) maps a 320 KiB
ROMFS partition (flash 0xB0000..0xFFFFF); at every (soft) reset ``mp_init``
mounts it at ``/rom`` and puts ``/rom`` and ``/rom/lib`` on ``sys.path`` ahead
of ``/lib``, so ``import espconn`` finds ``/rom/espconn`` and its code is never
copied into the 38 KiB heap.  No ``boot.py`` is needed or touched.

The image is built with mpremote's own ROMFS writer (``mpremote.romfs``) from
the .mpy files ``espssl.deploy`` compiled for the board, plus a manifest
(``/.espssl-deploy``) naming what is ours; it is written with mpremote's own
``romfs deploy`` (``mpremote.commands.do_romfs``) over the open raw REPL, then
hashed on the board, the board soft-reset and ``espconn`` imported from
``/rom``.  An image without our manifest is somebody else's: it is replaced only
with ``force``, after it is saved to the backup directory.
"""

import argparse
import binascii
import hashlib
import tempfile
from pathlib import Path

from .errors import DeviceError, EspsslError

from .deploy import MANIFEST, manifest_bytes, parse_manifest

PACKAGE = "espconn"
ROMFS_HEADER = b"\xd2\xcd\x31"
MOUNT = "/rom"

_STATE = """
import vfs, os, esp
_s = vfs.rom_ioctl(2, 0)
_h = bytes(memoryview(_s)[:8])
_m = None
_l = []
if _h[:3] == %r:
    try:
        os.stat(%r)
    except OSError:
        vfs.mount(vfs.VfsRom(_s), %r)
    _l = os.listdir(%r)
    try:
        with open(%r) as _f:
            _m = _f.read()
    except OSError:
        pass
print(repr((_h, _m, _l, esp.flash_size())))
del _s, _h, _m, _l
""" % (ROMFS_HEADER, MOUNT, MOUNT, MOUNT, MOUNT + "/" + MANIFEST)

_HASH = """
import vfs, hashlib, binascii
_v = memoryview(vfs.rom_ioctl(2, 0))
_d = hashlib.sha256()
for _o in range(0, %d, 1024):
    _d.update(_v[_o:min(_o + 1024, %d)])
print(repr(binascii.hexlify(_d.digest()).decode()))
del _v, _d
"""

_READ = """
import vfs, binascii
print(repr(binascii.b2a_base64(memoryview(vfs.rom_ioctl(2, 0))[%d:%d])))
"""


def image_size(head):
    """Total bytes of the ROMFS image whose first bytes are HEAD (header + varint length)."""
    size = 0
    for i, b in enumerate(head[3:]):
        size = (size << 7) | (b & 0x7F)
        if not b & 0x80:
            return 3 + i + 1 + size
    raise EspsslError("the ROMFS header's length does not end within %d bytes" % len(head))


def build_image(files):
    """A ROMFS image (bytes) of FILES ({'espconn/conn.mpy': bytes, ...}) plus our manifest."""
    from mpremote.romfs import VfsRomWriter

    hashes = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    tree = {}
    for path, data in files.items():
        node = tree
        *dirs, name = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = data
    tree[MANIFEST] = manifest_bytes(hashes)
    writer = VfsRomWriter()

    def add(node):
        for name in sorted(node):
            if isinstance(node[name], dict):
                writer.opendir(name)
                add(node[name])
                writer.closedir()
            else:
                writer.mkfile(name, node[name])

    add(tree)
    return writer.finalise(), hashes


def _read_image(board, size):
    out = bytearray()
    for off in range(0, size, 2048):
        out += binascii.a2b_base64(board.eval_code(_READ % (off, min(off + 2048, size)), timeout=30))
    return bytes(out)


def _write_with_mpremote(board, image, out):
    """Write IMAGE to ROMFS partition 0 with mpremote's own `romfs deploy`, on our open raw REPL."""
    from mpremote import commands
    from mpremote.main import State
    from mpremote.transport import TransportError

    state = State()
    state.transport = board.t
    state._auto_soft_reset = False  # we are in the raw REPL already; no reset half-way
    with tempfile.TemporaryDirectory(prefix="espssl-romfs-") as tmp:
        path = Path(tmp) / "espconn.romfs"  # mpremote takes a built image by this suffix
        path.write_bytes(image)
        args = argparse.Namespace(command=["deploy"], path=str(path), partition=0, mpy=False, output=None)
        try:
            commands.do_romfs(state, args)
        except (TransportError, OSError, commands.CommandError) as e:
            raise DeviceError("writing the ROMFS image failed: %s" % e) from None
        except SystemExit:
            raise DeviceError("mpremote refused the ROMFS image (%d bytes)" % len(image)) from None


def deploy(board, cmd, src, rom_size, force=False, examples=False, backup_dir=None, port=None, out=print):
    """Put espconn (and EXAMPLES) into the board's ROMFS; see the module docstring."""
    from . import deploy as dep
    from . import flash, layout

    with tempfile.TemporaryDirectory(prefix="espssl-mpy-") as tmp:
        files = dep.compile_target(cmd, src, tmp, PACKAGE, examples)
    image, hashes = build_image(files)
    if len(image) > rom_size:
        raise EspsslError("the ROMFS image is %d bytes but the board's ROMFS partition holds %d" % (len(image), rom_size))
    head, manifest, listing, flash_size = board.eval_code(_STATE, timeout=20)
    result = {"image_size": len(image), "romfs_size": rom_size, "written": False, "backup": None}
    if head[:3] == ROMFS_HEADER:
        theirs = parse_manifest(manifest) if manifest is not None else None
        old_size = image_size(head)
        if theirs is None:
            what = "an image espssl did not write (%d bytes: %s)" % (old_size, ", ".join(sorted(listing)) or "empty")
            if not force:
                raise EspsslError(
                    "the ROMFS partition holds %s; pass --force to replace it (it is saved to the "
                    "backup directory first)" % what
                )
            try:
                offset = layout.for_flash_size(flash_size, romfs=True).romfs[0]
            except layout.LayoutError:
                offset = 0
            old = _read_image(board, old_size)
            path = flash.save_backup(backup_dir, "romfs", offset, old, port, flash_size, suffix=".romfs")
            result["backup"] = path
            out("--force: the ROMFS held %s; saved to %s (`mpremote romfs deploy %s` puts it back)" % (what, path, path))
        elif theirs == hashes and not force:
            out("ROMFS already holds this espconn (%d files, image %d bytes): unchanged" % (len(hashes), len(image)))
            return _after(board, image, result, out, write=False)
        else:
            changed = sorted(p for p in set(hashes) | set(theirs) if hashes.get(p) != theirs.get(p))
            out("ROMFS holds an earlier espconn deployment; %d files differ: %s" % (len(changed), ", ".join(changed)))
    out("Building a ROMFS image with mpremote: %d files, %d bytes of the %d-byte partition"
        % (len(files) + 1, len(image), rom_size))
    return _after(board, image, result, out, write=True)


def _after(board, image, result, out, write):
    """Write (if WRITE), hash on the board, soft-reset, import espconn from /rom."""
    from . import deploy as dep

    if write:
        _write_with_mpremote(board, image, out)
        result["written"] = True
    got = board.eval_code(_HASH % (len(image), len(image)), timeout=60)
    want = hashlib.sha256(image).hexdigest()
    if got != want:
        raise DeviceError("the ROMFS partition reads back differently from the image written (sha256 %s, "
                          "expected %s): deploy again" % (got[:16], want[:16]))
    out("ROMFS image (%d bytes) read back on the board: sha256 verified" % len(image))
    where, _before, free = dep._import_check(board, PACKAGE, out)
    if not where.startswith(MOUNT + "/"):
        raise DeviceError(
            "after a reset, espconn imports from %s, not from %s: a boot.py changing sys.path, or "
            "firmware older than 1.25 (which does not mount ROMFS at boot)" % (where, MOUNT)
        )
    result["file"], result["mem_free"] = where, free
    return result
