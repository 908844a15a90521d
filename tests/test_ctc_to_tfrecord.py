import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import segmentation

from beam_pipelines import ctc_to_tfrecord as convert, jobs
from cellseg import ctc, preprocess, schema, synthetic, targets, tiff


def read_records(directory, split):
    files = sorted(glob.glob(os.path.join(directory, f"{split}-*")))
    compression = "GZIP" if files and files[0].endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(files, compression_type=compression).map(schema.decode)
    return [{k: v.numpy() for k, v in record.items()} for record in dataset]


def read_errors(directory):
    lines = []
    for path in sorted(glob.glob(os.path.join(directory, "errors-*.jsonl"))):
        lines += [json.loads(line) for line in open(path) if line.strip()]
    return lines


@pytest.fixture(scope="module")
def converted(fluo_dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("records") / "fluo")
    description = convert.run([str(fluo_dataset)], convert.Output(out),
                              convert.Settings(val_fraction=0.3, distance_maps=True))
    return out, description


def test_counts_add_up_and_every_record_equals_numpy_preprocessing(fluo_dataset, converted):
    out, description = converted
    frames = {(f.sequence, f.index): f for f in ctc.discover(fluo_dataset).frames}
    records = read_records(out, "train") + read_records(out, "val")
    counts = description["counts"]
    assert counts["discovered"] == len(frames) == 8
    assert counts["written"] == len(records) == counts["train"] + counts["val"] == 8
    assert counts["errors"] == counts["skipped"] == 0
    assert sorted((r["sequence"].decode(), int(r["frame"])) for r in records) == sorted(frames)
    for record in records:
        frame = frames[(record["sequence"].decode(), int(record["frame"]))]
        mask_path, truth = frame.truth()
        raw, labels = tiff.read(frame.image), tiff.read(mask_path)
        image, (lo, hi) = preprocess.percentile_stretch(raw, 2.0, 98.0)
        weights = preprocess.border_weight_map(labels, 10.0, 5.0)
        np.testing.assert_array_equal(record["image"][..., 0], schema.dequantize(schema.quantize(image)))
        np.testing.assert_array_equal(record["labels"][..., 0], labels)
        np.testing.assert_array_equal(record["weights"][..., 0], weights.astype(np.float16).astype(np.float32))
        for name, value in zip(("cell_distance", "neighbour_distance"), targets.distance_maps(labels)):
            np.testing.assert_array_equal(record[name][..., 0], value.astype(np.float16).astype(np.float32))
        assert record["truth"].decode() == truth == ("gold" if frame.index % 3 == 0 else "silver")
        assert (record["intensity_low"], record["intensity_high"]) == (np.float32(lo), np.float32(hi))
        assert record["dataset"] == b"Fluo-N2DH-SYNTH" and record["source_dtype"] == b"uint16"


def test_dataset_json_describes_the_conversion(fluo_dataset, converted):
    out, description = converted
    on_disk = json.load(open(os.path.join(out, "dataset.json")))
    assert on_disk == description
    assert on_disk["schema_version"] == schema.SCHEMA_VERSION
    assert on_disk["frame_sizes"] == [[96, 96]]
    assert on_disk["truth"] == {"gold": 4, "silver": 4}
    assert on_disk["warnings"] == {"constant_frames": 0}
    assert on_disk["datasets"] == {"Fluo-N2DH-SYNTH": 8}
    assert on_disk["inputs"] == [str(fluo_dataset)]
    train = read_records(out, "train")
    expected = np.mean([(r["labels"] > 0).mean() for r in train])
    assert on_disk["foreground_fraction"] == pytest.approx(expected, rel=1e-9)
    # Class fractions of the three-class target, from scikit-image's boundaries of the stored labels.
    boundary = np.mean([segmentation.find_boundaries(r["labels"][..., 0], mode="inner").mean() for r in train])
    assert on_disk["class_fractions"] == pytest.approx([1 - expected, expected - boundary, boundary], rel=1e-9)
    assert 0 < boundary < expected
    assert on_disk["settings"]["percentiles"] == [2.0, 98.0] and on_disk["settings"]["weight_map"] is True
    assert on_disk["shards"]["compression"] == "none"
    assert glob.glob(os.path.join(out, "train-00000-of-*.tfrecord"))


