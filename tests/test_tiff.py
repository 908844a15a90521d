import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cellseg import tiff


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_reads_pillow_written_tiffs_keeping_dtype(tmp_path, rng, dtype):
    if dtype == np.float32:
        array = rng.normal(100.0, 30.0, (13, 17)).astype(np.float32)
    else:
        array = rng.integers(0, np.iinfo(dtype).max, (13, 17), endpoint=True).astype(dtype)
    path = tmp_path / "frame.tif"
    Image.fromarray(array).save(path)
    from_path = tiff.read(path)
    from_bytes = tiff.read(path.read_bytes(), name="frame.tif")
    for result in (from_path, from_bytes):
        assert result.dtype == dtype
        np.testing.assert_array_equal(result, array)


def test_full_16_bit_range_survives(tmp_path):
    array = np.array([[0, 1, 4095], [4096, 65534, 65535]], np.uint16)
    tiff.write(tmp_path / "x.tif", array)
    np.testing.assert_array_equal(tiff.read(tmp_path / "x.tif"), array)


def test_only_the_georeferencing_warning_is_silenced(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.tif")
    script = (
        "import warnings, rasterio.errors as e; from cellseg import tiff; "
        f"tiff.read({str(tmp_path / 'x.tif')!r}); tiff.write({str(tmp_path / 'y.tif')!r}, tiff.read({str(tmp_path / 'x.tif')!r})); "
        "warnings.warn('other rasterio warnings still show', e.RasterioDeprecationWarning)"
    )
    result = subprocess.run([sys.executable, "-W", "default", "-c", script], capture_output=True, text=True, check=True)
    assert "NotGeoreferencedWarning" not in result.stderr
    assert "other rasterio warnings still show" in result.stderr


def test_multi_page_tiff_is_refused_by_name(tmp_path):
    path = tmp_path / "stack.tif"
    pages = [Image.fromarray(np.full((8, 8), i, np.uint8)) for i in range(3)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(ValueError, match=r"stack\.tif: 3 pages"):
        tiff.read(path)
    with pytest.raises(ValueError, match=r"stack\.tif: 3 pages"):
        tiff.read(path.read_bytes(), name="stack.tif")


def test_multi_band_tiff_is_refused(tmp_path):
    path = tmp_path / "rgb.tif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"rgb\.tif: 3 bands"):
        tiff.read(path)


def test_truncated_tiff_is_refused(tmp_path, rng):
    whole = tmp_path / "whole.tif"
    tiff.write(whole, rng.integers(0, 65535, (64, 64)).astype(np.uint16))
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.tif: unreadable TIFF"):
        tiff.read(cut)
    with pytest.raises(ValueError, match=r"cut\.tif"):
        tiff.read(data[:100], name="cut.tif")


def test_non_tiff_is_refused(tmp_path):
    png = tmp_path / "frame.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    text = tmp_path / "t000.tif"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"frame\.png: not a TIFF"):
        tiff.read(png)
    with pytest.raises(ValueError, match=r"frame\.png: not a TIFF"):
        tiff.read(png.read_bytes(), name="frame.png")
    with pytest.raises(ValueError, match=r"t000\.tif"):
        tiff.read(text)
    with pytest.raises(ValueError, match=r"absent\.tif"):
        tiff.read(tmp_path / "absent.tif")


def test_label_tiffs_are_uint16_and_read_by_pillow(tmp_path):
    labels = np.array([[0, 1, 2], [300, 65535, 0]], np.int64)
    path = tmp_path / "mask000.tif"
    tiff.write_labels(path, labels)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        np.testing.assert_array_equal(np.array(image), labels)
    with pytest.raises(ValueError, match="0..65535"):
        tiff.write_labels(tmp_path / "big.tif", np.array([[70000]]))


def test_header_reads_size_and_dtype(tmp_path):
    tiff.write(tmp_path / "x.tif", np.zeros((5, 7), np.uint16))
    assert tiff.header(tmp_path / "x.tif") == (5, 7, "uint16")


def test_a_write_to_a_full_disk_raises_enospc_naming_the_file(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full disk does; libtiff, writing through GDAL, printed
    that and returned."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    path = tmp_path / "mask000.tif"
    os.symlink("/dev/full", path)
    with pytest.raises(OSError) as caught:
        tiff.write_labels(path, np.ones((50, 50), np.uint16))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert str(caught.value) == f"[Errno {errno.ENOSPC}] No space left on device: '{path}'"
    assert not os.path.lexists(path)


FILL_THE_DISK = """
import json, os, sys
import numpy as np
from cellseg import tiff
folder, written, failure = sys.argv[1], [], None
for index in range(1, 100):
    path = os.path.join(folder, f"mask{index:03d}.tif")
    try:
        tiff.write_labels(path, np.full((100, 100), index, np.uint16))
    except OSError as error:
        failure = {"errno": error.errno, "filename": error.filename}
        break
    written.append(path)
intact = all(tiff.read(p).min() == tiff.read(p).max() == i for i, p in enumerate(written, start=1))
print(json.dumps({"written": len(written), "intact": bool(intact), "failure": failure,
                  "left": sorted(os.listdir(folder))}))
"""


def test_masks_fill_a_small_disk_whole_until_one_raises_enospc(tmp_path):
    """On a real 256 KiB tmpfs (mounted in a private user and mount namespace): every mask written reads back
    whole, and the one that does not fit raises ENOSPC naming it, leaving no part of it, and libtiff prints
    nothing (it had cut a mask short and returned, or raised without a reason)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    namespace = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                 'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$@"', str(folder)]
    if not shutil.which("unshare") or subprocess.run(namespace + ["true"], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    done = subprocess.run(namespace + [sys.executable, "-c", FILL_THE_DISK, str(folder)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    failed = str(folder / f"mask{result['written'] + 1:03d}.tif")
    assert result["written"] >= 2 and result["intact"]
    assert result["failure"] == {"errno": errno.ENOSPC, "filename": failed}
    assert result["left"] == [f"mask{index:03d}.tif" for index in range(1, result["written"] + 1)]
    assert "No space left" not in done.stderr
