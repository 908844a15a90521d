import json
import subprocess
import sys

import numpy as np
import pytest

from cellseg import ctc, evaluate, synthetic, tiff


def test_scores_pool_frames_like_the_challenge():
    reference = np.zeros((10, 10), np.uint16)
    reference[1:5, 1:5] = 1
    reference[6:9, 6:9] = 2
    perfect = evaluate.score([(reference, reference), (reference, reference)])
    assert perfect["seg"] == 1.0 and perfect["f1"] == 1.0 and perfect["pixel_dice"] == 1.0
    blank = evaluate.score([(reference, np.zeros_like(reference))])
    assert blank["seg"] == 0.0 and blank["fn"] == 2 and blank["recall"] == 0.0
    assert blank["pixel_accuracy"] == pytest.approx(1 - 25 / 100)


def test_cli_scores_a_result_folder_with_the_otsu_baseline(tmp_path):
    layout = synthetic.write_dataset(tmp_path / "Fluo", synthetic.Config(kind="fluo", sequences=1, frames=4,
                                                                           height=96, width=96, seed=1))
    results = tmp_path / "01_RES"
    results.mkdir()
    for frame in layout.frames:
        tiff.write_labels(results / f"mask{frame.index:03d}.tif", tiff.read(frame.silver))  # silver as a "prediction"
    report_path = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "cellseg.cli.evaluate", f"--pred={results}",
                             f"--gt={tmp_path / 'Fluo' / '01_GT' / 'SEG'}", "--baseline=otsu",
                             f"--output_json={report_path}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "| U-Net (cellseg) |" in result.stdout and "| Otsu + watershed |" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["cellseg"]["frames"] == 2  # gold truth on frames 0 and 3
    assert 0.6 < report["cellseg"]["seg"] < 1.0  # silver differs from gold by a pixel per cell
    assert 0.2 < report["otsu"]["seg"] < 1.0
    missing = subprocess.run([sys.executable, "-m", "cellseg.cli.evaluate", f"--pred={results}",
                              f"--gt={tmp_path / 'nothing'}"], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip().endswith("nothing: no such folder")
    assert "Traceback" not in missing.stderr


def test_a_missing_or_empty_result_folder_is_refused_not_scored(tmp_path):
    truth = tmp_path / "01_GT" / "SEG"
    truth.mkdir(parents=True)
    tiff.write_labels(truth / "man_seg000.tif", np.ones((8, 8), np.uint16))
    with pytest.raises(ValueError, match="--pred=.*missing: no such folder"):
        evaluate.evaluate(str(tmp_path / "missing"), str(truth))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no maskTTT.tif result masks"):
        evaluate.evaluate(str(tmp_path / "empty"), str(truth))
    with pytest.raises(ValueError, match="no man_segTTT.tif reference masks"):
        evaluate.evaluate(str(tmp_path / "empty"), str(tmp_path / "empty"))


def test_tracking_results_the_challenge_s_checker_refuses_are_reported_not_fatal(fluo_dataset, tmp_path):
    # A frame-filling object (a network that has hardly trained) in every frame, as one track:
    # py-ctcmetrics finds it invalid; the segmentation is scored all the same.
    truth = sorted(ctc.masks_by_index(str(fluo_dataset / "02_GT" / "TRA")))
    for index in truth:
        tiff.write_labels(tmp_path / ctc.result_name(index), np.ones((96, 96), np.uint16))
    ctc.write_tracks(tmp_path / ctc.TRACKS, [(1, truth[0], truth[-1], 0)])
    report = evaluate.evaluate(str(tmp_path), str(fluo_dataset / "02_GT" / "SEG"))
    assert report["cellseg"]["frames"] == 2
    assert report["tracking"]["skipped"].startswith(f"py-ctcmetrics finds the tracking results in {tmp_path} invalid")
    assert "tracking not scored: py-ctcmetrics finds" in evaluate.markdown(report)


def tracking_truth_as_result(dataset, folder):
    """The tracking truth of sequence 02 copied as a result folder (masks and res_track.txt): TRA 1."""
    import shutil

    folder.mkdir()
    for index, path in ctc.masks_by_index(str(dataset / "02_GT" / "TRA")).items():
        shutil.copy(path, folder / ctc.result_name(index))
    shutil.copy(dataset / "02_GT" / "TRA" / "man_track.txt", folder / ctc.TRACKS)
    return folder


def test_a_track_running_past_the_last_frame_is_refused_not_scored(fluo_dataset, tmp_path):
    result = tracking_truth_as_result(fluo_dataset, tmp_path / "02_RES")
    perfect = evaluate.evaluate(str(result), str(fluo_dataset / "02_GT" / "SEG"))["tracking"]
    assert perfect == {"tra": 1.0, "det": 1.0, "lnk": 1.0}
    rows = ctc.read_tracks(result / ctc.TRACKS)
    label, first, _, parent = rows[0]
    ctc.write_tracks(result / ctc.TRACKS, [(label, first, 9, parent)] + rows[1:])
    with pytest.raises(ValueError) as refused:
        evaluate.evaluate(str(result), str(fluo_dataset / "02_GT" / "SEG"))
    assert str(refused.value) == f"{result / ctc.TRACKS}:1: track {label} runs to frame 9, past the last frame (3)"


def test_a_malformed_track_file_ends_the_command_in_one_line_naming_it(fluo_dataset, tmp_path):
    import shutil

    result = tracking_truth_as_result(fluo_dataset, tmp_path / "02_RES")
    (result / ctc.TRACKS).write_text("1 0 x 0\n")
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.evaluate", f"--pred={result}",
                           f"--gt={fluo_dataset / '02_GT' / 'SEG'}"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"cellseg-evaluate: {result / ctc.TRACKS}:1: expected four non-negative integers 'label first last parent', "
        "got '1 0 x 0'"]
    truth = tmp_path / "data"
    shutil.copytree(fluo_dataset / "02_GT", truth / "02_GT")
    (truth / "02_GT" / "TRA" / "man_track.txt").write_text("")
    shutil.copy(fluo_dataset / "02_GT" / "TRA" / "man_track.txt", result / ctc.TRACKS)
    with pytest.raises(ValueError, match=r"02_GT/TRA/man_track.txt: empty; the tracking truth needs"):
        evaluate.evaluate(str(result), str(truth / "02_GT" / "SEG"))


