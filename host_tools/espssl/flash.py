"""Flashing with esptool: MicroPython itself, and CA / device-certificate bins at a sector.

Commands (``espssl flash-firmware``, ``flash-ca``, ``flash-cert``) only parse
and call the functions here; each function takes what it needs and raises
``EspsslError`` (or ``LayoutError``/``DeviceError``/``FormatError``) when the
input, the user's request or the board says no.

A bin write goes like this, and nothing touches the flash before step 5:

1. the file is checked with ``espconn.binfmt`` (the one codec of the format);
2. MicroPython is asked over the raw REPL whether it has a ROMFS partition
   (``vfs.rom_ioctl``): esptool alone cannot tell an empty ROMFS from free
   flash.  Then esptool connects (real esptool, Python API, flasher stub) and
   the flash size is detected; the board profile follows from both (or
   ``--board``);
3. the firmware length word at 0x8FFC is read from the board itself;
4. ``layout.check_write`` refuses sectors over the firmware image, the ROMFS
   partition, the filesystem or the SDK parameters (and says which are free);
5. what the write replaces is read; a sector holding another valid CA or
   certificate bin than the one being replaced is refused (``--force``);
   the old bytes are saved to a timestamped backup file (plus a ``.json`` note
   of where they came from);
6. the bin, padded with 0xFF to whole sectors, is written;
7. the sectors are read back and compared byte for byte.

``flash-firmware`` erases the whole flash: it first finds every sector that
is not erased (MD5 per block, on the board), says what they hold, and saves
them as one whole-flash image (``esptool write-flash 0 FILE`` puts it back).
"""

import dataclasses
import datetime
import hashlib
import json
import os
import stat
import struct
import sys
from pathlib import Path

from espconn import binfmt
from espconn.errors import FormatError

from . import layout
from .cli import int_arg
from .errors import DeviceError, EspsslError
from .romfs import ROMFS_HEADER, image_size

SECTOR = 4096
FIRMWARE_MAGIC = 0xE9  # ESP8266 ROM image header: first byte of every app image
_MD5_LEN = 16  # makeimg.py appends MD5(image[4:len]) after the image
_BACKUP_DIR_ENV = "ESPSSL_BACKUP_DIR"
DEFAULT_BACKUP_DIR = "espssl-backups"

KIND_CA = "ca"
KIND_CERT = "cert"
KIND_FLASH = "flash"  # a whole-flash backup made before flash-firmware erases
_KIND_FILES = {KIND_CA: "esp_ca_cert.bin", KIND_CERT: "esp_cert_private_key.bin"}
ROM_BAUD = 115200  # esptool talks to the ROM loader at this speed, then --baud


# ---------------------------------------------------------------- the board's port


def virtual_port(directory=None):
    """The serial port of the running virtual board (``espssl vboard status``), or None."""
    try:
        from .vboard import cli as vboard
    except ImportError:  # the virtual board is an optional part
        return None
    info = vboard.status(directory or vboard.default_dir())
    if not info.get("running"):
        return None
    return info.get("port")


def usb_serial_ports():
    """pyserial's ports that are USB devices (a board's USB-serial bridge)."""
    from serial.tools import list_ports

    return [p for p in list_ports.comports() if p.vid is not None]


def resolve_port(port, out=print):
    """``(port, is_virtual)``: PORT as given, else the running virtual board's,
    else the one USB serial device present (saying which was chosen)."""
    if port:
        return port, is_virtual_port(port)
    found = virtual_port()
    if found:
        out("No --port: using the running virtual board on %s" % found)
        return found, True
    usb = usb_serial_ports()
    if len(usb) == 1:
        out("No --port: using %s (%s), the only USB serial device" % (usb[0].device, usb[0].description))
        return usb[0].device, False
    if usb:
        raise DeviceError(
            "no --port given and %d USB serial devices are present (%s): pass --port"
            % (len(usb), ", ".join("%s: %s" % (p.device, p.description) for p in usb))
        )
    raise DeviceError(
        "no --port given, no virtual board is running and no USB serial device is present; "
        "pass --port /dev/ttyUSB0 for a real board, or start the virtual one with "
        "`espssl vboard start` (`make demo` does it for you)"
    )


def is_virtual_port(port):
    """True for a pseudo-terminal or socket:// URL: no DTR/RTS lines to reset with."""
    if port.startswith("socket://"):
        return True
    if port == virtual_port():
        return True
    try:
        st = os.stat(port)
    except OSError:
        return False
    # Unix98 pty slaves are character devices with major 136..143.
    return stat.S_ISCHR(st.st_mode) and 136 <= os.major(st.st_rdev) <= 143


def reset_modes(port, virtual, before=None, after=None):
    """esptool's --before/--after for this port: a pty cannot pulse DTR/RTS."""
    if before is None:
        before = "no-reset" if virtual else "default-reset"
    if after is None:
        after = "soft-reset" if virtual else "hard-reset"
    return before, after


