"""firmware/manifest*.py through MicroPython's own manifest tooling, then mpy-cross.

``tools/manifestfile.py`` (the parser ``makemanifest.py`` runs for every frozen
build) resolves our ``include``/``require``/``package`` against a real
MicroPython checkout, so a board manifest renamed upstream fails here rather
than in a user's ``make``.  Every file the manifest freezes is then compiled as
makemanifest does (``mpy-cross -march=xtensa -s TARGET``).  The C generation
step (mpy-tool.py) needs a firmware build's qstr headers and is not run.

MicroPython's tools are in no PyPI package this project installs (mpremote 1.29
does not ship manifestfile.py), so the test needs a checkout:
``ESPSSL_MICROPYTHON_SRC=/path/to/micropython`` with ``lib/micropython-lib``
populated (``git submodule update --init lib/micropython-lib``).  Without it
the test is skipped, saying so.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from espssl import deploy

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
ENV = "ESPSSL_MICROPYTHON_SRC"


@pytest.fixture(scope="module")
def manifestfile():
    src = os.environ.get(ENV)
    if not src:
        pytest.skip("set %s to a MicroPython checkout (with lib/micropython-lib) to run MicroPython's "
                    "manifest parser on firmware/manifest*.py" % ENV)
    src = Path(src).resolve()
    if not (src / "tools" / "manifestfile.py").is_file():
        pytest.fail("%s=%s has no tools/manifestfile.py" % (ENV, src))
    if not (src / "lib" / "micropython-lib" / "micropython").is_dir():
        pytest.fail("%s: lib/micropython-lib is empty (git submodule update --init lib/micropython-lib)" % src)
    sys.path.insert(0, str(src / "tools"))
    try:
        import manifestfile as mf
    finally:
        sys.path.pop(0)
    port = src / "ports" / "esp8266"
    path_vars = {
        "MPY_DIR": str(src),
        "MPY_LIB_DIR": str(src / "lib" / "micropython-lib"),
        "PORT_DIR": str(port),
        "BOARD_DIR": str(port / "boards" / "ESP8266_GENERIC"),
    }
    return mf, path_vars


def frozen(manifestfile, text_or_path):
    mf, path_vars = manifestfile
    m = mf.ManifestFile(mf.MODE_FREEZE, path_vars)
    m.execute(str(text_or_path))
    return mf, m.files()


def compile_all(mf, files, tmp_path):
    """Compile each frozen .py as makemanifest does; return {target path: .mpy size}."""
    sizes = {}
    for r in files:
        if r.kind != mf.KIND_FREEZE_AS_MPY:
            continue
        out = tmp_path / (r.target_path[:-3] + ".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        with mf.tagged_py_file(r.full_path, r.metadata) as tagged:
            cmd = deploy._mpy_cross_cmd() + ["-o", str(out), "-s", r.target_path, "-march=xtensa"]
            if r.opt is not None:
                cmd.append("-O%d" % r.opt)
            proc = subprocess.run(cmd + [tagged], capture_output=True, text=True)
        assert proc.returncode == 0, "%s: %s" % (r.target_path, proc.stderr or proc.stdout)
        sizes[r.target_path] = out.stat().st_size
    return sizes


def ours(files):
    return sorted(r.target_path for r in files if r.target_path.startswith("espconn/"))


EXPECTED = sorted("espconn/" + p.as_posix() for p in deploy.package_files())


def test_2mib_manifest_builds(manifestfile, tmp_path):
    mf, files = frozen(manifestfile, FIRMWARE / "manifest.py")
    targets = {r.target_path for r in files}
    assert ours(files) == EXPECTED
    # The board's own frozen modules are kept: without them the board does not start.
    assert {"_boot.py", "flashbdev.py", "inisetup.py"} <= targets
    assert any(t.startswith("asyncio/") for t in targets)  # from manifest_2MiB.py
    sizes = compile_all(mf, files, tmp_path)
    espconn = sum(v for k, v in sizes.items() if k.startswith("espconn/"))
    print("frozen: %d files, espconn %d bytes of xtensa .mpy" % (len(sizes), espconn))
    assert espconn > 10000


def test_1mib_manifest_drops_the_networking_bundle(manifestfile, tmp_path):
    mf, files = frozen(manifestfile, FIRMWARE / "manifest_1MiB.py")
    targets = {r.target_path for r in files}
    assert ours(files) == EXPECTED
    assert {"_boot.py", "flashbdev.py", "inisetup.py"} <= targets
    assert not any(t.startswith(("requests/", "mip/", "asyncio/")) or t == "ntptime.py" for t in targets)
    compile_all(mf, files, tmp_path)


def test_the_old_board_manifest_name_is_caught(manifestfile):
    # What firmware/manifest.py used to include: the check fails loudly on such a rename.
    mf, _vars = manifestfile
    with pytest.raises(mf.ManifestFileError, match="manifest.py"):
        frozen(manifestfile, 'include("$(BOARD_DIR)/manifest.py")\npackage("espconn", base_path=%r)' % str(FIRMWARE))