def test_split_is_the_same_on_a_second_run_and_by_sequence_on_request(fluo_dataset, converted, tmp_path):
    out, _ = converted
    first = {s: {int(r["frame"]) + 100 * int(r["sequence"]) for r in read_records(out, s)} for s in ("train", "val")}
    convert.run([str(fluo_dataset)], convert.Output(str(tmp_path / "again")), convert.Settings(val_fraction=0.3))
    again = {s: {int(r["frame"]) + 100 * int(r["sequence"]) for r in read_records(tmp_path / "again", s)} for s in ("train", "val")}
    assert first == again and first["val"] and first["train"]
    expected_val = {f.index + 100 * int(f.sequence) for f in ctc.discover(fluo_dataset).frames
                    if convert.split_of(f, convert.Settings(val_fraction=0.3)) == "val"}
    assert first["val"] == expected_val
    by_sequence = convert.run([str(fluo_dataset)], convert.Output(str(tmp_path / "seq"), compression="gzip"),
                              convert.Settings(val_sequences=("02",)))
    assert by_sequence["counts"]["val"] == 4
    files = sorted(glob.glob(str(tmp_path / "seq" / "val-*.tfrecord.gz")))
    sequences = {schema.decode(x)["sequence"].numpy() for x in tf.data.TFRecordDataset(files, compression_type="GZIP")}
    assert sequences == {b"02"}


def test_val_sequences_naming_no_sequence_are_refused_before_anything_is_written(fluo_dataset, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="--val_sequences: no sequence 03; found Fluo-N2DH-SYNTH/01, "
                                         "Fluo-N2DH-SYNTH/02"):
        convert.run([str(fluo_dataset)], convert.Output(str(out)), convert.Settings(val_sequences=("02", "03")))
    assert not out.exists()
    # Either spelling of a sequence that exists is taken.
    convert.check_val_sequences(convert.list_dataset(str(fluo_dataset)), ("Fluo-N2DH-SYNTH/02", "01"))


def test_a_constant_frame_is_written_and_counted_as_a_warning(fluo_dataset, tmp_path):
    root = tmp_path / "Fluo-N2DH-SYNTH"
    shutil.copytree(fluo_dataset, root)
    tiff.write(root / "01" / "t001.tif", np.zeros((96, 96), np.uint16))
    description = convert.run([str(root)], convert.Output(str(tmp_path / "out")), convert.Settings())
    assert description["counts"]["written"] == 8 and description["warnings"] == {"constant_frames": 1}
    assert "warning: 1 frame(s) of a single intensity" in convert.format_counts(description)


def test_two_datasets_at_once(fluo_dataset, tmp_path):
    phc = tmp_path / "PhC-C2DL-SYNTH"
    synthetic.write_dataset(phc, synthetic.Config(kind="phc", sequences=1, frames=3, height=64, width=80, seed=5))
    description = convert.run([str(fluo_dataset), str(phc)], convert.Output(str(tmp_path / "both")), convert.Settings())
    assert description["datasets"] == {"Fluo-N2DH-SYNTH": 8, "PhC-C2DL-SYNTH": 3}
    assert sorted(description["frame_sizes"]) == [[64, 80], [96, 96]]
    records = read_records(tmp_path / "both", "train") + read_records(tmp_path / "both", "val")
    assert sorted({r["source_dtype"] for r in records}) == [b"uint16", b"uint8"]
    # Distance maps only on request: these records hold none (decoded as zeros).
    assert description["settings"]["distance_maps"] is False
    assert all(not r["cell_distance"].any() and not r["neighbour_distance"].any() for r in records)
    assert any(r["labels"].any() for r in records)


def test_truth_gold_skips_silver_only_frames_and_counts_them(fluo_dataset, tmp_path):
    description = convert.run([str(fluo_dataset)], convert.Output(str(tmp_path / "gold")), convert.Settings(truth="gold"))
    assert description["counts"]["written"] == 4 and description["counts"]["skipped"] == 4
    assert description["skipped_reasons"] == {"no gold truth": 4}
    assert description["truth"] == {"gold": 4}


