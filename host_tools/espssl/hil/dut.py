"""The board under test: runs MicroPython code over the raw REPL and keeps a log.

Built on mpremote's ``SerialTransport`` (the same wire code ``mpremote`` uses),
so a real ESP8266 on /dev/ttyUSB0 and the virtual board's pty behave alike.
Every script run is written to the log with its output, so a failing case
points at the exact exchange.
"""

import ast
import time

from ..deploy import Board
from ..errors import DeviceError

RESULT_MARK = "RESULT "  # a board script's last line: RESULT <repr(dict)>


class BoardError(AssertionError):
    """The board raised, timed out or printed no result (message names the log)."""


class Dut(Board):
    """One board, one log file.  ``run(code)`` soft-resets first: each case starts clean."""

    def __init__(self, port, log_path, soft_reset=True):
        super().__init__(port, soft_reset=soft_reset)
        self.log_path = log_path
        self._log = None

    def __enter__(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8")
        self.log("open %s" % self.port)
        try:
            return super().__enter__()
        except DeviceError as e:
            self.log("FAILED: %s" % e)
            self._log.close()
            raise

    def log(self, text):
        if self._log:
            self._log.write("[%8.3f] %s\n" % (time.monotonic() % 100000, text))
            self._log.flush()

    def run(self, code, timeout=60):
        """Run CODE; return (stdout text, result dict or None).  BoardError on a traceback."""
        from mpremote.transport import TransportError

        self.log("exec:\n" + code.rstrip())
        t0 = time.monotonic()
        try:
            self.t.exec_raw_no_follow(code)
            out, err = self.t.follow(timeout)
        except (TransportError, OSError) as e:
            self.log("TRANSPORT ERROR after %.1fs: %s" % (time.monotonic() - t0, e))
            raise BoardError("the board stopped answering (%s); log: %s" % (e, self.log_path)) from None
        text = out.decode(errors="replace")
        self.log("stdout (%.2fs):\n%s" % (time.monotonic() - t0, text.rstrip()))
        if err:
            etext = err.decode(errors="replace")
            self.log("stderr:\n" + etext.rstrip())
            raise BoardError("the board raised: %s (log: %s)" % (etext.strip().splitlines()[-1], self.log_path))
        result = None
        for line in text.splitlines():
            if line.startswith(RESULT_MARK):
                result = ast.literal_eval(line[len(RESULT_MARK):])
        return text, result

    def result(self, code, timeout=60):
        """Like run(), but the script must print a RESULT line."""
        text, result = self.run(code, timeout)
        if result is None:
            raise BoardError("the board printed no %sline (log: %s)" % (RESULT_MARK, self.log_path))
        return result

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self._log:
            self.log("close")
            self._log.close()
            self._log = None
        return False
