"""The virtual board's device modules (host_tools/espssl/vboard/device/), run on
the real MicroPython unix port without the board supervisor.

- esp: NOR semantics seen byte for byte by CPython reading the image file, and
  the other way round (nothing cached).
- vboard_boot.py: the filesystem is made inside the image on first boot (CPython's
  littlefs reads it there), persists across processes, is reported corrupt when
  its sectors are overwritten, made anew when erased; the host filesystem is not
  the board's '/'; boot.py/main.py run as on a board; the board's free heap.
- machine: Timer(-1) soft callbacks during time.sleep_ms, reset() exit status.
- tls: real TLS 1.2 handshakes with CPython ssl on 127.0.0.1 in both roles,
  PEM/PKCS#8 refused, an oversize record refused, the per-connection ballast.
- The shims' public names and signatures against typings/*.pyi.
"""

import ast
import datetime
import ipaddress
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import micropython_binary, results
from espssl.hil import peers
from espssl.vboard.board import HEAP_SLACK, device_env

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEVICE = ROOT / "host_tools" / "espssl" / "vboard" / "device"
TYPINGS = ROOT / "typings"
SECTOR = 4096
FLASH_1M = 0x100000
FS_1M = (0x99000, 0xFB000)  # boards/esp8266-1m.json filesystem region
HEAP = 38 * 1024
BOOT_HEAP = HEAP + HEAP_SLACK
SHIM_HEAP = "96K"  # modules loaded without vboard_boot's surplus accounting
EXIT_HARD_RESET = 0x5A

pytestmark = pytest.mark.micropython


# ------------------------------------------------------------------ helpers
def make_image(path, size=FLASH_1M):
    """A fresh flash image: the loader's flashimage.create when it is there."""
    try:
        from espssl import layout
        from espssl.vboard import flashimage

        flashimage.create(path, layout.load("esp8266-1m"))
    except (ImportError, AttributeError):
        path.write_bytes(b"\xff" * size)
    assert path.stat().st_size == size
    return path


def board_env(image, reset="power"):
    return device_env(image, FLASH_1M, FS_1M, HEAP, reset)


