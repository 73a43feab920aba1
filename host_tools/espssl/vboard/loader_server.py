"""A pseudo-terminal serving only the serial loader: a board that is always in download mode.

For tests and for trying esptool against a flash image without MicroPython:

    with LoaderServer("flash.bin") as srv:
        esptool.main(["--port", srv.port, "--before", "no-reset", ...])

A thread reads the pty master, feeds a ``Loader`` and writes its replies back.
When the host ends a session (``--after soft-reset``: the chip would run the
firmware), the next SYNC finds a fresh ROM loader, as a board reset back into
download mode would; ``sessions`` lists the finished ones.
"""

import os
import select
import threading
import tty

from .flashimage import FlashImage
from .loader import Loader


class LoaderServer:
    """A pty whose far end is a Loader over the flash image at PATH."""

    def __init__(self, path):
        self.flash = FlashImage(path)
        self.loader = Loader(self.flash)
        self.sessions = []  # finished Loaders, oldest first
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        # Keep the host side open so the master never reads EIO between clients.
        self.port = os.ttyname(self._slave)
        self._stop_r, self._stop_w = os.pipe()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="loader-pty", daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            ready, _, _ = select.select([self._master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            with self._lock:
                reply = self.loader.feed(data)
                if self.loader.finished:
                    self.sessions.append(self.loader)
                    self.loader = Loader(self.flash)
            view = memoryview(reply)
            while view:
                n = os.write(self._master, view)
                view = view[n:]

    def close(self):
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(5)
            self._thread = None
            for fd in (self._master, self._slave, self._stop_r, self._stop_w):
                os.close(fd)
            self.flash.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
