import numpy as np
from PIL import Image

from cellseg import ctc, summary


def test_summary_agrees_with_masks_read_by_pillow(fluo_dataset):
    result = summary.summarize(fluo_dataset)
    frames = ctc.discover(fluo_dataset).frames
    masks = [np.array(Image.open(f.gold or f.silver)) for f in frames]
    assert result.frames == 8 and result.frames_per_sequence == {"01": 4, "02": 4}
    assert (result.gold, result.silver) == (4, 8)
    assert result.sizes == ((96, 96),) and result.dtypes == ("uint16",)
    assert result.foreground_fraction == np.mean([(m > 0).mean() for m in masks])
    assert result.cells_per_frame == np.mean([len(np.unique(m)) - 1 for m in masks])
    table = summary.format_summary(result)
    assert "uint16 (16-bit)" in table and "96 x 96" in table
    assert f"{result.foreground_fraction:.1%}" in table


def test_unreadable_files_are_listed_not_fatal(tmp_path):
    (tmp_path / "01").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "01" / "t000.tif")
    (tmp_path / "01" / "t001.tif").write_bytes(b"II*\x00 broken")
    result = summary.summarize(tmp_path)
    assert result.frames == 2 and len(result.unreadable) == 1
    assert "t001.tif" in result.unreadable[0]
    assert "unreadable files" in summary.format_summary(result)


def test_summary_cli_prints_the_table_or_one_clear_error(fluo_dataset, tmp_path):
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "cellseg.cli.summary", f"--input_dir={fluo_dataset}"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "with gold truth      4" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "cellseg.cli.summary", f"--input_dir={tmp_path}"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "not a CTC dataset folder" in bad.stderr and "Traceback" not in bad.stderr