def run_mp(code, image, tmp_path, heap=SHIM_HEAP, timeout=60, check=True, cwd=None):
    """Run CODE with the device modules on the path (no boot script)."""
    script = tmp_path / "dev_script.py"
    script.write_text(code)
    proc = subprocess.run(
        [micropython_binary(), "-X", "heapsize=" + str(heap), str(script)],
        capture_output=True,
        text=True,
        env=board_env(image),
        cwd=cwd or tmp_path,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError("micropython exited %d\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return proc


def boot(image, tmp_path, stdin="", reset="power", heap=BOOT_HEAP, timeout=60):
    """Boot the board: vboard_boot.py with -i, then STDIN typed at its REPL."""
    proc = subprocess.run(
        [micropython_binary(), "-X", "heapsize=%d" % heap, "-i", str(DEVICE / "vboard_boot.py")],
        input=stdin,
        capture_output=True,
        text=True,
        env=board_env(image, reset),
        cwd=tmp_path,
        timeout=timeout,
    )
    return proc


def fs_region(image):
    with open(image, "rb") as f:
        f.seek(FS_1M[0])
        return f.read(FS_1M[1] - FS_1M[0])


# ------------------------------------------------------------------ esp
def test_esp_flash_nor_semantics_byte_for_byte(tmp_path):
    image = make_image(tmp_path / "flash.bin")
    sec = 0x98  # the 1M layout's free sector
    base = sec * SECTOR
    with open(image, "r+b") as f:  # CPython puts a pattern there first
        f.seek(base)
        f.write(bytes(range(256)) * 16)
    code = r"""
import esp
B = %d
out = lambda *a: print("@", repr(a))
out("pre", esp.flash_read(B, 8))              # CPython's pattern, not cached
esp.flash_erase(B // 4096)
out("erased", esp.flash_read(B, 4096) == b"\xff" * 4096)
esp.flash_write(B + 16, b"\x0f\xf0\x55\xaa")
esp.flash_write(B + 16, b"\xf3\xff\x0f\xff")  # NOR: AND, no erase
buf = bytearray(8)
out("into", esp.flash_read(B + 16, buf), bytes(buf))
try:
    esp.flash_write(B, b"abc")
    out("len3", "accepted")
except ValueError as e:
    out("len3", "ValueError")
try:
    esp.flash_read(esp.flash_size() - 2, 4)
    out("beyond", "read")
except OSError as e:
    out("beyond", "OSError", e.args[0])
out("info", esp.flash_size(), esp.flash_user_start(), esp.flash_id())
esp.flash_write(B + 4092, b"\x12\x34\x56\x78")
""" % base
    res = dict((r[0], r[1:]) for r in results(run_mp(code, image, tmp_path).stdout))
    assert res["pre"] == (bytes(range(8)),)
    assert res["erased"] == (True,)
    # 0x0f & 0xf3 = 0x03, 0xf0 & 0xff = 0xf0, 0x55 & 0x0f = 0x05, 0xaa & 0xff = 0xaa
    assert res["into"] == (None, b"\x03\xf0\x05\xaa\xff\xff\xff\xff")
    assert res["len3"] == ("ValueError",)
    assert res["beyond"] == ("OSError", 5)
    # 1 MiB: user start 0x98000 (one reserved sector before the fs); JEDEC ef 40 14
    assert res["info"] == (FLASH_1M, 0x98000, 0x1440EF)
    data = image.read_bytes()
    expect = bytearray(b"\xff" * SECTOR)
    expect[16:20] = b"\x03\xf0\x05\xaa"
    expect[4092:4096] = b"\x12\x34\x56\x78"
    assert data[base : base + SECTOR] == bytes(expect)
    # the neighbours are untouched
    assert data[base - SECTOR : base] == b"\xff" * SECTOR
    assert data[base + SECTOR : base + 2 * SECTOR] == b"\xff" * SECTOR


ROMFS = (0xB0000, 0x100000)  # FLASH_2M_ROMFS: esp8266_2MiB_ROMFS.ld


def romfs_image(path):
    """A fresh 4 MiB image of the ROMFS variant, a pattern at the ROMFS start."""
    from espssl import layout
    from espssl.vboard import flashimage

    flashimage.create(path, layout.load("esp8266-4m"))
    with open(path, "r+b") as f:
        f.seek(ROMFS[0])
        f.write(bytes(range(256)) * 48)  # three sectors
    return path


def romfs_env(image, reset="power"):
    prof = __import__("espssl.layout", fromlist=["load"]).load("esp8266-4m")
    return device_env(image, prof.flash_size, prof.filesystem, HEAP, reset, romfs=ROMFS)


def test_flash_calls_and_rom_ioctl_take_nothing_from_the_heap(tmp_path):
    # A board's esp.flash_* and vfs.rom_ioctl are C: they make no object on
    # the GC heap.  (flash_erase took 4 KiB of it, and deploy failed on 38K.)
    image = romfs_image(tmp_path / "flash.bin")
    code = r"""
import gc, esp, vfs_shim
esp._rom_load(); vfs_shim._romfs()
rom_ioctl = vfs_shim.rom_ioctl
buf = bytearray(4096)
for i in range(4096):
    buf[i] = i & 0x7F
part = bytearray(128)
def took(f):
    f(); gc.collect(); gc.disable()
    a = gc.mem_alloc(); f(); b = gc.mem_alloc()
    gc.enable()
    return b - a
print("@", repr([took(f) for f in (
    lambda: esp.flash_erase(0x200),
    lambda: esp.flash_write(0x200000, buf),
    lambda: esp.flash_write(0x200100, part),
    lambda: esp.flash_read(0x200000, buf),
    lambda: esp.flash_erase(0xB1),
    lambda: esp.flash_write(0xB1000, buf),
    lambda: rom_ioctl(2, 0),
    lambda: rom_ioctl(4, 0, 8192, buf),
)]))
"""
    script = tmp_path / "alloc.py"
    script.write_text(code)
    p = subprocess.run([micropython_binary(), "-X", "heapsize=512K", str(script)], capture_output=True, text=True,
                       env=romfs_env(image), cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr + p.stdout
    assert results(p.stdout) == [[0] * 8]


def test_rom_ioctl_over_the_romfs_partition(tmp_path):
    image = romfs_image(tmp_path / "flash.bin")
    code = r"""
import esp, vfs_shim
esp._rom_load(); vfs_shim._romfs()
ioctl = vfs_shim.rom_ioctl
out = lambda *a: print("@", repr(a))
seg = ioctl(2, 0)
out("seg", ioctl(1), type(seg).__name__, len(seg), bytes(seg[:4]), ioctl(2, 0) is seg)
out("prepare", ioctl(3, 0, 5000))                      # two sectors: 0xB0000, 0xB1000
out("erased", bytes(seg[:4]), bytes(seg[8188:8192]), esp.flash_read(0xB2000, 2))
out("write", ioctl(4, 0, 4, b"\x0f\xf0\x55\xaa"), ioctl(4, 0, 4, b"\xf3\xff\x0f\xff"))
out("odd", ioctl(4, 0, 16, b"abcde"))
out("mapped", bytes(seg[4:8]), bytes(seg[16:24]))
esp.flash_erase(0xB4)                                 # the esp module and the map agree
esp.flash_write(0xB4000, b"ROM!")
out("esp", bytes(seg[0x4000:0x4004]), ioctl(5, 0), ioctl(6, 0))
import vfs
out("vfs", hasattr(vfs_shim, "VfsRom"), hex(esp.flash_user_start()))
"""
    script = tmp_path / "rom.py"
    script.write_text(code)
    p = subprocess.run([micropython_binary(), "-X", "heapsize=512K", str(script)], capture_output=True, text=True,
                       env=romfs_env(image), cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr + p.stdout
    res = dict((r[0], r[1:]) for r in results(p.stdout))
    assert res["seg"] == (1, "memoryview", 320 * 1024, b"\x00\x01\x02\x03", True)
    assert res["prepare"] == (4,)  # the minimum write size
    assert res["erased"] == (b"\xff" * 4, b"\xff" * 4, b"\x00\x01")  # the third sector is left
    assert res["write"] == (0, 0)
    assert res["odd"] == (0,)
    assert res["mapped"] == (b"\x03\xf0\x05\xaa", b"abcde\xff\xff\xff")  # NOR: AND
    assert res["esp"] == (b"ROM!", -22, -22)  # 5, 6: not on the ESP8266 (-EINVAL)
    assert res["vfs"] == (True, "0x100000")
    data = image.read_bytes()
    assert data[ROMFS[0] + 4 : ROMFS[0] + 8] == b"\x03\xf0\x05\xaa"  # in the image too
    assert data[0xB4000:0xB4004] == b"ROM!"


def test_romfs_bytes_stay_out_of_the_users_heap(tmp_path):
    plain = make_image(tmp_path / "plain.bin")
    p = boot(plain, tmp_path, "import gc\ngc.collect()\nprint('@', repr(gc.mem_free()))\n")
    (free_plain,) = results(p.stdout)
    image = romfs_image(tmp_path / "rom.bin")
    p = subprocess.run(
        [micropython_binary(), "-X", "heapsize=%d" % (BOOT_HEAP + ROMFS[1] - ROMFS[0]), "-i",
         str(DEVICE / "vboard_boot.py")],
        input="import gc, vfs\ngc.collect()\nprint('@', repr((gc.mem_free(), len(vfs.rom_ioctl(2, 0)))))\n",
        capture_output=True, text=True, env=romfs_env(image), cwd=tmp_path, timeout=60,
    )
    (free_rom, seg) = results(p.stdout)[0]
    print("free after boot: %d plain, %d with the 320 KiB ROMFS mapped" % (free_plain, free_rom))
    assert seg == 320 * 1024
    # Not less than a plain board's (the 320 KiB are not the user's), and
    # still the board's heap (not the process's surplus).
    assert free_plain - 1024 <= free_rom < HEAP


# ------------------------------------------------------------------ filesystem
def test_boot_makes_fs_in_image_persists_and_hides_host(tmp_path):
    image = make_image(tmp_path / "flash.bin")
    (tmp_path / "host_only.txt").write_text("host")
    p = boot(
        image,
        tmp_path,
        "import os\n"
        "print('@', repr(('ls', sorted(os.listdir('/')), os.getcwd())))\n"
        "f = open('data.txt', 'w'); f.write('kept across boots'); f.close()\n"
        "os.mkdir('lib')\n"
        "f = open('main.py', 'w'); f.write('print(\"@\", repr((\"main\",)))\\n'); f.close()\n"
        "print('@', repr(('host', [n for n in ('tmp', 'work', 'etc', 'host_only.txt') if n in os.listdir('/')])))\n"
        "print('@', repr(('os', os.uname().sysname, hasattr(os, 'getenv'), hasattr(os, 'system'), "
        "[e for e in os.ilistdir('/') if e[0] == 'data.txt'])))\n",
    )
    assert p.returncode == 0, p.stderr
    assert "Performing initial setup" in p.stdout
    res = dict((r[0], r[1:]) for r in results(p.stdout))
    assert res["ls"] == (["boot.py"], "/")
    assert res["host"] == ([],)
    # the board's os: uname, no getenv/system; ilistdir gives (name, type, inode, size)
    (name, kind, _inode, size), = res["os"][3]
    assert res["os"][:3] == ("esp8266", False, False)
    assert (name, kind, size) == ("data.txt", 0x8000, len("kept across boots"))
    # The filesystem really is inside the image: littlefs v2 at the fs offset,
    # readable by CPython's littlefs with the files written above.
    from littlefs import LittleFS

    region = fs_region(image)
    assert region[8:16] == b"littlefs"
    fs = LittleFS(block_size=SECTOR, block_count=len(region) // SECTOR, mount=False)
    fs.context.buffer = bytearray(region)
    fs.mount()
    assert sorted(fs.listdir("/")) == ["boot.py", "data.txt", "lib", "main.py"]
    with fs.open("data.txt", "r") as f:
        assert f.read() == "kept across boots"
    # Outside the region nothing changed.
    data = image.read_bytes()
    assert data[FS_1M[1] :] == b"\xff" * (FLASH_1M - FS_1M[1])

    # Second boot (power-on): the file persists, main.py runs, no new setup.
    p = boot(image, tmp_path, "print('@', repr(('data', open('/data.txt').read())))\n")
    assert "Performing initial setup" not in p.stdout
    res = [r[0] for r in results(p.stdout)]
    assert res == ["main", "data"]
    # Soft reset in the raw REPL: boot.py only, not main.py.
    p = boot(image, tmp_path, "print('@', repr(('raw',)))\n", reset="soft-raw")
    assert [r[0] for r in results(p.stdout)] == ["raw"]


def test_boot_reports_corrupt_fs_and_remakes_erased_one(tmp_path):
    image = make_image(tmp_path / "flash.bin")
    p = boot(image, tmp_path, "open('x.txt', 'w').write('x')\n")
    assert "Performing initial setup" in p.stdout
    # Overwrite the two littlefs superblocks (blocks 0 and 1) with zeros.
    with open(image, "r+b") as f:
        f.seek(FS_1M[0])
        f.write(b"\x00" * (2 * SECTOR))
    child = subprocess.Popen(
        [micropython_binary(), "-X", "heapsize=%d" % BOOT_HEAP, str(DEVICE / "vboard_boot.py")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=board_env(image),
        cwd=tmp_path,
    )
    try:
        first = child.stdout.readline().decode()
        assert "looks corrupt" in first, first
        child.send_signal(signal.SIGINT)  # Ctrl-C leaves the loop, as on a board
        out, _ = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    assert "Performing initial setup" not in out.decode()
    assert fs_region(image)[: 2 * SECTOR] == b"\x00" * (2 * SECTOR)  # nothing "repaired"
    # esptool erase-flash: the region is 0xFF again -> made anew on boot, empty.
    with open(image, "r+b") as f:
        f.seek(FS_1M[0])
        f.write(b"\xff" * (FS_1M[1] - FS_1M[0]))
    p = boot(image, tmp_path, "import os\nprint('@', repr(sorted(os.listdir())))\n")
    assert "Performing initial setup" in p.stdout
    assert results(p.stdout) == [["boot.py"]]


def test_boot_heap_is_the_boards(tmp_path):
    image = make_image(tmp_path / "flash.bin")
    p = boot(image, tmp_path, "import gc\ngc.collect()\nprint('@', repr(gc.mem_free()))\n")
    (free,) = results(p.stdout)
    print("free heap after boot: %d bytes (board heap %d)" % (free, HEAP))
    # vboard_boot takes the surplus away: HEAP less BOOT_USE (4 KiB) remains,
    # give or take what the boot's garbage frees (the boot script's own code,
    # ~2.5 KiB on 64 bits, goes only once it has run).
    assert HEAP - 4096 - 512 <= free <= HEAP - 4096 + 3072


# ------------------------------------------------------------------ machine, network
def test_timer_soft_callbacks_fire_during_sleep(tmp_path):
    image = make_image(tmp_path / "flash.bin")
    code = r"""
import sys, time, _thread
import machine_shim
sys.modules["machine"] = machine_shim
import machine
out = lambda *a: print("@", repr(a))
main = _thread.get_ident()
hits = []
threads = []
def tick(t):
    hits.append(t)
    threads.append(_thread.get_ident() == main)
t = machine.Timer(-1)
t.init(period=50, mode=machine.Timer.PERIODIC, callback=tick)
once = []
o = machine.Timer(-1)
o.init(period=30, mode=machine.Timer.ONE_SHOT, callback=lambda x: once.append(x is o))
time.sleep_ms(525)
t.deinit()
n = len(hits)
time.sleep_ms(200)
out("periodic", n, len(hits), all(h is t for h in hits), all(threads))
out("oneshot", once)
try:
    machine.Timer(-1, period=10)
    out("ctor", "accepted")
except TypeError:
    out("ctor", "TypeError")               # the ESP8266's Timer takes only its id
f = machine.Timer(-1)
f.init(freq=50, mode=machine.Timer.ONE_SHOT, callback=lambda x: once.append("freq"))
time.sleep_ms(100)
out("freq1", once[-1])
out("id", machine.unique_id(), machine.freq())
machine.freq(160000000)
out("freq", machine.freq(), machine.reset_cause())
import network
w = network.WLAN(network.STA_IF)
w.active(True)
w.connect("ssid", "pw")
out("wlan", w.isconnected(), w.ifconfig(), w.status() == network.STAT_GOT_IP, w.config("mac"), w is network.WLAN(0))
machine.reset()
"""
    p = run_mp(code, image, tmp_path, check=False)
    assert p.returncode == EXIT_HARD_RESET, p.stderr
    res = dict((r[0], r[1:]) for r in results(p.stdout))
    n, after, same, main_thread = res["periodic"]
    assert 8 <= n <= 11, n  # 525 ms / 50 ms, with scheduling jitter
    assert after == n  # deinit stops it
    assert same and main_thread  # soft callbacks: in the main thread, with the timer
    assert res["oneshot"] == ([True],)
    assert res["ctor"] == ("TypeError",)
    assert res["freq1"] == ("freq",)
    # chip id from the loader's default MAC 18:fe:34:a1:b2:c3: c3 | b2 << 8 | a1 << 16
    assert res["id"] == (b"\xc3\xb2\xa1\x00", 80000000)
    assert res["freq"] == (160000000, 0)
    assert res["wlan"] == (
        True,
        ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1"),
        True,
        bytes.fromhex("18fe34a1b2c3"),
        True,
    )


def test_timer_fires_at_the_idle_repl_prompt(tmp_path):
    # A board runs soft Timer callbacks while its REPL waits for input; the
    # unix port blocks in read() there, which the timer thread interrupts.
    image = make_image(tmp_path / "flash.bin")
    script = tmp_path / "idle.py"
    script.write_text(
        "import sys\nimport machine_shim\nsys.modules['machine'] = machine_shim\n"
        "import machine\nn = []\nt = machine.Timer(-1)\n"
        "t.init(period=50, callback=lambda t: n.append(1))\n"
    )
    child = subprocess.Popen(
        [micropython_binary(), "-X", "heapsize=" + SHIM_HEAP, "-i", str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=board_env(image),
        cwd=tmp_path,
    )
    try:
        time.sleep(1.0)  # nothing typed: the REPL sits at its prompt
        out, err = child.communicate(b"t.deinit(); print('@', repr(len(n)))\n", timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    (count,) = results(out.decode())
    print("callbacks during 1 s at the idle prompt: %d (period 50 ms)" % count)
    assert count >= 10, (out, err)


# ------------------------------------------------------------------ tls
@pytest.fixture(scope="module")
def creds(tmp_path_factory):
    d = tmp_path_factory.mktemp("tlscreds")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    enc, fmt = serialization.Encoding, serialization.PrivateFormat
    none = serialization.NoEncryption()
    files = {
        "cert.der": cert.public_bytes(enc.DER),
        "cert.pem": cert.public_bytes(enc.PEM),
        "key.der": key.private_bytes(enc.DER, fmt.TraditionalOpenSSL, none),  # PKCS#1: the axTLS form
        "key.pem": key.private_bytes(enc.PEM, fmt.TraditionalOpenSSL, none),
        "key.pk8": key.private_bytes(enc.DER, fmt.PKCS8, none),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


class Peer:
    """A CPython TLS peer on 127.0.0.1 in a thread, configured as an axTLS peer needs."""

    def __init__(self, creds, server, script):
        self.script = script  # callable(ssl_socket) -> value kept in .result
        self.result = None
        self.error = None
        self.info = None
        if server:
            self.ctx = peers.server_context(creds / "cert.pem", creds / "key.pem")
        else:
            self.ctx = peers.client_context()  # no CA: the device's certificate is not checked
        self.server = server
        self.listener = socket.socket()
        if server:
            self.listener.bind(("127.0.0.1", 0))
            self.listener.listen(2)
            self.port = self.listener.getsockname()[1]
        self.thread = None

    def start(self, port=None):
        self.thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self.thread.start()

    def _run(self, port):
        try:
            self.listener.settimeout(30)
            if self.server:
                conn, _ = self.listener.accept()
                conn.settimeout(30)
                s = self.ctx.wrap_socket(conn, server_side=True)
            else:
                self.listener.connect(("127.0.0.1", port))
                s = self.ctx.wrap_socket(self.listener)
            self.info = (s.version(), s.cipher()[0])
            self.result = self.script(s)
            s.close()
        except Exception as e:  # noqa: BLE001  (reported by join())
            self.error = e

    def join(self):
        self.thread.join(30)
        self.listener.close()
        if self.error is not None:
            raise self.error
        return self.result


# The shim on an mbedTLS port; a binary with axTLS (ESPSSL_MICROPYTHON, e.g. a
# 32-bit ESP8266-like build) runs the same tests on real axTLS, unshimmed, as
# the board does: what the shim claims is checked against the real thing.
TLS_PRELUDE = r"""
import sys, gc, socket
import machine_shim
sys.modules["machine"] = machine_shim
import tls
if hasattr(tls, "MBEDTLS_VERSION"):
    import tls_shim
    sys.modules["tls"] = tls = tls_shim
out = lambda *a: print("@", repr(a))
def rd(name):
    f = open(name, "rb"); d = f.read(); f.close(); return d
"""


def _echo_upper(s):
    data = s.recv(100)
    s.sendall(data.upper())
    return data


def test_tls_client_role_tls12_and_ballast(tmp_path, creds):
    peer = Peer(creds, True, _echo_upper)
    peer.start()
    code = TLS_PRELUDE + r"""
gc.collect(); f0 = gc.mem_free()
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = 2                      # accepted and ignored, as axTLS does
ss = ctx.wrap_socket(s, server_hostname="127.0.0.1")
gc.collect(); used = f0 - gc.mem_free()
ss.write(b"hello axtls")
got = ss.read(11)
sstype = type(ss)
ss.close()
ss = None
gc.collect(); left = f0 - gc.mem_free()
out("echo", got, ctx.verify_mode, used, left)
out("surface", [n for n in ("load_verify_locations", "getpeercert", "do_handshake", "set_ciphers", "get_ciphers")
                if hasattr(ctx, n) or hasattr(sstype, n)], hasattr(tls, "CERT_REQUIRED"))
""" % peer.port
    p = run_mp(code, creds / "cert.der", tmp_path)
    assert peer.join() == b"hello axtls"
    assert peer.info == ("TLSv1.2", "AES128-SHA")  # axTLS's first suite
    res = dict((r[0], r[1:]) for r in results(p.stdout))
    got, mode, used, left = res["echo"]
    assert got == b"HELLO AXTLS" and mode == 0
    print("heap per connection: %d bytes (released to %d after close)" % (used, left))
    assert 8 * 1024 <= used <= 10 * 1024  # axTLS's ~8 KiB per connection
    assert left < 1024
    assert res["surface"] == ([], False)


def test_tls_server_role_with_cpython_client(tmp_path, creds):
    peer = Peer(creds, False, lambda s: (s.sendall(b"ping"), s.recv(100))[1])
    # The device needs a port the peer can reach: bind in CPython first to
    # learn a free one, then let the device listen on it.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    code = TLS_PRELUDE + r"""
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
ls.listen(1)
print("LISTENING")
c, a = ls.accept()
ctx = tls.SSLContext(tls.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(rd("cert.der"), rd("key.der"))
ss = ctx.wrap_socket(c, server_side=True)
got = ss.read(4)
ss.write(got + b"-pong")
ss.close()
ls.close()
out("got", got)
""" % port
    script = tmp_path / "srv.py"
    script.write_text(code)
    child = subprocess.Popen(
        [micropython_binary(), "-X", "heapsize=" + SHIM_HEAP, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=board_env(tmp_path / "none.bin"),
        cwd=creds,
    )
    try:
        assert child.stdout.readline().strip() == "LISTENING"
        peer.start(port)
        try:
            reply = peer.join()
        finally:
            out, err = child.communicate(timeout=30)
            print(out, err)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert reply == b"ping-pong"
    assert peer.info[0] == "TLSv1.2"
    assert results(out) == [("got", b"ping")]


def test_tls_refuses_pem_and_pkcs8(tmp_path, creds):
    code = TLS_PRELUDE + r"""
for cert, key in (("cert.der", "key.pem"), ("cert.der", "key.pk8"), ("cert.pem", "key.der")):
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(rd(cert), rd(key))   # stored, checked at wrap time as axTLS does
    s = socket.socket()
    try:
        ctx.wrap_socket(s, server_side=True)
        out(cert, key, "accepted")
    except ValueError as e:
        out(cert, key, str(e))
    s.close()
"""
    p = run_mp(code, creds / "cert.der", tmp_path, cwd=creds)
    assert results(p.stdout) == [
        ("cert.der", "key.pem", "invalid key"),
        ("cert.der", "key.pk8", "invalid key"),
        ("cert.pem", "key.der", "invalid cert"),
    ]


# AES128-SHA (CBC) records: 16-byte IV + plaintext, 20-byte MAC and >= 1 byte
# of padding, rounded up to 16.  5067 bytes of plaintext make a 5104-byte
# record, 5068 bytes a 5120-byte one: either side of axTLS's 5115.
FITS, OVERFLOWS = 5067, 5068


def test_tls_oversize_record_is_refused(tmp_path, creds):
    def send_two(s):
        s.recv(10)
        s.sendall(b"a" * FITS)  # one record of 5104 bytes
        s.recv(10)
        s.sendall(b"b" * OVERFLOWS)  # one record of 5120 bytes
        try:
            s.recv(10)
        except (OSError, ssl.SSLError):
            pass

    peer = Peer(creds, True, send_two)
    peer.start()
    code = TLS_PRELUDE + r"""
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
ss = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT).wrap_socket(s)
ss.write(b"go")
buf = bytearray(%d)
mv = memoryview(buf)
n = 0
while n < len(buf):
    n += ss.readinto(mv[n:])
out("fits", n, buf.find(b"a" * 8) == 0 and all(b == 97 for b in buf))
ss.write(b"go")
try:
    ss.read(6000)
    out("overflows", "accepted")
except OSError as e:
    out("overflows", e.args)
ss.close()
""" % (peer.port, FITS)
    p = run_mp(code, creds / "cert.der", tmp_path)
    peer.join()
    # As axTLS (checked on a real axTLS build): the console line, then OSError(-257, "RECORD_OVERFLOW").
    assert results(p.stdout) == [("fits", FITS, True), ("overflows", (-257, "RECORD_OVERFLOW"))]
    m = re.search(r"^TLS buffer overflow, record size: (\d+) \(\+5\)$", p.stdout, re.M)
    assert m and int(m.group(1)) > 5115, p.stdout


FAILING_STREAM = r"""
import io
class Failing(io.IOBase):
    # A stream over the socket that fails on demand, as espconn's tap does
    # when it refuses a chain: readinto/write return -ECONNABORTED.
    def __init__(self, s):
        self.s = s
        self.fail = False
    def readinto(self, buf):
        return -103 if self.fail else self.s.readinto(buf)
    def write(self, buf):
        return -103 if self.fail else self.s.write(buf)
    def ioctl(self, req, arg):
        return 0
"""


def test_tls_stream_failure_is_eof_as_on_axtls(tmp_path, creds):
    # axTLS makes any failure of the stream under it SSL_ERROR_CONN_LOST, and
    # modtls_axtls.c makes that EOF: the reason is lost unless the stream kept it.
    peer = Peer(creds, True, _echo_upper)
    peer.start()
    raw = socket.socket()
    raw.bind(("127.0.0.1", 0))
    raw.listen(1)
    code = TLS_PRELUDE + FAILING_STREAM + r"""
def conn(port):
    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    return Failing(s)
f = conn(%d)
ss = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT).wrap_socket(f)
ss.write(b"hello")
out("echo", ss.read(5))
f.fail = True
out("after", ss.read(5), ss.readinto(bytearray(4)), ss.write(b"more"))
ss.close()
f = conn(%d)
f.fail = True
try:
    tls.SSLContext(tls.PROTOCOL_TLS_CLIENT).wrap_socket(f)
    out("handshake", "connected")
except OSError as e:
    out("handshake", e.args)
""" % (peer.port, raw.getsockname()[1])
    try:
        p = run_mp(code, creds / "cert.der", tmp_path)
    finally:
        raw.close()
    peer.join()
    res = dict((r[0], r[1:]) for r in results(p.stdout))
    assert res["echo"] == (b"HELLO",)
    assert res["after"] == (b"", 0, 0)  # EOF, not the stream's error
    assert res["handshake"] == ((-256, "CONN_LOST"),)


def test_tls_out_of_heap_crashes_as_axtls_does(tmp_path, creds):
    # axTLS never checks an allocation: short of heap, the board crashes
    # (SIGSEGV here, a Fatal exception and a reset on an ESP8266), never a
    # MemoryError a program could catch.
    peer = Peer(creds, True, _echo_upper)
    peer.start()
    code = TLS_PRELUDE + r"""
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
hog = [None] * 400
gc.collect()
i = 0
while gc.mem_free() > 6000 and i < 400:
    try:
        hog[i] = bytearray(512)
    except MemoryError:
        break
    i += 1
print("free", gc.mem_free())
try:
    ss = ctx.wrap_socket(s)
    print("connected")
except BaseException as e:
    print("caught", repr(e))
""" % peer.port
    p = run_mp(code, creds / "cert.der", tmp_path, check=False)
    peer.thread.join(30)
    peer.listener.close()
    assert p.returncode == -signal.SIGSEGV, (p.returncode, p.stdout, p.stderr)
    assert "free" in p.stdout and "caught" not in p.stdout and "connected" not in p.stdout


def needs_frozen_ssl():
    """Skip unless the binary has `ssl` frozen, as every ESP8266 build has."""
    p = subprocess.run([micropython_binary(), "-c", "import ssl"], capture_output=True, timeout=30)
    if p.returncode:
        pytest.skip("this MicroPython binary has no frozen ssl module (an ESP8266 build has one)")


def test_ssl_wrapper_builds_on_the_shim(tmp_path, creds):
    needs_frozen_ssl()
    peer = Peer(creds, True, _echo_upper)
    peer.start()
    code = TLS_PRELUDE + r"""
import ssl
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
ss = ssl.wrap_socket(s)
ss.write(b"via ssl")
out("ssl", ss.read(7), type(ss).__name__)
ss.close()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
try:
    ctx.load_verify_locations(cadata=b"x")
    out("lvl", "accepted")
except AttributeError:
    out("lvl", "AttributeError")
""" % peer.port
    p = run_mp(code, creds / "cert.der", tmp_path)
    assert peer.join() == b"via ssl"
    assert results(p.stdout) == [("ssl", b"VIA SSL", "SSLSocket"), ("lvl", "AttributeError")]


def test_board_tls_client_fits_the_board_heap(tmp_path, creds):
    needs_frozen_ssl()
    # The whole board: vboard_boot.py, its heap accounting, the frozen ssl
    # wrapper over the shim, typed at the REPL as a user would.
    image = make_image(tmp_path / "flash.bin")
    peer = Peer(creds, True, _echo_upper)
    peer.start()
    p = boot(
        image,
        tmp_path,
        "import socket, ssl, gc\n"
        "s = socket.socket()\n"
        "s.connect(socket.getaddrinfo('127.0.0.1', %d)[0][-1])\n"
        "gc.collect(); f0 = gc.mem_free()\n"
        "ss = ssl.wrap_socket(s)\n"
        "gc.collect(); f1 = gc.mem_free()\n"
        "ss.write(b'board'); got = ss.read(5); ss.close(); ss = None; gc.collect()\n"
        "print('@', repr((got, f0, f0 - f1, f0 - gc.mem_free())))\n" % peer.port,
    )
    try:
        peer.join()
    finally:
        print(p.stdout, p.stderr)
    (res,) = results(p.stdout)
    got, free, conn, after = res
    print("board heap: %d free before the connection, %d taken by it, %d after close" % (free, conn, after))
    assert got == b"BOARD"
    assert conn >= 8 * 1024
    assert after < 1024


def _listeners():
    """{port: local address} of the host's listening IPv4 TCP sockets."""
    out = {}
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A":  # TCP_LISTEN
            ip, port = f[1].split(":")
            out[int(port, 16)] = ipaddress.ip_address(bytes.fromhex(ip)[::-1])
    return out


def test_board_sockets_stay_on_loopback(tmp_path):
    # The board's sockets are the host's: a program that listens on 0.0.0.0
    # (espconn_secure_accept with local_ip unset does) must not open the host.
    image = make_image(tmp_path / "flash.bin")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import socket, time\n"
        "s = socket.socket()\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(socket.getaddrinfo('0.0.0.0', %d)[0][-1])\n"
        "s.listen(1)\n"
        "print('@', repr([bytes(socket.getaddrinfo(h, 80)[0][-1][4:8]) for h in ('0.0.0.0', '192.168.4.1', 'localhost')]))\n"
        "time.sleep(2)\n" % port
    )
    done = {}
    t = threading.Thread(target=lambda: done.update(p=boot(image, tmp_path, code)), daemon=True)
    t.start()
    seen = None
    deadline = time.monotonic() + 30
    while seen is None and t.is_alive() and time.monotonic() < deadline:
        seen = _listeners().get(port)
        time.sleep(0.05)
    t.join(30)
    lines = [done["p"].stdout]
    addrs = results("".join(lines))[0]
    assert addrs == [b"\x7f\x00\x00\x01"] * 3
    assert seen == ipaddress.ip_address("127.0.0.1"), seen


# ------------------------------------------------------------------ signatures
SHIMS = {
    "esp.py": "esp.pyi",
    "network.py": "network.pyi",
    "machine_shim.py": "machine.pyi",
    "tls_shim.py": "tls.pyi",
    "vfs_shim.py": "vfs.pyi",
    "socket_shim.py": "socket.pyi",
}
# Shim names with no stub counterpart, each with its reason.
# Stub parameters the ESP8266 port does not take, each with its reason.
PARAMS_NOT_ON_ESP8266 = {
    # ports/esp8266 modmachine.c: esp_timer_make_new checks for exactly one
    # argument (the id); init() has mode/callback/period/tick_hz/freq, no hard.
    "machine_shim.py.Timer.__init__": {"mode", "period", "callback", "hard", "freq", "tick_hz"},
    "machine_shim.py.Timer.init": {"hard"},
}
EXTRA_OK = {
    "machine_shim.py": {"EXIT_HARD_RESET"},  # the exit status the board supervisor reads
    "tls_shim.py": {"SSLSocket"},  # the type wrap_socket returns (the stub leaves it unnamed)
}


def _public(tree):
    """name -> node for public module-level defs/classes/constants."""
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            continue
        for n in names:
            if not n.startswith("_"):
                out.setdefault(n, []).append(node)
    return out


def _params(fn):
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
    return names, a.vararg is not None or a.kwarg is not None


def _required(fn):
    a = fn.args
    pos = a.posonlyargs + a.args
    req = [x.arg for x in pos[: len(pos) - len(a.defaults)] if x.arg not in ("self", "cls")]
    req += [x.arg for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    return req


def _check_fn(where, shim_fn, stub_fns):
    shim_names, _ = _params(shim_fn)
    if shim_fn.args.vararg and shim_fn.args.kwarg and not shim_names:
        return  # the shim takes (*args, **kwargs) and sorts them out itself
    stub_names = set()
    open_ended = False
    for f in stub_fns:
        names, var = _params(f)
        stub_names.update(names)
        open_ended |= var
    if open_ended and not stub_names:
        return  # the stub says (*args, **kwargs): anything goes
    missing = stub_names - set(shim_names) - PARAMS_NOT_ON_ESP8266.get(where, set())
    assert not missing, "%s: stub parameters %s missing" % (where, sorted(missing))
    if not open_ended:
        extra = set(shim_names) - stub_names
        assert not extra, "%s: parameters %s not in the stub" % (where, sorted(extra))
    # what the shim requires, every stub overload must require too
    for r in _required(shim_fn):
        assert all(r in _required(f) for f in stub_fns), "%s: %s required" % (where, r)


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_shim_matches_stub(shim):
    if not (TYPINGS / SHIMS[shim]).exists():
        pytest.skip("micropython-esp8266-stubs not installed in typings/ (make setup)")
    tree = ast.parse((DEVICE / shim).read_text())
    stub = ast.parse((TYPINGS / SHIMS[shim]).read_text())
    have, want = _public(tree), _public(stub)
    extra = set(have) - set(want) - EXTRA_OK.get(shim, set())
    assert not extra, "%s: names the ESP8266 port lacks: %s" % (shim, sorted(extra))
    for name, nodes in have.items():
        if name not in want:
            continue
        node = nodes[0]
        if isinstance(node, ast.FunctionDef):
            _check_fn("%s.%s" % (shim, name), node, [n for n in want[name] if isinstance(n, ast.FunctionDef)])
        elif isinstance(node, ast.ClassDef):
            stub_cls = [n for n in want[name] if isinstance(n, ast.ClassDef)][0]
            stub_members = {}
            for m in stub_cls.body:
                if isinstance(m, ast.FunctionDef):
                    stub_members.setdefault(m.name, []).append(m)
                elif isinstance(m, (ast.Assign, ast.AnnAssign)):
                    t = m.targets[0] if isinstance(m, ast.Assign) else m.target
                    stub_members.setdefault(getattr(t, "id", ""), []).append(m)
            for m in node.body:
                if isinstance(m, ast.FunctionDef):
                    if m.name.startswith("_") and m.name not in ("__init__", "__call__"):
                        continue
                    if any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in m.decorator_list):
                        continue
                    assert m.name in stub_members or (shim, name, m.name) in PROPERTY_OK, (
                        "%s.%s.%s: not on the ESP8266" % (shim, name, m.name)
                    )
                    if m.name in stub_members:
                        _check_fn("%s.%s.%s" % (shim, name, m.name), m, stub_members[m.name])
                elif isinstance(m, ast.Assign):
                    for t in m.targets:
                        if isinstance(t, ast.Name) and not t.id.startswith("_"):
                            assert t.id in stub_members, "%s.%s.%s: not on the ESP8266" % (shim, name, t.id)


# axTLS's SSLContext answers verify_mode (always CERT_NONE, stores ignored) in
# its attr handler; the stub does not list it.
PROPERTY_OK = {("tls_shim.py", "SSLContext", "verify_mode")}
