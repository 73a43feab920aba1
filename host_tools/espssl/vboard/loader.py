"""The ESP8266 serial loader: the ROM bootloader protocol and the flasher stub's.

``Loader(flash).feed(bytes) -> bytes`` is all there is: bytes from the host in,
reply bytes out, no threads and no I/O but the flash image.  It starts as the
ROM loader; when esptool uploads its flasher stub (MEM_BEGIN / MEM_DATA /
MEM_END with an entry point) it greets with ``OHAI`` and speaks the stub's
protocol from then on.  ``finished`` becomes True when the host asks to run the
user code or to reboot (ROM FLASH_END, stub RUN_USER_CODE): the board then boots
MicroPython again.

Wire format (esptool ``loader.py``): SLIP frames; a request is ``<BBHI`` =
direction 0, opcode, data length, checksum (0xEF XOR the payload, checked for
*_DATA only) followed by the data; a reply is ``<BBHI`` = direction 1, opcode,
length, value, then data and two status bytes.  The ESP8266 ROM's status is
``(failed, error)``; the stub's is an error code then 0.

What is emulated beyond the commands: the chip registers esptool reads (the
ESP8266 magic at 0x40001000, the efuses holding the MAC, the UART divider
giving a 26 MHz crystal) and the SPI0 user-command registers through which
esptool reads the flash ID (RDID), SFDP and status.  The ROM's erase bug is
emulated too: FLASH_BEGIN erases ``n + min(16 - first % 16, n)`` sectors for
an erase size of ``n`` sectors (esptool asks for less to compensate).

Deliberate differences from a board: writes, reads or erases beyond the end of
the flash fail (a real chip wraps the address around); any MEM_END with an
entry point starts "the stub" (no other RAM code can run here).
"""

import hashlib
import struct
import zlib

from . import slip

SECTOR = 4096

# Opcodes (esptool ESPLoader.ESP_CMDS).
FLASH_BEGIN = 0x02
FLASH_DATA = 0x03
FLASH_END = 0x04
MEM_BEGIN = 0x05
MEM_END = 0x06
MEM_DATA = 0x07
SYNC = 0x08
WRITE_REG = 0x09
READ_REG = 0x0A
SPI_SET_PARAMS = 0x0B
SPI_ATTACH = 0x0D
CHANGE_BAUDRATE = 0x0F
FLASH_DEFL_BEGIN = 0x10
FLASH_DEFL_DATA = 0x11
FLASH_DEFL_END = 0x12
SPI_FLASH_MD5 = 0x13
ERASE_FLASH = 0xD0
ERASE_REGION = 0xD1
READ_FLASH = 0xD2
RUN_USER_CODE = 0xD3

_ROM_OPS = frozenset(range(FLASH_BEGIN, READ_REG + 1))  # what the ESP8266 ROM knows
_STUB_OPS = _ROM_OPS | {
    SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUDRATE, FLASH_DEFL_BEGIN, FLASH_DEFL_DATA,
    FLASH_DEFL_END, SPI_FLASH_MD5, ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE,
}

_REQ = struct.Struct("<BBHI")  # direction, opcode, length, checksum / value
_CHECKSUM_SEED = 0xEF
SYNC_DATA = b"\x07\x07\x12\x20" + b"\x55" * 32
_SYNC_PREFIX = b"\xc0\x00\x08\x24\x00"  # END, request, SYNC, length 36 (LE)
_SYNC_REPLIES = 8  # esptool reads the first reply and 7 more
ROM_SYNC_VALUE = 0x20120707  # a stub answers SYNC with 0
OHAI = b"OHAI"  # the stub's greeting once it runs

# Failures, by kind: (ROM error byte, stub status code).
_E_INVALID = (0x05, 0xC3)  # unknown command / invalid message
_E_BAD_LEN = (0x05, 0xC0)
_E_CHECKSUM = (0x07, 0xC1)
_E_FAILED = (0x06, 0xC4)  # failed to act / SPI operation failed
_E_NOT_FLASHING = (0x06, 0xC6)
_E_INFLATE = (0x0B, 0xC7)
_E_TOO_MUCH = (0x06, 0xC9)