# ---------------------------------------------------------------- esptool session


def _no_progress():
    return not sys.stdout.isatty()  # progress bars on a terminal only


def probe_romfs(port, timeout=6):
    """What MicroPython on PORT says of its ROMFS: ``{"segments", "romfs_size"}``, or None
    when no MicroPython answers on the raw REPL within TIMEOUT seconds."""
    from .deploy import Board, romfs_segments

    try:
        # a board that just reset (esptool's soft-reset, say) needs a moment to reach its REPL
        with Board(port, soft_reset=False, repl_timeout=timeout, serial_timeout=1) as b:
            segments, romfs_size = romfs_segments(b)
    except (DeviceError, ValueError, SyntaxError, TypeError):
        return None
    return {"segments": segments, "romfs_size": romfs_size}


def profile_for(flash_size, facts, romfs_head=None, firmware_len=None):
    """The board profile from the flash size and what the board said (FACTS, or None).

    With FACTS: a ROMFS segment picks the ROMFS profile (its size must match).
    Without (MicroPython silent): a ROMFS image at the partition's start, or an
    image too long for the ROMFS variant, decides; otherwise the result keeps the
    partition reserved and has no default sectors (nobody can tell).
    """
    if facts is not None:
        if facts["segments"] > 0:
            prof = layout.for_flash_size(flash_size, romfs=True)
            s, e = prof.romfs
            if facts["romfs_size"] != e - s:
                raise layout.LayoutError(
                    "the board's ROMFS partition is %d bytes but %s has %s: not the official "
                    "FLASH_2M_ROMFS layout; pass --board only if you know where it lies"
                    % (facts["romfs_size"], layout.romfs_text(prof), prof.name)
                )
            return prof
        return layout.for_flash_size(flash_size)
    plain = layout.for_flash_size(flash_size)
    try:
        rom = layout.for_flash_size(flash_size, romfs=True)
    except layout.LayoutError:
        return plain  # no ROMFS variant for this flash size (1 MiB)
    if romfs_head is not None and bytes(romfs_head[:3]) == ROMFS_HEADER:
        return rom
    if firmware_len is not None and layout.image_end(firmware_len) > rom.firmware[1]:
        return plain  # longer than the ROMFS variant's firmware region
    unknown = ("MicroPython did not answer on the REPL, so espssl cannot tell whether this firmware "
               "has a ROMFS partition at 0x%X..0x%X; pass --board %s (the plain build) or --board %s"
               % (rom.romfs[0], rom.romfs[1] - 1, plain.name, rom.name))
    return dataclasses.replace(
        plain,
        name="%s or %s" % (plain.name, rom.name),
        romfs=rom.romfs,
        default_ca_sector=None,
        default_cert_sector=None,
        reason=unknown,
        extra=dict(plain.extra, romfs_note="if this is the FLASH_2M_ROMFS firmware (" + unknown + ")"),
    )


def _quiet_virtual_notes(virtual):
    """Drop esptool's notes that mean nothing on a pty (no USB VID/PID, no reset lines)."""
    from esp_pylib.logger import EspLog

    inst = EspLog.instance
    if not virtual or inst is None:
        return lambda: None
    note = inst.note
    noise = ("Failed to get VID/PID", "Pre-connection option")

    def filtered(message):
        if not str(message).startswith(noise):
            note(message)

    inst.note = filtered

    def undo():
        inst.__dict__.pop("note", None)

    return undo


