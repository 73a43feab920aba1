"""espssl deploy into ROMFS, and the flash guard, on a virtual board of the FLASH_2M_ROMFS variant.

Real esptool and mpremote (its own `romfs query`/`romfs deploy` CLI too); every
check of "nothing else changed" compares the board's flash image byte for byte
or lists the board's filesystem.
"""

import ast
import hashlib
import inspect
import subprocess
import sys

import pytest

from espssl import deploy, flash, layout, romfs
from espssl.vboard import cli as vboard
from conftest import espssl

pytestmark = [pytest.mark.vboard, pytest.mark.slow]
if "variant" not in inspect.signature(vboard.start).parameters:
    pytest.skip("this virtual board has no FLASH_2M_ROMFS variant (vboard start --variant)", allow_module_level=True)
SECTOR = 4096
ROM = (0xB0000, 0x100000)
USER_FILES = {"/lib/mylib.py": b"X = 1\n", "/lib/umqtt/simple.py": b"# the user's MQTT client\n"}


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    d = tmp_path_factory.mktemp("vboard-romfs")
    port = vboard.start(d, flash="4M", heap="176K", variant="FLASH_2M_ROMFS")
    yield port, d / "flash.bin"
    vboard.stop(d)


@pytest.fixture(autouse=True)
def _isolated(isolated):
    pass


def run(argv, capsys):
    return espssl(argv, capsys)


def mpremote(port, *args):
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port] + list(args),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def board_files(port):
    """{path: sha256} of every file on the board's filesystem (not /rom)."""
    with deploy.Board(port) as b:
        return {p: h for p, h in deploy.remote_hashes(b, "").items() if not p.startswith("/rom/")}


def put_files(port, files):
    with deploy.Board(port) as b:
        for path, data in files.items():
            deploy._mkdirs(b, path.rsplit("/", 1)[0])
            b.t.fs_writefile(path, data)


def outside(image, span):
    return image[: span[0]] + image[span[1]:]


def test_deploy_puts_espconn_in_romfs(board, capsys):
    port, image_file = board
    put_files(port, USER_FILES)
    files_before = board_files(port)
    flash_before = image_file.read_bytes()
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 0, err
    assert "Building a ROMFS image with mpremote" in out and "sha256 verified" in out
    assert "import espconn on the board: ok, from /rom/espconn/__init__.mpy; free heap" in out
    # mpremote's own query sees the image; after a reset espconn comes from /rom.
    q = mpremote(port, "romfs", "query")
    assert "Raw contents: d2:cd:31" in q and "ROMFS image size:" in q
    assert mpremote(port, "exec", "import espconn; print(espconn.__file__)").strip() == "/rom/espconn/__init__.mpy"
    listed = mpremote(port, "fs", "ls", ":/rom/espconn")
    for rel in deploy.package_files():
        assert rel.with_suffix(".mpy").name in listed
    # The user's files and the whole filesystem are untouched; so is all flash outside the ROMFS.
    assert board_files(port) == files_before
    for path, data in USER_FILES.items():
        assert files_before[path] == hashlib.sha256(data).hexdigest()
    flash_after = image_file.read_bytes()
    assert outside(flash_after, ROM) == outside(flash_before, ROM)
    # The partition holds the image mpremote's writer makes of the files deploy compiled.
    size = romfs.image_size(flash_after[ROM[0]: ROM[0] + 8])
    assert flash_after[ROM[0]: ROM[0] + 3] == romfs.ROMFS_HEADER and size < 0x50000
    # Deploying again writes nothing.
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 0, err and "unchanged" in out
    assert image_file.read_bytes()[ROM[0]:ROM[1]] == flash_after[ROM[0]:ROM[1]]


