"""Where the loopback suite puts its CA bins, and how it gives the board back as it found it.

The suite needs two CA bins on the board: the CA that signed the peers'
certificates and a CA that signed nothing here.  It writes them to free
sectors outside the profile's CA and certificate sectors, preferring erased
ones, so the user's own bundle is never written; with ``--certs`` whose CA is
already at the profile's CA sector, that sector is used as it is.

Before each write the old contents are saved where the user keeps backups
(``flash.write_region``: ``--backup-dir``, ``$ESPSSL_BACKUP_DIR`` or
``./espssl-backups``) and kept in memory; ``restore_all`` writes them back at
the end of the run, whatever happened (a failing case, Ctrl-C), and reads
every sector back to prove it.  If that fails, each line names the backup and
the ``espssl flash-ca --restore`` command that finishes the job.
"""

import contextlib
import io
import signal

from espconn import binfmt
from espconn.errors import FormatError

from .. import flash, layout
from ..errors import EspsslError

SECTOR = flash.SECTOR
# Sectors read while looking for erased ones (a 4 KiB read takes ~0.4 s at 115200 baud).
_MAX_PROBES = 8


class Written:
    """One sector the suite wrote: what was there before, and its backup file."""

    def __init__(self, port, before, after, offset, old, backup):
        self.port, self.before, self.after = port, before, after
        self.offset, self.old, self.backup = offset, old, backup


@contextlib.contextmanager
def _esptool_quiet():
    """esptool's progress lines stay out of the suite's output (its errors become DeviceError)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def holds_cert(sector_bytes, der):
    """True when a CA bin in SECTOR_BYTES has an entry whose DER is DER."""
    try:
        return any(bytes(body) == der for _name, body in binfmt.parse(sector_bytes))
    except FormatError:
        return False


def _pick(sess, candidates, need):
    """NEED sectors from CANDIDATES (best first) with their contents: erased ones first."""
    erased, used = [], []
    for sector in candidates[:_MAX_PROBES]:
        data = sess.read(sector * SECTOR, SECTOR)
        (erased if data == b"\xff" * SECTOR else used).append((sector, data))
        if len(erased) == need:
            break
    return (erased + used)[:need]


def place(port, pki, written, board=None, certs_given=False, backup_dir=None, out=print, throwaway=False):
    """Write the suite's CA bins on the board at PORT; return {profile, ca_sector, wrong_ca_sector}.

    Every sector is appended to WRITTEN (a list of ``Written``) before it is
    written, so ``restore_all(written)`` can undo a run cut short anywhere.
    """
    virtual = flash.is_virtual_port(port)
    before, after = flash.reset_modes(port, virtual)
    with _esptool_quiet(), flash.Session(port, before, after) as sess:
        prof = layout.load(board) if board else sess.profile  # ROMFS-aware (flash.Session)
        fw_len = sess.firmware_len()
        own = (prof.default_ca_sector, prof.default_cert_sector)
        right = None
        if certs_given and prof.default_ca_sector is not None:
            if holds_cert(sess.read(prof.default_ca_sector * SECTOR, SECTOR), pki["ca_der"]):
                right = prof.default_ca_sector  # the user flashed this CA: test against it, unchanged
        free = [s for s in reversed(layout.free_sectors(prof, fw_len)) if s not in own]
        need = 1 if right is not None else 2
        picked = _pick(sess, free, need)
        if len(picked) < need:
            raise EspsslError(
                "the suite needs %d free sector(s) besides the CA sector and the certificate sector; "
                "%s has %s" % (need, prof.name, layout.sector_ranges_text(free) if free else "none")
            )
        plan = [(picked[0], pki["wrong_ca_bin"], "the CA that signed nothing here")]
        if right is None:
            plan.append((picked[1], pki["ca_bin"], "the test CA"))
            right = picked[1][0]
        untouched = ", ".join("0x%X" % s for s in own if s is not None and s != right)
        kept = "; %s not touched" % untouched if untouched else ""
        if right == prof.default_ca_sector:
            kept += "; the CA sector 0x%X holds the --certs CA and is used unchanged" % right
        after_run = ("a board for this run only: not restored" if throwaway else
                     "each is backed up first, and restored and read back after the run")
        out("espssl test: %s on %s: writes sector%s %s (%s)%s; %s"
            % (port, prof.name, "s" if len(plan) > 1 else "", ", ".join("0x%X" % s for (s, _d), _b, _w in plan),
               ", ".join("0x%X: %s" % (s, w) for (s, _d), _b, w in plan), kept, after_run))
        for (sector, old), data, _what in plan:
            w = Written(port, before, after, sector * SECTOR, old, None)
            written.append(w)  # before the write: a run cut short inside it is undone too
            # flash's own guard, backup (to the user's backup dir), write and read-back
            res = flash.write_region(sess, flash.KIND_CA, w.offset, data, backup_dir, board, out=lambda *_: None)
            w.backup = res["backup"]
            out("espssl test: sector 0x%X backed up to %s" % (sector, w.backup))
    return {"profile": prof.name, "ca_sector": right, "wrong_ca_sector": picked[0][0]}


def restore_all(written, out=print):
    """Write back every sector in WRITTEN (emptied as it goes); True when all are verified.

    Ctrl-C is held off while a board is being written: a half-restored sector
    is worse than a late exit.
    """
    ok = True
    by_port = {}
    for w in written:
        by_port.setdefault(w.port, []).append(w)
    written.clear()
    try:
        old_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        old_handler = None
    try:
        for port, items in by_port.items():
            ok = _restore_port(port, items, out) and ok
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    return ok


def _restore_port(port, items, out):
    try:
        with _esptool_quiet(), flash.Session(port, items[0].before, items[0].after) as sess:
            for w in items:
                sector = w.offset // SECTOR
                if sess.read(w.offset, len(w.old)) != w.old:
                    sess.write(w.offset, w.old)
                    if sess.read(w.offset, len(w.old)) != w.old:
                        raise EspsslError("read-back of sector 0x%X after restoring differs" % sector)
                out("espssl test: sector 0x%X restored as it was before the run (read back: identical)" % sector)
        return True
    except (EspsslError, OSError) as e:
        out("espssl test: could not restore the board on %s: %s" % (port, e))
        for w in items:
            out("  restore sector 0x%X with: espssl flash-ca --port %s --restore %s"
                % (w.offset // SECTOR, port, w.backup or "<its ca-0x%06X-*.bin backup>" % w.offset))
        return False