class Session:
    """One esptool connection to an ESP8266: stub running, flash attached.

    ``with Session(port) as s:`` ... ``s.esp`` is the esptool loader;
    ``s.flash_size`` the detected size in bytes, ``s.profile`` the board
    profile (``board`` by name, else detected: see ``profile_for``).  On
    leaving, the board is reset with ``after`` (soft-reset boots a virtual
    board back into MicroPython).  BAUD: the speed after the stub runs.
    """

    def __init__(self, port, before="default-reset", after="hard-reset", connect_attempts=None,
                 board=None, baud=None, probe=True):
        self.port = port
        self.before = before
        self.after = after
        self.connect_attempts = connect_attempts
        self.board = board
        self.baud = baud
        self.probe = probe
        self.esp = None
        self.flash_size = None
        self.profile = None
        self.facts = None
        self._undo_quiet = lambda: None

    def __enter__(self):
        import serial
        from esptool import cmds
        from esptool.loader import DEFAULT_CONNECT_ATTEMPTS
        from esptool.util import FatalError, flash_size_bytes

        prof = layout.load(self.board) if self.board else None
        if prof is None and self.probe:
            self.facts = probe_romfs(self.port)
        attempts = self.connect_attempts or DEFAULT_CONNECT_ATTEMPTS
        self._undo_quiet = _quiet_virtual_notes(is_virtual_port(self.port))
        try:
            esp = cmds.connect_esp(
                port=self.port,
                chip="esp8266",
                before=self.before,
                connect_attempts=attempts,
            )
        except (FatalError, serial.SerialException, OSError) as e:
            self._undo_quiet()
            raise DeviceError(
                "the board on %s is not responding to esptool (%s); check the port, "
                "that nothing else has it open, and for a real board that it can enter "
                "its bootloader" % (self.port, _one_line(e))
            ) from None
        self.esp = esp
        try:
            self.esp = cmds.run_stub(esp)
            if self.baud and self.baud != ROM_BAUD:
                self.esp.change_baud(self.baud)
            cmds.attach_flash(self.esp)
            size_text = cmds.detect_flash_size(self.esp)
        except (FatalError, serial.SerialException, OSError) as e:
            self._close()
            raise DeviceError("esptool lost the board on %s: %s" % (self.port, _one_line(e))) from None
        if size_text is None:
            self._close()
            raise DeviceError("could not detect the flash size of the board on %s" % self.port)
        self.flash_size = flash_size_bytes(size_text)
        self.esp.flash_set_parameters(self.flash_size)
        try:
            self.profile = prof or self._detect_profile()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _detect_profile(self):
        if self.facts is not None or self.flash_size < 2 << 20:
            return profile_for(self.flash_size, self.facts)
        try:
            rom = layout.for_flash_size(self.flash_size, romfs=True)
        except layout.LayoutError:
            return profile_for(self.flash_size, None)
        head = self.read(rom.romfs[0], 16)
        return profile_for(self.flash_size, None, head, self.firmware_len())

    def read(self, offset, length):
        """``length`` bytes of flash at ``offset`` (esptool's stub READ_FLASH, MD5-checked)."""
        from esptool import cmds
        from esptool.util import FatalError

        try:
            return cmds.read_flash(self.esp, offset, length, no_progress=_no_progress())
        except FatalError as e:
            raise DeviceError("reading 0x%X bytes at 0x%08X failed: %s" % (length, offset, _one_line(e))) from None

    def md5(self, offset, length):
        """MD5 (hex) of flash at OFFSET, computed by the stub on the board (no transfer)."""
        from esptool.util import FatalError

        try:
            return self.esp.flash_md5sum(offset, length)
        except FatalError as e:
            raise DeviceError("MD5 of 0x%X bytes at 0x%08X failed: %s" % (length, offset, _one_line(e))) from None

    def write(self, offset, data, **kw):
        from esptool import cmds
        from esptool.util import FatalError

        try:
            cmds.write_flash(self.esp, [(offset, bytes(data))], no_progress=_no_progress(), **kw)
        except FatalError as e:
            raise DeviceError("writing %d bytes at 0x%08X failed: %s" % (len(data), offset, _one_line(e))) from None

    def firmware_len(self):
        """The uint32 LE at 0x8FFC: MicroPython's image length (written by makeimg.py)."""
        sector = layout.FIRMWARE_LEN_OFFSET & ~(SECTOR - 1)
        block = self.read(sector, SECTOR)
        return layout.parse_firmware_len(block[layout.FIRMWARE_LEN_OFFSET - sector :])

    def __exit__(self, exc_type, exc, tb):
        # Reset after a refusal too: nothing was written, and the board should run again.
        try:
            if self.esp is not None:
                from esptool import cmds

                try:
                    cmds.reset_chip(self.esp, self.after)
                except Exception:  # noqa: BLE001 - a board that went away; the first error wins
                    if exc_type is None:
                        raise
        finally:
            self._close()
        return False

    def _close(self):
        if self.esp is not None:
            try:
                self.esp._port.close()
            except Exception:  # noqa: BLE001 - closing a port that already went away
                pass
            self.esp = None
        self._undo_quiet()
        self._undo_quiet = lambda: None


def _one_line(e):
    """esptool's message on one line (it puts the OS error on a second line)."""
    text = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    return " ".join(text) if text else type(e).__name__


# ---------------------------------------------------------------- bin checks


def _der_is_key(der):
    """An RSAPrivateKey / PrivateKeyInfo starts SEQUENCE { INTEGER version ...};
    a Certificate starts SEQUENCE { SEQUENCE tbsCertificate ...}."""
    # Skip the outer SEQUENCE header (short or long length form).
    if len(der) < 4:
        return None
    n = der[1]
    off = 2 + (n & 0x7F if n & 0x80 else 0)
    if off >= len(der):
        return None
    return {0x02: True, 0x30: False}.get(der[off])