@pytest.fixture
def broken_dataset(fluo_dataset, tmp_path):
    """The fluo dataset plus one input of each kind of fault; returns (root, {path: expected reason})."""
    root = tmp_path / "Broken"
    shutil.copytree(fluo_dataset, root)
    rng = np.random.default_rng(0)
    faults = {}

    def frame(t, image=None):
        path = root / "01" / f"t{t:03d}.tif"
        tiff.write(path, image if image is not None else rng.integers(0, 4000, (96, 96)).astype(np.uint16))
        return path

    def mask(t, labels, kind="ST"):
        path = root / f"01_{kind}" / "SEG" / f"man_seg{t:03d}.tif"
        tiff.write(path, labels)
        return path

    labels = np.zeros((96, 96), np.uint16)
    labels[10:20, 10:20] = 1
    frame(10).write_bytes(b"II*\x00" + bytes(200))  # corrupt header
    mask(10, labels)
    faults[str(root / "01" / "t010.tif")] = "t010.tif: unreadable TIFF"
    whole = frame(11).read_bytes()
    (root / "01" / "t011.tif").write_bytes(whole[: len(whole) // 3])  # truncated
    mask(11, labels)
    faults[str(root / "01" / "t011.tif")] = "t011.tif: unreadable TIFF"
    frame(12)
    faults[str(mask(12, labels[:90]))] = "man_seg012.tif: mask is 90 x 96 but its frame"
    pages = [Image.fromarray(np.zeros((96, 96), np.uint8)) for _ in range(3)]
    pages[0].save(root / "01" / "t013.tif", save_all=True, append_images=pages[1:])  # a 3-D stack
    mask(13, labels)
    faults[str(root / "01" / "t013.tif")] = "t013.tif: 3 pages"
    frame(14)
    faults[str(mask(14, labels.astype(np.float32)))] = "man_seg014.tif: mask is float32, expected integer"
    faults[str(frame(15))] = "missing mask: no man_seg015.tif"
    faults[str(mask(16, labels))] = "mask without frame 01/t016.tif"
    return root, faults


def test_each_bad_input_lands_in_errors_with_its_reason_and_good_frames_are_all_written(broken_dataset, tmp_path):
    root, faults = broken_dataset
    out = str(tmp_path / "out")
    description = convert.run([str(root)], convert.Output(out), convert.Settings())
    errors = read_errors(out)
    assert sorted(e["path"] for e in errors) == sorted(faults)
    for error in errors:
        assert faults[error["path"]] in error["reason"], error
    counts = description["counts"]
    assert counts["errors"] == 7 and counts["written"] == 8 and counts["discovered"] == 15
    written = read_records(out, "train") + read_records(out, "val")
    assert sorted((r["sequence"], int(r["frame"])) for r in written) == [(s, t) for s in (b"01", b"02") for t in range(4)]


def test_existing_output_is_not_overwritten_silently(converted, fluo_dataset):
    out, _ = converted
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert.run([str(fluo_dataset)], convert.Output(out), convert.Settings())


def test_non_ctc_input_is_a_layout_error(tmp_path):
    with pytest.raises(ctc.LayoutError, match="not a CTC dataset folder"):
        convert.run([str(tmp_path)], convert.Output(str(tmp_path / "out")), convert.Settings())


def test_unknown_flags_are_found_among_beam_arguments():
    args = ["--runner=DirectRunner", "--direct_num_workers", "2", "--project=p", "--output_dirr=x"]
    assert jobs.unknown_beam_args(args) == ["--output_dirr=x"]


CFFI_TYPES_BUILT_BY_VARS = """
import gc, sys
{imports}
def cffi_types():
    return sum(type(o).__module__ == "_cffi_backend" and type(o).__name__ == "CType" for o in gc.get_objects())
libraries = [m for m in list(sys.modules.values())
             if type(m).__module__ == "_cffi_backend" and type(m).__name__ == "Lib"]
before = cffi_types()
for library in libraries:
    vars(library)  # what Beam's state cache does, through objsize, in each worker thread
print(len(libraries), cffi_types() - before)
"""


@pytest.mark.parametrize("imports, built", [
    ("import cryptography.hazmat.bindings._rust", "some"),  # Beam's cffi library alone: vars() builds types
    ("import beam_pipelines.jobs", "none"),  # the jobs' module has built them on import
])
def test_worker_threads_find_every_cffi_library_already_built(imports, built):
    # cffi 2 builds a library's attributes unlocked on a GIL build; two Beam worker threads doing it
    # at once aborted a conversion. vars() must find nothing left to build once the jobs are imported.
    out = subprocess.run([sys.executable, "-c", CFFI_TYPES_BUILT_BY_VARS.format(imports=imports)],
                         capture_output=True, text=True, check=True).stdout.split()
    libraries, new_types = int(out[0]), int(out[1])
    assert libraries >= 1
    if built == "some":
        assert new_types > 0, "the count sees no type that vars() builds: it could not tell a built library apart"
    else:
        assert new_types == 0, f"vars() built {new_types} cffi types after `{imports}`"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "cellseg.cli.convert", *args],
                          capture_output=True, text=True)


def test_cli_exit_code_follows_max_error_fraction_and_valid_frames_are_written(broken_dataset, tmp_path):
    root, _ = broken_dataset
    strict = cli(f"--input_dir={root}", f"--output_dir={tmp_path / 'strict'}",
                 "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert strict.returncode == 1, strict.stderr
    assert "discovered 15 = written 8" in strict.stdout
    assert "more than --max_error_fraction=0" in strict.stderr
    assert len(read_records(tmp_path / "strict", "train") + read_records(tmp_path / "strict", "val")) == 8
    lenient = cli(f"--input_dir={root}", f"--output_dir={tmp_path / 'lenient'}", "--max_error_fraction=0.5")
    assert lenient.returncode == 0, lenient.stderr
    typo = cli(f"--input_dir={root}", "--compresion=none")
    assert typo.returncode == 1 and "unknown flag(s) --compresion=none" in typo.stderr
