"""Free heap after `import espconn` on a virtual board, deployed to /lib and to ROMFS (figures only).

Starts a FLASH_2M_ROMFS virtual board with its default heap (an ESP8266's
headroom, see README "Virtual board"), deploys espconn with `espssl deploy
--target lib`, then `--target romfs`, and prints what deploy measured after a
soft reset each time: where espconn was imported from and gc.mem_free() after
the import.  Nothing asserted.
Usage: python tools/bench_deploy.py [--micropython PATH]
"""

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tools"))

from espssl.deploy import deploy  # noqa: E402
from espssl.vboard import cli as vboard  # noqa: E402
from espssl.vboard.board import default_heap  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micropython", help="MicroPython unix binary for the board (default: the project's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        d = pathlib.Path(tmp) / "vb"
        port = vboard.start(d, flash="4M", heap=default_heap(args.micropython), variant="FLASH_2M_ROMFS",
                            micropython=args.micropython)
        try:
            rows = []
            for target in ("lib", "romfs"):
                res = deploy(port, target=target, out=lambda *_: None, backup_dir=str(pathlib.Path(tmp) / "bk"))
                rows.append((target, res.get("file"), res.get("mem_free")))
        finally:
            vboard.stop(d)
    print("bench_deploy: FLASH_2M_ROMFS virtual board, heap %s (default)" % default_heap(args.micropython))
    print("%-7s %-34s %s" % ("target", "import espconn from", "free heap after the import"))
    for target, where, free in rows:
        print("%-7s %-34s %s bytes" % (target, where, free))


if __name__ == "__main__":
    main()