def _entry_kinds(data):
    """('cert'|'key', name) for every certificate or key in every entry."""
    out = []
    for name, body in binfmt.parse(data):
        kind = binfmt.data_kind(body)
        label = name.decode(errors="replace")
        if kind == binfmt.KIND_DER:
            is_key = _der_is_key(body)
            if is_key is None:
                raise FormatError("bad_entry", "entry %s holds DER that is neither a certificate nor a key" % label)
            out.append(("key" if is_key else "cert", label))
        elif kind == binfmt.KIND_PEM:
            for pem_label, _der in binfmt.pem_blocks(body):
                out.append(("key" if "PRIVATE KEY" in pem_label else "cert", label))
        else:
            raise FormatError("bad_entry", "entry %s holds neither DER nor PEM data" % label)
    return out


def check_bin(data, kind, what="the file"):
    """Refuse (FormatError) DATA unless it is a well-formed bin of KIND ('ca' or 'cert')."""
    if len(data) >= 1 and data[0] == FIRMWARE_MAGIC:
        raise FormatError(
            "wrong_file",
            "%s starts with 0xE9: it is an ESP8266 firmware image, not an %s "
            "(use `espssl flash-firmware`)" % (what, _KIND_FILES[kind]),
        )
    try:
        kinds = _entry_kinds(data)
    except FormatError as e:
        raise FormatError(e.reason, "%s is not an %s: %s" % (what, _KIND_FILES[kind], e.msg)) from None
    if not kinds:
        raise FormatError("empty", "%s holds no entries (erased or empty): nothing to flash" % what)
    keys = [n for k, n in kinds if k == "key"]
    certs = [n for k, n in kinds if k == "cert"]
    if kind == KIND_CA and keys:
        raise FormatError(
            "wrong_file",
            "%s holds a private key (entry %s): it is an esp_cert_private_key.bin; a CA bin "
            "holds certificates only (use `espssl flash-cert` for the device's own key)" % (what, keys[0]),
        )
    if kind == KIND_CERT and (not keys or not certs):
        raise FormatError(
            "wrong_file",
            "%s holds %d certificate(s) and %d key(s); an esp_cert_private_key.bin holds the "
            "device's certificate and its private key (a CA bundle goes with `espssl flash-ca`)"
            % (what, len(certs), len(keys)),
        )
    return len(certs), len(keys)


def identify_bin(data):
    """``(kind, text)`` for a well-formed CA bin or certificate bin at the start of DATA, else None.

    TEXT names it for a message: 'a CA bin (ca.cer, other.cer)'.  Erased flash,
    a truncated bin and anything else are None.
    """
    try:
        kinds = _entry_kinds(data)
    except FormatError:
        return None
    names = []
    for _k, n in kinds:
        if n not in names:
            names.append(n)
    if not kinds or not all(32 <= ord(c) < 127 for n in names for c in n):
        return None
    has_key = any(k == "key" for k, _ in kinds)
    has_cert = any(k == "cert" for k, _ in kinds)
    if has_key and has_cert:
        return KIND_CERT, "a device certificate bin, esp_cert_private_key.bin (%s)" % ", ".join(names)
    if has_cert:
        return KIND_CA, "a CA bin, esp_ca_cert.bin (%s)" % ", ".join(names)
    return None


def check_firmware_image(data, what="the file"):
    """The image length from MicroPython's 0x8FFC word, after checking magic and MD5."""
    if len(data) < layout.FIRMWARE_LEN_OFFSET + 4 + _MD5_LEN or data[0] != FIRMWARE_MAGIC:
        raise FormatError(
            "wrong_file",
            "%s is not a MicroPython ESP8266 firmware image (it must start with the 0xE9 "
            "image magic and be at least 0x9000 bytes; download ESP8266_GENERIC from "
            "micropython.org/download)" % what,
        )
    fw_len = struct.unpack_from("<I", data, layout.FIRMWARE_LEN_OFFSET)[0]
    if fw_len + _MD5_LEN != len(data):
        raise FormatError(
            "wrong_file",
            "%s: the length word at 0x8FFC says 0x%X (+16 bytes MD5) but the file is 0x%X "
            "bytes: not a MicroPython ESP8266 image, or truncated" % (what, fw_len, len(data)),
        )
    if hashlib.md5(data[4:fw_len]).digest() != data[fw_len:]:
        raise FormatError("corrupt", "%s: the image's MD5 (after byte 0x%X) does not match: corrupt download" % (what, fw_len))
    return fw_len


# ---------------------------------------------------------------- backups


def _backup_dir(backup_dir):
    return Path(backup_dir or os.environ.get(_BACKUP_DIR_ENV) or DEFAULT_BACKUP_DIR)