def test_romfs_deploy_leaves_one_copy(board, tmp_path, capsys):
    # A board upgraded from the release before the manifest: its /lib/espconn would be shadowed
    # by /rom (first on sys.path), and come back, stale, once the ROMFS is erased.
    from test_deploy import earlier_release

    port, _image = board
    old = earlier_release(tmp_path)
    put_files(port, old)
    before = board_files(port)
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 0, err
    said = [x for x in out.splitlines() if x.startswith("/lib/espconn held")]
    assert said == ["/lib/espconn held an earlier espssl's copy of espconn, which /rom now shadows (it comes first "
                    "on sys.path): %d files saved to %s and removed, so the board has one copy of espconn, in ROMFS"
                    % (len(old), tmp_path / "backups")], out
    for path, data in old.items():
        saved = list((tmp_path / "backups").glob("file-*-lib-espconn-" + path.rsplit("/", 1)[1]))
        assert len(saved) == 1 and saved[0].read_bytes() == data
    after = board_files(port)
    assert not [p for p in after if p.startswith("/lib/espconn")]  # the folder is gone too
    assert after == {p: h for p, h in before.items() if p not in old}  # nothing else changed
    assert mpremote(port, "exec", "import espconn; print(espconn.__file__)").strip() == "/rom/espconn/__init__.mpy"
    path = ast.literal_eval(mpremote(port, "exec", "import sys; print(repr(sys.path))").strip())
    assert path.index("/rom") < path.index("/lib")  # 1.25+ with a ROMFS image: /lib/espconn is never imported
    # A folder with somebody else's files stays as it is, and the line says why.
    put_files(port, {"/lib/espconn/notes.txt": b"mine\n"})
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 0, err
    assert "Note: /lib/espconn holds files espssl deploy did not put there" in out
    assert board_files(port)["/lib/espconn/notes.txt"] == hashlib.sha256(b"mine\n").hexdigest()
    with deploy.Board(port) as b:
        b.exec("import os\nos.remove('/lib/espconn/notes.txt')\nos.rmdir('/lib/espconn')")


def _heap_line(out):
    """(file, bytes the import took) from deploy's 'import espconn on the board' line."""
    line = next(x for x in out.splitlines() if x.startswith("import espconn on the board: ok"))
    return line.split("from ")[1].split(";")[0], int(line.split(": ")[-1].split()[0])


def test_both_targets_report_heap_after_import(tmp_path_factory, capsys):
    d = tmp_path_factory.mktemp("vboard-romfs-heap")
    port = vboard.start(d, flash="4M", heap="176K", variant="FLASH_2M_ROMFS")
    try:
        rc, out, err = run(["deploy", "--port", port, "--target", "lib"], capsys)
        assert rc == 0, err
        lib_file, lib_used = _heap_line(out)
        rc, out, err = run(["deploy", "--port", port], capsys)  # the ROMFS is found by itself
        assert rc == 0, err
        rom_file, rom_used = _heap_line(out)
        n = len(deploy.package_files())
        assert ("/lib/espconn held the copy of espconn `--target lib` put there, which /rom now shadows (it comes "
                "first on sys.path): %d files saved to" % n) in out
        assert not [p for p in board_files(port) if p.startswith("/lib/espconn")]
        rc, out, err = run(["deploy", "--port", port, "--target", "lib"], capsys)
        assert rc == 0, err
        assert "Note: `import espconn` loads /rom/espconn/__init__.mpy, which comes first on sys.path" in out
    finally:
        vboard.stop(d)
    print("import espconn on the virtual board (64-bit port): /lib %d bytes, ROMFS %d bytes" % (lib_used, rom_used))
    assert lib_file == "/lib/espconn/__init__.mpy" and rom_file == "/rom/espconn/__init__.mpy"
    assert rom_used < lib_used  # the bytecode stays in flash (the unix port still copies some)


