"""SLIP framing (RFC 1055) as the ESP8266 serial loader and esptool use it.

A frame is ``END payload END``; inside the payload ``END`` is sent as
``ESC ESC_END`` and ``ESC`` as ``ESC ESC_ESC``.  Bytes between frames are not
part of any frame: esptool drops a reply preceded by them ("Invalid head of
packet"), the loader ignores them.
"""

END = 0xC0  # SLIP_END: starts and ends every frame
ESC = 0xDB  # SLIP_ESC: the next byte is an escape code
ESC_END = 0xDC  # ESC ESC_END stands for a payload 0xC0
ESC_ESC = 0xDD  # ESC ESC_ESC stands for a payload 0xDB

_END_B = bytes([END])


def encode(payload):
    """One whole frame (END ... END) carrying PAYLOAD."""
    body = bytes(payload).replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return _END_B + body + _END_B


class Decoder:
    """Incremental SLIP reader: feed() bytes as they arrive, get whole frames back.

    ``garbage`` counts bytes seen outside frames; ``errors`` counts frames
    dropped for a bad escape sequence.  Empty frames (END END, as senders use to
    flush the line) are skipped.
    """

    def __init__(self):
        self._buf = bytearray()
        self._in_frame = False
        self.garbage = 0
        self.errors = 0

    @property
    def in_frame(self):
        """True while a frame has started and not yet ended."""
        return self._in_frame

    def feed(self, data):
        """Consume DATA; return the list of frames (bytes) it completed."""
        frames = []
        data = bytes(data)
        i, n = 0, len(data)
        while i < n:
            j = data.find(_END_B, i)
            if not self._in_frame:
                if j < 0:
                    self.garbage += n - i
                    break
                self.garbage += j - i
                self._in_frame = True
                self._buf.clear()
                i = j + 1
                continue
            if j < 0:
                self._buf += data[i:]
                break
            self._buf += data[i:j]
            i = j + 1
            if not self._buf:
                continue  # END END: an empty frame; this END opens the next one
            frame = _unescape(self._buf)
            self._buf.clear()
            if frame is None:
                self.errors += 1  # stay in frame: this END opens the next one
                continue
            frames.append(frame)
            self._in_frame = False
        return frames


def _unescape(body):
    """The payload of a frame body, or None if it holds a bad escape."""
    parts = bytes(body).split(bytes([ESC]))
    out = bytearray(parts[0])
    for part in parts[1:]:
        if not part:
            return None  # ESC at the end, or ESC ESC
        if part[0] == ESC_END:
            out.append(END)
        elif part[0] == ESC_ESC:
            out.append(ESC)
        else:
            return None
        out += part[1:]
    return bytes(out)