def save_backup(backup_dir, kind, offset, data, port, flash_size, suffix=".bin"):
    """Write DATA (what a write at OFFSET replaces) to a timestamped file; return its Path."""
    d = _backup_dir(backup_dir)
    d.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = d / ("%s-0x%06X-%s%s" % (kind, offset, stamp, suffix))
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    meta = {
        "offset": offset,
        "sector": offset // SECTOR,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "kind": kind,
        "port": port,
        "flash_size": flash_size,
        "saved": stamp,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    tmp.rename(path)
    return path


def load_backup(path):
    """(offset, data, meta) of a backup written by save_backup."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EspsslError("cannot read backup %s: %s" % (path, e.strerror)) from None
    note = path.with_suffix(".json")
    try:
        meta = json.loads(note.read_text())
        offset = int(meta["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        raise EspsslError(
            "backup %s has no readable note %s saying where it came from; restore it "
            "with `espssl flash-ca --restore` only from the files espssl wrote" % (path, note.name)
        ) from None
    if meta.get("sha256") != hashlib.sha256(data).hexdigest() or meta.get("size") != len(data):
        raise EspsslError("backup %s does not match its note %s (size or sha256 differ): refusing" % (path, note.name))
    return offset, data, meta


# ---------------------------------------------------------------- operations


def _pad_sectors(data):
    n = -len(data) % SECTOR
    return bytes(data) + b"\xff" * n


def _board_layout(sess, board):
    """(profile, firmware_len) of the connected board, checked against each other."""
    prof = layout.load(board) if board else sess.profile
    if prof is None:
        prof = layout.for_flash_size(sess.flash_size)
    if prof.flash_size != sess.flash_size:
        raise layout.LayoutError(
            "board profile %s is for %s of flash but the board has %s; "
            "drop --board to pick the profile from the detected size"
            % (prof.name, layout.size_text(prof.flash_size), layout.size_text(sess.flash_size))
        )
    fw_len = sess.firmware_len()
    layout.check_firmware_len(prof, fw_len)
    return prof, fw_len


_SCAN_MAX = 64 * 1024  # how far a bin found in a sector is followed (CA bundles are far smaller)


def _bins_in(sess, offset, old):
    """[(sector, kind, text)] for each sector of the region OLD (read at OFFSET) that starts
    a valid CA or certificate bin; a bin running past OLD is followed on the board."""
    out = []
    for i in range(0, len(old), SECTOR):
        found = identify_bin(old[i:])
        if found is None and old[i : i + layout.FIRMWARE_MD5_LEN] != b"\xff" * layout.FIRMWARE_MD5_LEN:
            try:
                binfmt.parse(old[i:])
            except FormatError as e:
                if e.reason == "truncated":  # it goes on past the region: read it whole
                    n = min(_SCAN_MAX, sess.flash_size - offset - i)
                    found = identify_bin(sess.read(offset + i, n))
        if found is not None:
            out.append(((offset + i) // SECTOR,) + found)
    return out


def _refuse_other_bins(kind, offset, bins, force, out):
    """Refuse a write over another valid bin than the one being replaced (unless FORCE)."""
    for sector, there, text in bins:
        if sector == offset // SECTOR and there == kind:
            out("Replacing %s at sector 0x%X" % (text, sector))
            continue
        if force:
            out("--force: overwriting %s at sector 0x%X (the backup keeps it)" % (text, sector))
            continue
        raise EspsslError(
            "sector 0x%X holds %s: this write would overwrite it; choose another --sector, or "
            "pass --force to overwrite it (a backup is saved first)" % (sector, text)
        )


def write_region(sess, kind, offset, data, backup_dir=None, board=None, out=print, force=False):
    """Guard, back up, write and verify DATA at OFFSET on an open Session.

    Returns a dict: offset, size, backup (Path), profile, firmware_len.
    """
    padded = _pad_sectors(data)
    prof, fw_len = _board_layout(sess, board)
    layout.check_write(prof, fw_len, offset, len(padded))
    out(
        "Board: %s flash (%s), MicroPython image 0x0..0x%X"
        % (layout.size_text(sess.flash_size), prof.name, layout.image_end(fw_len) - 1)
    )
    old = sess.read(offset, len(padded))
    _refuse_other_bins(kind, offset, _bins_in(sess, offset, old), force, out)
    backup = save_backup(backup_dir, kind, offset, old, sess.port, sess.flash_size)
    out("Backup of 0x%08X (%d bytes) saved to %s" % (offset, len(old), backup))
    if old == padded:
        out("0x%08X already holds these %d bytes; writing anyway" % (offset, len(padded)))
    sess.write(offset, padded)
    back = sess.read(offset, len(padded))
    if back != padded:
        bad = next(i for i in range(len(padded)) if back[i] != padded[i])
        raise DeviceError(
            "read-back of 0x%08X (%d bytes) differs from what was written, first at 0x%08X; "
            "restore the old contents with `espssl flash-ca --restore %s`" % (offset, len(padded), offset + bad, backup)
        )
    out(
        "Wrote %d bytes at 0x%08X (sector 0x%X); read back and compared: verified"
        % (len(padded), offset, offset // SECTOR)
    )
    return {"offset": offset, "size": len(padded), "backup": backup, "profile": prof.name, "firmware_len": fw_len}


def _default_sector(kind, sess, board):
    prof = layout.load(board) if board else sess.profile
    sector = prof.default_ca_sector if kind == KIND_CA else prof.default_cert_sector
    if sector is None:
        why = (": " + prof.reason) if prof.reason else ""
        raise layout.LayoutError("board profile %s has no default %s sector%s; or pass --sector"
                                 % (prof.name, kind.upper(), why))
    return sector


def flash_bin(port, data, kind, sector=None, board=None, backup_dir=None, before=None, after=None,
              connect_attempts=None, what="the file", out=print, force=False, baud=None):
    """Check DATA as a KIND bin, then guard, back up, write and verify it on the board at PORT."""
    from .cabin import check_usable  # the verdict ca-bin build and inspect give, then check_bin

    check_usable(data, kind, what)
    port, virtual = resolve_port(port, out)
    before, after = reset_modes(port, virtual, before, after)
    with Session(port, before, after, connect_attempts, board=board, baud=baud) as sess:
        if sector is None:
            sector = _default_sector(kind, sess, board)
            out("Using the %s profile's default %s sector 0x%X" % (sess.profile.name, kind.upper(), sector))
        return write_region(sess, kind, sector * SECTOR, data, backup_dir, board, out, force)


def restore(port, backup_path, board=None, backup_dir=None, before=None, after=None,
            connect_attempts=None, out=print, force=False, baud=None):
    """Write a backup file back where it came from (guarded, backed up, verified)."""
    offset, data, meta = load_backup(backup_path)
    if meta.get("kind") == KIND_FLASH:
        raise EspsslError(
            "%s is a whole-flash backup (made before flash-firmware erased the board): put it "
            "back with `esptool --port PORT write-flash 0 %s`" % (backup_path, backup_path)
        )
    port, virtual = resolve_port(port, out)
    before, after = reset_modes(port, virtual, before, after)
    with Session(port, before, after, connect_attempts, board=board, baud=baud) as sess:
        if meta.get("flash_size") not in (None, sess.flash_size):
            raise EspsslError(
                "backup %s came from a board with %s of flash; this one has %s: refusing"
                % (backup_path, layout.size_text(meta["flash_size"]), layout.size_text(sess.flash_size))
            )
        out("Restoring %s to 0x%08X (%d bytes)" % (backup_path, offset, len(data)))
        return write_region(sess, meta.get("kind", "restore"), offset, data, backup_dir, board, out, force)


_SCAN_BLOCK = 0x10000  # flash-firmware's erased-flash scan: MD5 per 64 KiB, then per sector
_ERASED_MD5 = {n: hashlib.md5(b"\xff" * n).hexdigest() for n in (_SCAN_BLOCK, SECTOR)}


def used_sectors(sess):
    """Sector numbers that are not erased (0xFF), found by MD5 on the board: nothing moves."""
    out = []
    for block in range(0, sess.flash_size, _SCAN_BLOCK):
        if sess.md5(block, _SCAN_BLOCK) == _ERASED_MD5[_SCAN_BLOCK]:
            continue
        for off in range(block, block + _SCAN_BLOCK, SECTOR):
            if sess.md5(off, SECTOR) != _ERASED_MD5[SECTOR]:
                out.append(off // SECTOR)
    return out


def _runs(sectors):
    """[(first, count)] of consecutive sector numbers."""
    runs = []
    for s in sectors:
        if runs and runs[-1][0] + runs[-1][1] == s:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((s, 1))
    return runs


def _find_bin(read, offset, limit):
    """identify_bin() of the bytes at OFFSET, following a bin past its first sector."""
    head = read(offset, SECTOR)
    found = identify_bin(head)
    if found is None:
        try:
            binfmt.parse(head)
        except FormatError as e:
            if e.reason == "truncated":
                found = identify_bin(read(offset, min(_SCAN_MAX, limit - offset)))
    return found


def what_erase_destroys(sess, used, read):
    """Lines naming what the USED sectors hold: firmware, bins, ROMFS, filesystem, SDK params.

    READ(offset, n) gives the flash's bytes (the backup image, or the board)."""
    prof = sess.profile
    img_end = layout.image_end(sess.fw_len) if sess.fw_len else 0

    def within(span, s):
        return span is not None and span[0] <= s * SECTOR < span[1]

    lines = []
    if img_end:
        lines.append("the MicroPython firmware image (0x0..0x%X)" % (img_end - 1))
    loose = [s for s in used if s * SECTOR >= img_end and not within(prof.filesystem, s)
             and not within(prof.sdk_params, s) and not within(prof.romfs, s)]
    rom = [s for s in used if within(prof.romfs, s)]
    head = bytes(read(prof.romfs[0], 8)) if rom else b""
    if head[:3] == ROMFS_HEADER:
        lines.append("a ROMFS image of %d bytes in %s" % (image_size(head), layout.romfs_text(prof)))
    else:
        loose = sorted(loose + rom)
    other = []
    for s in loose:
        found = _find_bin(read, s * SECTOR, sess.flash_size)
        if found:
            lines.append("%s at sector 0x%X" % (found[1], s))
        else:
            other.append(s)
    fs = [s for s in used if within(prof.filesystem, s)]
    if fs:
        total = (prof.filesystem[1] - prof.filesystem[0]) // SECTOR
        lines.append("MicroPython's filesystem (%d of its %d sectors in use: your files)" % (len(fs), total))
    sdk = [s for s in used if within(prof.sdk_params, s)]
    if sdk:
        lines.append("the SDK parameters (%d sectors: RF calibration, Wi-Fi settings; the SDK writes fresh ones)" % len(sdk))
    if other:
        lines.append("other data in sectors %s" % layout.sector_ranges_text(other))
    return lines


def backup_flash(sess, used, backup_dir, out=print):
    """Read the USED sectors into a whole-flash image (erased elsewhere); save it; return (Path, image)."""
    image = bytearray(b"\xff" * sess.flash_size)
    runs = _runs(used)
    for first, count in runs:
        image[first * SECTOR : (first + count) * SECTOR] = sess.read(first * SECTOR, count * SECTOR)
    path = save_backup(backup_dir, KIND_FLASH, 0, bytes(image), sess.port, sess.flash_size)
    return path, image


def flash_firmware(port, data, board=None, before=None, after=None, flash_mode="keep",
                   connect_attempts=None, what="the file", out=print, backup_dir=None, backup=True, baud=None):
    """Back up what the flash holds, erase it all and write a MicroPython ESP8266 image at 0
    (then verify by MD5).  Says what the erase destroys; BACKUP False skips the backup."""
    fw_len = check_firmware_image(data, what)
    port, virtual = resolve_port(port, out)
    before, after = reset_modes(port, virtual, before, after)
    with Session(port, before, after, connect_attempts, board=board, baud=baud, probe=False) as sess:
        prof = sess.profile
        if prof.flash_size != sess.flash_size:
            raise layout.LayoutError(
                "board profile %s is for %s of flash but the board has %s"
                % (prof.name, layout.size_text(prof.flash_size), layout.size_text(sess.flash_size))
            )
        region = max(p.firmware[1] for p in map(layout.load, layout.names()) if p.flash_size == sess.flash_size)
        if len(data) > region:
            raise layout.LayoutError(
                "%s is 0x%X bytes but the %s firmware region is 0x0..0x%X: it is a build for "
                "a larger flash (use MicroPython's ESP8266_GENERIC build for %s)"
                % (what, len(data), prof.name, region - 1, layout.size_text(prof.flash_size))
            )
        from esptool import cmds
        from esptool.util import FatalError

        old_len = sess.firmware_len()
        sess.fw_len = old_len if old_len != 0xFFFFFFFF and layout.image_end(old_len) <= sess.flash_size else None
        used = used_sectors(sess)
        path = None
        if not used:
            out("The flash is erased already: nothing to back up")
        else:
            if backup:
                path, image = backup_flash(sess, used, backup_dir, out)

                def read(off, n):
                    return bytes(image[off : off + n])
            else:
                read = sess.read
            lines = what_erase_destroys(sess, used, read)
            out("Erasing the whole flash destroys %d non-erased sectors:" % len(used))
            for line in lines:
                out("  - " + line)
            if path:
                out("Backup of the whole flash (%d sectors read, the rest erased) saved to %s; "
                    "`esptool --port %s write-flash 0 %s` puts it all back" % (len(used), path, port, path))
            else:
                out("--no-backup: nothing saved")
        try:
            cmds.erase_flash(sess.esp)
        except FatalError as e:
            raise DeviceError("erasing the flash failed: %s" % _one_line(e)) from None
        out("Erased; MicroPython makes a fresh filesystem on its first boot")
        sess.write(0, data, flash_size="detect", flash_mode=flash_mode)
        # esptool sets the flash mode/size bytes (2..3) of the header; the rest must match.
        head = sess.read(0, SECTOR)
        expect = head[:4] + bytes(data[4:])
        if head[:2] != data[:2]:
            raise DeviceError("read-back of the image header at 0x0 differs from the file")
        md5 = sess.md5(0, len(data))
        if md5 != hashlib.md5(expect).hexdigest():
            raise DeviceError("read-back MD5 of 0x0..0x%X differs from the image: flash again" % (len(data) - 1))
        out("Wrote %d bytes at 0x00000000 (MicroPython, %s flash); read back (MD5): verified"
            % (len(data), layout.size_text(sess.flash_size)))
        return {"offset": 0, "size": len(data), "firmware_len": fw_len, "profile": prof.name,
                "backup": path, "erased_sectors": used}


# ---------------------------------------------------------------- CLI


def _read_input(path):
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise EspsslError("cannot read %s: %s" % (path, e.strerror)) from None


def add_baud(p):
    """--baud, as esptool's: the serial speed once the flasher stub runs."""
    p.add_argument("--baud", "-b", type=int, default=None,
                   help="serial speed after the flasher stub starts, e.g. 460800 or 921600 "
                   "(default %d; many USB-serial bridges manage 460800)" % ROM_BAUD)


def _add_common(p, with_sector=True):
    p.add_argument("--port", "-p", help="serial port (default: the running virtual board, else the "
                   "only USB serial device)")
    p.add_argument("--board", help="board profile (default: detected from the flash size and, asked "
                   "over the REPL, the firmware's ROMFS partition); one of " + ", ".join(layout.names()))
    if with_sector:
        p.add_argument("--sector", type=int_arg, help="4 KiB sector number, e.g. 0x98 (default: the profile's)")
    p.add_argument("--backup-dir", help="where backups go (default $%s or ./%s)" % (_BACKUP_DIR_ENV, DEFAULT_BACKUP_DIR))
    add_baud(p)
    p.add_argument("--before", choices=["default-reset", "usb-reset", "no-reset", "no-reset-no-sync"],
                   help="esptool reset before connecting (default: no-reset for a virtual board, "
                   "default-reset for a real one)")
    p.add_argument("--after", choices=["hard-reset", "soft-reset", "no-reset", "no-reset-stub"],
                   help="esptool reset after (default: soft-reset virtual, hard-reset real)")
    p.add_argument("--connect-attempts", type=int, default=None, help="esptool sync attempts (default 7)")


def _cmd_bin(kind):
    def run(args):
        if getattr(args, "restore", None):
            if args.file or args.sector is not None:
                raise EspsslError("--restore takes the backup file alone (no bin, no --sector)")
            restore(args.port, args.restore, args.board, args.backup_dir, args.before, args.after,
                    args.connect_attempts, force=args.force, baud=args.baud)
            return 0
        if not args.file:
            raise EspsslError("give the %s to flash (or --restore BACKUP)" % _KIND_FILES[kind])
        data = _read_input(args.file)
        sector = args.sector
        flash_bin(args.port, data, kind, sector, args.board, args.backup_dir, args.before, args.after,
                  args.connect_attempts, what=args.file, force=args.force, baud=args.baud)
        return 0

    return run


def _cmd_firmware(args):
    data = _read_input(args.file)
    flash_firmware(args.port, data, args.board, args.before, args.after, args.flash_mode,
                   args.connect_attempts, what=args.file, backup_dir=args.backup_dir,
                   backup=not args.no_backup, baud=args.baud)
    return 0


def register(sub):
    p = sub.add_parser(
        "flash-firmware",
        help="back up the flash, erase it and write a MicroPython ESP8266 image",
        description="Write a MicroPython ESP8266 image (a .bin you downloaded, e.g. ESP8266_GENERIC-"
        "FLASH_2M_ROMFS-<version>.bin from micropython.org/download/ESP8266_GENERIC; nothing is "
        "downloaded here). The whole flash is erased first: every sector that is not erased is "
        "listed by what it holds and saved as one whole-flash image in the backup directory.",
    )
    _add_common(p, with_sector=False)
    p.add_argument("--flash-mode", default="keep", choices=["keep", "qio", "qout", "dio", "dout"],
                   help="flash mode for the image header (some boards need dout)")
    p.add_argument("--no-backup", action="store_true",
                   help="erase without saving the old flash first (it is still listed)")
    p.add_argument("file", help="MicroPython firmware .bin (ESP8266_GENERIC)")
    p.set_defaults(func=_cmd_firmware)

    for kind, name, what in ((KIND_CA, "flash-ca", "a CA bundle (esp_ca_cert.bin)"),
                             (KIND_CERT, "flash-cert", "the device certificate+key (esp_cert_private_key.bin)")):
        p = sub.add_parser(name, help="write %s at a free sector, with backup and read-back" % what)
        _add_common(p)
        p.add_argument("--restore", metavar="BACKUP", help="write a backup file back where it came from")
        p.add_argument("--force", action="store_true",
                       help="overwrite a sector that holds another CA or certificate bin (backed up first)")
        p.add_argument("file", nargs="?", help=_KIND_FILES[kind])
        p.set_defaults(func=_cmd_bin(kind))