def test_foreign_romfs_needs_force_and_is_backed_up(board, tmp_path, capsys):
    port, image_file = board
    other = tmp_path / "theirs"
    other.mkdir()
    (other / "hello.py").write_text("print('hello from ROMFS')\n")
    mpremote(port, "romfs", "deploy", str(other))
    before = image_file.read_bytes()
    theirs = before[ROM[0]: ROM[0] + romfs.image_size(before[ROM[0]: ROM[0] + 8])]
    rc, out, err = run(["deploy", "--port", port], capsys)
    assert rc == 2
    assert "the ROMFS partition holds an image espssl did not write" in err and "--force" in err
    assert "hello" in err
    assert image_file.read_bytes() == before
    rc, out, err = run(["deploy", "--port", port, "--force"], capsys)
    assert rc == 0, err
    saved = sorted((tmp_path / "backups").glob("romfs-0x0B0000-*.romfs"))
    assert len(saved) == 1 and saved[0].read_bytes() == theirs
    assert "mpremote romfs deploy %s" % saved[0] in out
    assert mpremote(port, "exec", "import espconn; print(espconn.__file__)").strip().startswith("/rom/")


def test_flash_ca_refused_across_the_romfs(board, tmp_path, capsys):
    from espconn import binfmt
    from espssl import certs

    port, image_file = board
    key = certs.new_key(1024)
    ca = binfmt.entry("ca.cer", certs.cert_der(certs.make_cert("espssl test CA", key, is_ca=True, days=30)))
    path = tmp_path / "esp_ca_cert.bin"
    path.write_bytes(ca)
    before = image_file.read_bytes()
    for sector in ("0xB0", "0xF0", "0xFF"):
        rc, out, err = run(["flash-ca", "--port", port, "--sector", sector, str(path)], capsys)
        assert rc == 2
        assert "would overwrite the ROMFS partition (0xB0000..0xFFFFF, 320 KiB)" in err
    # Every sector of the partition, through the same guard on one esptool session.
    with flash.Session(port, "no-reset", "soft-reset") as sess:
        assert sess.profile.name == "esp8266-4m-romfs"
        for sector in range(0xB0, 0x100):
            with pytest.raises(layout.LayoutError, match="ROMFS partition"):
                flash.write_region(sess, flash.KIND_CA, sector * SECTOR, ca, out=lambda *a: None)
    assert image_file.read_bytes() == before
    # The defaults lie outside it.
    rc, out, err = run(["flash-ca", "--port", port, str(path)], capsys)
    assert rc == 0, err
    assert "esp8266-4m-romfs profile's default CA sector 0xAE" in out
    after = image_file.read_bytes()
    assert after[0xAE000: 0xAE000 + len(ca)] == ca
    assert outside(after, (0xAE000, 0xAF000)) == outside(before, (0xAE000, 0xAF000))


def test_example_finds_the_romfs_sectors(board, capsys):
    port, _ = board
    rc, out, err = run(["deploy", "--port", port, "--examples"], capsys)
    assert rc == 0, err
    got = mpremote(port, "exec", "import ssl_demo; print(ssl_demo.__file__, ssl_demo.default_sectors())")
    assert got.strip() == "/rom/ssl_demo.mpy (174, 175)"  # 0xAE, 0xAF


def test_flash_firmware_names_and_saves_the_romfs(board, tmp_path, capsys):
    # Last in this module: it erases the board.
    import struct

    port, image_file = board
    before = image_file.read_bytes()
    assert before[ROM[0]: ROM[0] + 3] == romfs.ROMFS_HEADER  # espconn's image from the tests above
    n = struct.unpack_from("<I", before, 0x8FFC)[0]
    fw = tmp_path / "fw.bin"
    fw.write_bytes(before[: n + 16])  # the board's own image
    rc, out, err = run(["flash-firmware", "--port", port, "--backup-dir", str(tmp_path / "bk"), str(fw)], capsys)
    assert rc == 0, err
    assert "a ROMFS image of %d bytes in the ROMFS partition (0xB0000..0xFFFFF, 320 KiB)" % romfs.image_size(
        before[ROM[0]: ROM[0] + 8]) in out
    assert "at sector 0xAE" in out  # the CA bin flash-ca put at the default sector
    saved = list((tmp_path / "bk").glob("flash-0x000000-*.bin"))
    assert len(saved) == 1 and saved[0].read_bytes() == before
    assert image_file.read_bytes()[ROM[0]: ROM[1]] == b"\xff" * (ROM[1] - ROM[0])
