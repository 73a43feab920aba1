"""Free heap after `import espconn` on a virtual board, deployed to /lib and to ROMFS (figures only).

Starts a FLASH_2M_ROMFS virtual board with its default heap (an ESP8266's
headroom, see README "Virtual board"), deploys espconn with `espssl deploy
--target lib`, then `--target romfs` (each as its own `espssl deploy` process, as
a user runs them), and prints what deploy measured after a soft reset each
time: where espconn was imported from and gc.mem_free() after the import.
Nothing asserted.
Usage: python tools/bench_deploy.py [--micropython PATH]
"""

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tools"))

from espssl.vboard import cli as vboard  # noqa: E402
from espssl.vboard.board import default_heap  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micropython", help="MicroPython unix binary for the board (default: the project's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        d = pathlib.Path(tmp) / "vb"
        cmd = [sys.executable, "-m", "espssl", "vboard", "start", "--dir", str(d), "--flash", "4M",
               "--variant", "FLASH_2M_ROMFS"] + (["--micropython", args.micropython] if args.micropython else [])
        port = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout.strip()
        try:
            rows = []
            for target in ("lib", "romfs"):
                # (as a user runs them: with the board started in this process, the
                # ROMFS write ran out of heap on a 38K 32-bit board, from a shell it does not)
                p = subprocess.run([sys.executable, "-m", "espssl", "deploy", "--port", port, "--target", target,
                                    "--backup-dir", str(pathlib.Path(tmp) / "bk")],
                                   capture_output=True, text=True, timeout=600)
                m = re.search(r"from (\S+); free heap (\d+) bytes after the import", p.stdout)
                if p.returncode or not m:  # a figure of its own: printed, and the bench goes on
                    rows.append((target, "deploy failed:", (p.stderr or p.stdout).strip().splitlines()[-1][:120]))
                    continue
                rows.append((target, m.group(1), "%d bytes" % int(m.group(2))))
        finally:
            vboard.stop(d)
    print("bench_deploy: FLASH_2M_ROMFS virtual board, heap %s (default)" % default_heap(args.micropython))
    print("%-7s %-34s %s" % ("target", "import espconn from", "free heap after the import"))
    for target, where, free in rows:
        print("%-7s %-34s %s" % (target, where, free))


if __name__ == "__main__":
    main()