def test_an_empty_track_file_is_refused_beside_cells_and_skipped_without_any(fluo_dataset, tmp_path):
    result = tracking_truth_as_result(fluo_dataset, tmp_path / "02_RES")
    (result / ctc.TRACKS).write_text("")
    with pytest.raises(ValueError, match=f"{result / ctc.TRACKS}: empty, but the masks hold cells"):
        evaluate.evaluate(str(result), str(fluo_dataset / "02_GT" / "SEG"))
    for index in ctc.masks_by_index(str(result)):
        tiff.write_labels(result / ctc.result_name(index), np.zeros((96, 96), np.uint16))
    report = evaluate.evaluate(str(result), str(fluo_dataset / "02_GT" / "SEG"))
    assert report["tracking"] == {"skipped": f"{result}: no cell in any mask, no track to score"}
    assert report["cellseg"]["seg"] == 0.0


def test_the_json_report_goes_into_a_folder_made_for_it(tmp_path):
    truth = tmp_path / "01_GT" / "SEG"
    truth.mkdir(parents=True)
    tiff.write_labels(truth / "man_seg000.tif", np.ones((8, 8), np.uint16))
    (tmp_path / "01_RES").mkdir()
    tiff.write_labels(tmp_path / "01_RES" / "mask000.tif", np.ones((8, 8), np.uint16))
    report = tmp_path / "reports" / "new" / "scores.json"
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.evaluate", f"--pred={tmp_path / '01_RES'}",
                           f"--gt={truth}", f"--output_json={report}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(report.read_text())["cellseg"]["seg"] == 1.0
    blocked = subprocess.run([sys.executable, "-m", "cellseg.cli.evaluate", f"--pred={tmp_path / '01_RES'}",
                              f"--gt={truth}", f"--output_json={report / 'x.json'}"], capture_output=True, text=True)
    assert blocked.returncode == 1 and blocked.stderr.strip().splitlines() == [
        f"cellseg-evaluate: {report / 'x.json'}: cannot write the report there ({report} is a file); "
        "the scores are printed above"]