# Registers esptool reads.
CHIP_MAGIC_REG = 0x40001000
CHIP_MAGIC_ESP8266 = 0xFFF0C101
EFUSE_REG0 = 0x3FF00050  # MAC byte 5 in bits 24..31; bit 4 set = ESP8285
EFUSE_REG1 = 0x3FF00054  # MAC bytes 3, 4 in bits 8..15, 0..7
EFUSE_REG2 = 0x3FF00058  # bit 16 set = ESP8285
EFUSE_REG3 = 0x3FF0005C  # OUI in bits 0..23 when non-zero
UART_CLKDIV_REG = 0x60000014
UART_CLKDIV_26MHZ = 451  # 115200 baud * 451 / 2e6 ~ 26 MHz (esptool's estimate)
SPI_BASE = 0x60000200  # SPI0
SPI_CMD = SPI_BASE + 0x00
SPI_ADDR = SPI_BASE + 0x04
SPI_USR = SPI_BASE + 0x1C
SPI_USR1 = SPI_BASE + 0x20
SPI_USR2 = SPI_BASE + 0x24
SPI_W0 = SPI_BASE + 0x40
_SPI_CMD_USR = 1 << 18  # start the user command; cleared when done
_SPI_MISO_BITLEN_SHIFT = 8  # in SPI_USR1

# SPI flash commands.
_RDID = 0x9F
_RDSFDP = 0x5A
_RDSR = (0x05, 0x35, 0x15)
WINBOND = 0xEF  # manufacturer of the emulated chip (a W25Q-family part)
_W25Q_DEVICE = 0x40

DEFAULT_MAC = bytes.fromhex("18fe34a1b2c3")  # Espressif OUI


def _sfdp_table(manufacturer):
    """JEDEC SFDP header + parameter headers, enough for esptool's probes."""
    t = bytearray(b"SFDP") + bytes([0x06, 0x01, 0x01, 0xFF])  # rev 1.6, 2 headers
    t += bytes([0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF])  # basic table at 0x30
    t += bytes([manufacturer, 0x00, 0x01, 0x03, 0x70, 0x00, 0x00, 0xFF])  # vendor table
    return bytes(t) + b"\xff" * (0x80 - len(t))


def looks_like_sync(data):
    """True if DATA starts with (the beginning of) a SLIP SYNC request."""
    data = bytes(data[: len(_SYNC_PREFIX) + 4 + len(SYNC_DATA)])
    if len(data) < 3:
        return False
    if len(data) <= len(_SYNC_PREFIX):
        return _SYNC_PREFIX.startswith(data)
    if not data.startswith(_SYNC_PREFIX):
        return False
    tail = data[len(_SYNC_PREFIX) + 4 :]  # after the checksum word
    return SYNC_DATA.startswith(tail)


def chip_id(mac):
    """system_get_chip_id() as esptool computes it from the efuses of MAC."""
    return mac[5] | (mac[3] << 8 | mac[4]) << 8


class _Fail(Exception):
    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


