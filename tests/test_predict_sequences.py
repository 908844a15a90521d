"""The prediction pipeline (`beam_pipelines/predict_sequences.py`) on the DirectRunner: the single process's
results, errors with their reasons, and nothing half written."""

import filecmp
import json
import os
import shutil

import numpy as np
import pytest

from beam_pipelines import predict_sequences as pipeline
from cellseg import predict, synthetic, tiff


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp("plates") / "Fluo-N2DH-PLATE"
    synthetic.write_dataset(root, synthetic.Config(kind="fluo", sequences=3, frames=4, height=64, width=64, seed=5))
    return root


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


def same_folders(left, right) -> list[str]:
    """The files that differ or exist on one side only, below two folders."""
    compared = filecmp.dircmp(left, right)
    found = [*compared.diff_files, *compared.left_only, *compared.right_only]
    for name in compared.common_dirs:
        found += [f"{name}/{d}" for d in same_folders(os.path.join(left, name), os.path.join(right, name))]
    return found


def test_the_pipeline_writes_what_cellseg_predict_writes_for_each_sequence(sequences, run, tmp_path):
    summary = pipeline.run(str(sequences), str(tmp_path / "beam"), pipeline.Settings(run, tta=True))
    assert summary["sequences"] == 3 and summary["frames"] == 12 and summary["errors"] == 0
    assert summary["frames_found"] == 12 and summary["cells"] > 0
    for name in ("01", "02", "03"):
        single = tmp_path / "single" / name
        alone = predict.run_prediction(str(sequences / name), run, str(single), tta=True)
        beam = tmp_path / "beam" / name
        assert sorted(os.listdir(beam)) == [f"{name}_RES", "cells.csv", "tracks.csv"]  # no staging left behind
        assert same_folders(beam, single) == [], name  # masks, res_track.txt, cells.csv, tracks.csv byte for byte
        assert alone["cells"] == len((beam / "cells.csv").read_text().splitlines()) - 1
    # the SEG of the two is then the same too: score one sequence both ways against its truth
    from cellseg import evaluate

    scores = [evaluate.evaluate(str(folder / "02" / "02_RES"), str(sequences / "02_GT" / "SEG"))
              for folder in (tmp_path / "beam", tmp_path / "single")]
    assert scores[0]["cellseg"]["seg"] == scores[1]["cellseg"]["seg"] > 0
    assert scores[0]["tracking"] == scores[1]["tracking"]


def test_an_unreadable_and_a_wrongly_sized_frame_go_to_the_errors_with_their_reasons(sequences, run, tmp_path):
    data = tmp_path / "Fluo-N2DH-PLATE"
    shutil.copytree(sequences, data)
    (data / "02" / "t001.tif").write_bytes(b"not a tiff")
    tiff.write(data / "03" / "t002.tif", np.zeros((40, 40), np.uint16))
    out = tmp_path / "out"
    summary = pipeline.run(str(data), str(out), pipeline.Settings(run, tta=False))
    assert summary["frames"] + summary["errors"] == summary["frames_found"] == 12
    assert summary["errors"] == 2 and summary["sequences"] == 3
    lines = [json.loads(line) for path in out.glob("errors-*.jsonl") for line in path.read_text().splitlines()]
    reasons = {line["path"]: line["reason"] for line in lines}
    assert "not a TIFF" in reasons[str(data / "02" / "t001.tif")]
    assert "40 x 40, but the other frames of its sequence are 64 x 64" in reasons[str(data / "03" / "t002.tif")]
    assert sorted(p.name for p in (out / "02" / "02_RES").glob("mask*.tif")) == ["mask000.tif", "mask002.tif",
                                                                                 "mask003.tif"]
    assert len(list((out / "03" / "03_RES").glob("mask*.tif"))) == 3


def test_a_sequence_that_fails_while_written_leaves_nothing_and_a_rerun_writes_it_whole(sequences, run, tmp_path,
                                                                                       monkeypatch):
    out = tmp_path / "out"
    write_tracks = predict.write_tracks

    def failing(recorder, sequence, *args, **kwargs):
        if sequence == "02":
            raise OSError(28, "No space left on device")  # after its masks and cells.csv were written
        return write_tracks(recorder, sequence, *args, **kwargs)

    monkeypatch.setattr(predict, "write_tracks", failing)
    with pytest.raises(Exception, match="No space left on device"):
        pipeline.run(str(sequences), str(out), pipeline.Settings(run, tta=False))
    assert not (out / "02").exists() or os.listdir(out / "02") == []  # no half-written sequence
    monkeypatch.setattr(predict, "write_tracks", write_tracks)
    summary = pipeline.run(str(sequences), str(out), pipeline.Settings(run, tta=False))
    assert summary["sequences"] == 3 and summary["frames"] == 12
    for name in ("01", "02", "03"):
        assert sorted(os.listdir(out / name)) == [f"{name}_RES", "cells.csv", "tracks.csv"]
        assert len(list((out / name / f"{name}_RES").glob("mask*.tif"))) == 4


def test_sequences_are_found_in_a_root_a_glob_and_stacks(sequences, tmp_path):
    found = pipeline.list_sequences(str(sequences))
    assert [(s.key, s.name, len(s.frames)) for s in found] == [("01", "01", 4), ("02", "02", 4), ("03", "03", 4)]
    assert found[0].frames[0] == ("t000", str(sequences / "01" / "t000.tif"))
    for plate in ("A", "B"):
        shutil.copytree(sequences / "01", tmp_path / "plates" / plate / "01")
    both = pipeline.list_sequences(f"{tmp_path}/plates/*/01")
    assert [(s.key, s.name) for s in both] == [("A/01", "01"), ("B/01", "01")]  # no collision in the output
    from cellseg import stacks

    stacks.write(str(tmp_path / "movie.tif"), [tiff.read(p) for _, p in found[0].frames])
    [stack] = pipeline.list_sequences(str(tmp_path / "movie.tif"))
    assert (stack.key, stack.stack) == ("movie", str(tmp_path / "movie.tif"))
    with pytest.raises(ValueError, match="no sequence found"):
        pipeline.list_sequences(str(tmp_path / "nothing"))