def _rom_erase_sectors(offset, size):
    """Sectors the ESP8266 ROM's FLASH_BEGIN really erases for an erase SIZE (its bug)."""
    n = (size + SECTOR - 1) // SECTOR
    head = min(16 - (offset // SECTOR) % 16, n)
    return n + head


class Loader:
    """The serial loader of one virtual ESP8266 session (see the module doc)."""

    def __init__(self, flash, mac=DEFAULT_MAC, manufacturer=WINBOND):
        self.flash = flash
        self.mac = bytes(mac)
        self.stub = False  # True once the flasher stub "runs"
        self.finished = False
        self.baud = 115200
        self.commands = []  # opcodes handled, in order (for tests and logs)
        self._slip = slip.Decoder()
        size_log2 = flash.size.bit_length() - 1
        self._rdid = manufacturer | _W25Q_DEVICE << 8 | size_log2 << 16
        self._sfdp = _sfdp_table(manufacturer)
        m = self.mac
        self._regs = {
            CHIP_MAGIC_REG: CHIP_MAGIC_ESP8266,
            EFUSE_REG0: m[5] << 24,
            EFUSE_REG1: m[3] << 8 | m[4],
            EFUSE_REG2: 0,
            EFUSE_REG3: m[0] << 16 | m[1] << 8 | m[2],
            UART_CLKDIV_REG: UART_CLKDIV_26MHZ,
        }
        self._mem = None  # (size, blocks, blocksize, addr) after MEM_BEGIN
        self._write = None  # dict while a FLASH_BEGIN / FLASH_DEFL_BEGIN is open
        self._read = None  # dict while READ_FLASH streams

    # -- bytes in, bytes out -----------------------------------------------------
    def feed(self, data):
        """Take bytes from the host; return the bytes to send back (maybe b"")."""
        out = []
        for frame in self._slip.feed(data):
            if self.finished:
                break  # the chip has left the loader; the rest is not ours
            if self._read is not None and len(frame) == 4:
                out.append(self._read_ack(frame))
                continue
            out.append(self._request(frame))
        return b"".join(out)

    def _request(self, frame):
        if len(frame) < _REQ.size or frame[0] != 0:
            return b""  # not a request: the ROM ignores it
        _, op, size, chk = _REQ.unpack_from(frame)
        data = frame[_REQ.size :]
        self._read = None  # any command ends an unfinished read
        self.commands.append(op)
        known = _STUB_OPS if self.stub else _ROM_OPS
        after = []
        try:
            if op not in known:
                raise _Fail(_E_INVALID)
            if len(data) != size:
                raise _Fail(_E_BAD_LEN)
            val, body = getattr(self, "_op_%02x" % op)(data, chk, after)
        except _Fail as e:
            code = e.kind[1] if self.stub else e.kind[0]
            status = bytes([code, 0]) if self.stub else bytes([1, code])
            return self._reply(op, 0, status)
        if val is None:
            return b"".join(after)  # no reply (RUN_USER_CODE)
        status = b"\x00\x00"
        reply = self._reply(op, val, body + status)
        if op == SYNC:
            reply *= _SYNC_REPLIES
        return reply + b"".join(after)

    @staticmethod
    def _reply(op, val, body):
        return slip.encode(_REQ.pack(1, op, len(body), val) + body)

    @staticmethod
    def _args(data, n):
        if len(data) < 4 * n:
            raise _Fail(_E_BAD_LEN)
        return struct.unpack_from("<%dI" % n, data)

    @staticmethod
    def _block(data, chk):
        """The payload of a *_DATA request, its header and checksum checked."""
        if len(data) < 16:
            raise _Fail(_E_BAD_LEN)
        n, seq, _, _ = struct.unpack_from("<IIII", data)
        payload = data[16:]
        if n != len(payload):
            raise _Fail(_E_BAD_LEN)
        c = _CHECKSUM_SEED
        for b in payload:
            c ^= b
        if c != chk & 0xFF:
            raise _Fail(_E_CHECKSUM)
        return seq, payload

    def _in_flash(self, off, n):
        if off < 0 or n < 0 or off + n > self.flash.size:
            raise _Fail(_E_FAILED)

    # -- ROM commands ---------------------------------------------------------------
    def _op_08(self, data, chk, after):  # SYNC
        if data != SYNC_DATA:
            raise _Fail(_E_INVALID)
        return (0 if self.stub else ROM_SYNC_VALUE), b""

    def _op_0a(self, data, chk, after):  # READ_REG
        (addr,) = self._args(data, 1)
        return self._regs.get(addr, 0), b""

    def _op_09(self, data, chk, after):  # WRITE_REG
        addr, value, mask, _delay = self._args(data, 4)
        old = self._regs.get(addr, 0)
        self._regs[addr] = (old & ~mask | value & mask) & 0xFFFFFFFF
        if addr == SPI_CMD and self._regs[addr] & _SPI_CMD_USR:
            self._spi_user_command()
            self._regs[SPI_CMD] &= ~_SPI_CMD_USR
        return 0, b""

    def _spi_user_command(self):
        cmd = self._regs.get(SPI_USR2, 0) & 0xFF
        nbits = ((self._regs.get(SPI_USR1, 0) >> _SPI_MISO_BITLEN_SHIFT) & 0x1FF) + 1
        addr = self._regs.get(SPI_ADDR, 0) >> 8  # 24-bit address in the top bits
        if cmd == _RDID:
            result = self._rdid
        elif cmd == _RDSFDP:
            chunk = self._sfdp[addr : addr + 4] if addr < len(self._sfdp) else b""
            result = int.from_bytes(chunk.ljust(4, b"\xff"), "little")
        elif cmd in _RDSR:
            result = 0
        else:
            return  # reset, power-down...: nothing to read
        if nbits < 32:
            result &= (1 << nbits) - 1
        self._regs[SPI_W0] = result

    def _op_05(self, data, chk, after):  # MEM_BEGIN
        self._mem = self._args(data, 4)
        return 0, b""

    def _op_07(self, data, chk, after):  # MEM_DATA
        if self._mem is None:
            raise _Fail(_E_NOT_FLASHING)
        self._block(data, chk)
        return 0, b""  # RAM contents are not kept: nothing here runs them

    def _op_06(self, data, chk, after):  # MEM_END
        no_run, entry = self._args(data, 2)
        self._mem = None
        if not no_run and entry:
            # esptool's flasher stub starts and says hello.
            self.stub = True
            after.append(slip.encode(OHAI))
        return 0, b""

    def _op_02(self, data, chk, after):  # FLASH_BEGIN
        size, blocks, block_size, offset = self._args(data, 4)
        if self.stub:
            # The stub erases exactly the sectors it is about to write.
            self._in_flash(offset, size)
            first = offset // SECTOR
            last = (offset + size + SECTOR - 1) // SECTOR
        else:
            first = offset // SECTOR
            last = min(first + _rom_erase_sectors(offset, size), self.flash.size // SECTOR)
            if offset > self.flash.size:
                raise _Fail(_E_FAILED)
        if last > first:
            self.flash.erase(first * SECTOR, (last - first) * SECTOR)
        self._write = {"kind": "plain", "offset": offset, "size": size, "block": block_size,
                       "blocks": blocks, "done": 0}
        return 0, b""

    def _op_03(self, data, chk, after):  # FLASH_DATA
        w = self._write
        if w is None or w["kind"] != "plain":
            raise _Fail(_E_NOT_FLASHING)
        seq, payload = self._block(data, chk)
        pos = seq * w["block"]
        if self.stub:
            # The stub writes only up to the announced size (esptool pads with 0xFF).
            if pos >= w["size"]:
                raise _Fail(_E_TOO_MUCH)
            payload = payload[: w["size"] - pos]
        self._program(w["offset"] + pos, payload)
        w["done"] = max(w["done"], pos + len(payload))
        return 0, b""

    def _program(self, off, payload):
        end = off + len(payload)
        if end > self.flash.size:
            extra = payload[max(0, self.flash.size - off) :]
            if off >= self.flash.size or extra.strip(b"\xff"):
                raise _Fail(_E_FAILED)
            payload = payload[: self.flash.size - off]  # only 0xFF padding falls off
        self.flash.write(off, payload)

    def _op_04(self, data, chk, after):  # FLASH_END
        return self._flash_end(data)

    def _flash_end(self, data):
        (run_user,) = self._args(data, 1)  # 1: stay / run user code; 0: reboot
        self._write = None
        if not self.stub:
            self.finished = True  # the ROM leaves the loader either way
        elif not run_user:
            self.stub = False  # the stub reboots into the ROM loader
        return 0, b""

    # -- stub-only commands -----------------------------------------------------------
    def _op_0b(self, data, chk, after):  # SPI_SET_PARAMS
        self._args(data, 6)
        return 0, b""

    def _op_0d(self, data, chk, after):  # SPI_ATTACH
        return 0, b""

    def _op_0f(self, data, chk, after):  # CHANGE_BAUDRATE (a pty has no baud rate)
        self.baud, _old = self._args(data, 2)
        return 0, b""

    def _op_10(self, data, chk, after):  # FLASH_DEFL_BEGIN: size is uncompressed bytes
        size, blocks, block_size, offset = self._args(data, 4)
        self._in_flash(offset, size)
        first = offset // SECTOR
        last = (offset + size + SECTOR - 1) // SECTOR
        if last > first:
            self.flash.erase(first * SECTOR, (last - first) * SECTOR)
        self._write = {"kind": "deflate", "offset": offset, "size": size, "block": block_size,
                       "blocks": blocks, "done": 0, "z": zlib.decompressobj()}
        return 0, b""

    def _op_11(self, data, chk, after):  # FLASH_DEFL_DATA: one zlib stream across blocks
        w = self._write
        if w is None or w["kind"] != "deflate":
            raise _Fail(_E_NOT_FLASHING)
        _seq, payload = self._block(data, chk)
        try:
            out = w["z"].decompress(payload)
        except zlib.error:
            raise _Fail(_E_INFLATE) from None
        if w["done"] + len(out) > w["size"]:
            raise _Fail(_E_TOO_MUCH)
        self._program(w["offset"] + w["done"], out)
        w["done"] += len(out)
        return 0, b""

    def _op_12(self, data, chk, after):  # FLASH_DEFL_END
        return self._flash_end(data)

    def _op_13(self, data, chk, after):  # SPI_FLASH_MD5 -> 16 raw bytes
        addr, size, _, _ = self._args(data, 4)
        self._in_flash(addr, size)
        md5 = hashlib.md5()
        for off in range(addr, addr + size, 0x10000):
            md5.update(self.flash.read(off, min(0x10000, addr + size - off)))
        return 0, md5.digest()

    def _op_d0(self, data, chk, after):  # ERASE_FLASH
        self.flash.erase(0, self.flash.size)
        return 0, b""

    def _op_d1(self, data, chk, after):  # ERASE_REGION
        offset, size = self._args(data, 2)
        if offset % SECTOR or size % SECTOR:
            raise _Fail(_E_BAD_LEN)
        self._in_flash(offset, size)
        if size:
            self.flash.erase(offset, size)
        return 0, b""

    def _op_d3(self, data, chk, after):  # RUN_USER_CODE: no reply
        self.finished = True
        return None, b""

    # READ_FLASH: the reply, then blocks of data each acknowledged by the host
    # with the running total (u32), at most max_inflight unacknowledged; once all
    # are acknowledged, a frame with the MD5 of everything sent.
    def _op_d2(self, data, chk, after):
        offset, length, block, inflight = self._args(data, 4)
        self._in_flash(offset, length)
        if not block or not inflight:
            raise _Fail(_E_BAD_LEN)
        self._read = {"offset": offset, "length": length, "block": block,
                      "inflight": inflight, "sent": 0, "acked": 0, "md5": hashlib.md5()}
        after.append(self._read_more())
        return 0, b""

    def _read_more(self):
        r = self._read
        out = []
        while r["sent"] < r["length"] and r["sent"] - r["acked"] < r["inflight"] * r["block"]:
            n = min(r["block"], r["length"] - r["sent"])
            chunk = self.flash.read(r["offset"] + r["sent"], n)
            r["md5"].update(chunk)
            r["sent"] += n
            out.append(slip.encode(chunk))
        if r["acked"] >= r["length"]:
            out.append(slip.encode(r["md5"].digest()))
            self._read = None
        return b"".join(out)

    def _read_ack(self, frame):
        (total,) = struct.unpack("<I", frame)
        self._read["acked"] = max(self._read["acked"], total)
        return self._read_more()
