"""BioImage Model Zoo packages: the portable network, the package validated and tested, predicted from."""

import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from cellseg import model_zoo, predict, run_folder, segmenter, tiff


@pytest.mark.parametrize("shape", [(64, 96), (128, 128)])
def test_the_portable_network_computes_cellseg_s_outputs_at_any_size(shape):
    keras.utils.set_random_seed(2)
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="three_class")
    net(np.zeros((1, 32, 32, 1), np.float32))
    net.unet.set_weights([w + np.random.default_rng(i).normal(0, 0.1, w.shape).astype(w.dtype)
                          for i, w in enumerate(net.unet.get_weights())])  # not the initial zeros and ones
    frames = np.random.default_rng(0).random((2, *shape, 1), np.float32)
    expected = segmenter.output_model(net, shape).predict_on_batch(frames)
    portable = model_zoo.portable_network(net)
    assert not any(isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation == "bilinear"
                   for layer in portable.layers[2].layers)
    got = np.moveaxis(portable.predict_on_batch(np.moveaxis(frames, -1, 1)), 1, -1)
    np.testing.assert_allclose(got, expected, atol=2e-5)


@pytest.fixture(scope="module")
def run_dir(fluo_records, tmp_path_factory):
    """A run folder as training leaves it: best.keras, postprocess.json, metrics.json naming its records."""
    folder = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(4)
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="three_class")
    net.compile(optimizer="adam")
    net(np.zeros((1, 32, 32, 1), np.float32))
    os.makedirs(folder / "checkpoints")
    net.save(folder / run_folder.BEST)
    (folder / run_folder.POSTPROCESS).write_text(json.dumps({
        "target": "three_class", "mask_threshold": 0.4, "seed_threshold": 0.3, "min_size": 3, "fill_holes": True}))
    (folder / run_folder.METRICS).write_text(json.dumps({"records_dir": fluo_records, "validation": {"dice": 0.5}}))
    return str(folder)


@pytest.fixture(scope="module")
def package(run_dir, fluo_dataset, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("package") / "tiny.zip")
    status = model_zoo.export(run_dir, path, str(fluo_dataset / "02" / "t001.tif"))
    return path, status


def test_the_command_writes_a_package_that_passes_the_spec_and_bioimageio_core_s_model_test(package, run_dir,
                                                                                            fluo_dataset, tmp_path):
    _, status = package
    assert status == "valid-format"  # the best a format check gives; "passed" is the model test's
    # In a process of its own: bioimageio.core changes process-wide TensorFlow settings as it tests.
    done = export_command(f"--model={run_dir}", f"--output={tmp_path / 'tiny.zip'}",
                          f"--test_image={fluo_dataset / '02' / 't001.tif'}", "--check")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"wrote {tmp_path / 'tiny.zip'}" in done.stdout and "bioimageio.spec: valid-format" in done.stdout
    assert "bioimageio.core model test: passed" in done.stdout
    assert "━" not in done.stdout + done.stderr  # the model test's predictions print no progress bars
    tested = [line.split()[-1].strip("()") for line in done.stdout.splitlines() if "Reproduce test outputs" in line]
    assert sorted(tested) == ["keras_v3", "onnx", "tensorflow_saved_model_bundle"], done.stdout


def test_predicting_with_the_package_gives_the_run_folder_s_labels(package, run_dir, fluo_dataset, tmp_path):
    path, _ = package
    loaded = predict.load_model(path)
    assert loaded.target == "three_class" and loaded.postprocess["mask_threshold"] == 0.4
    from_package = predict.run_prediction(str(fluo_dataset / "02"), path, str(tmp_path / "package"))
    from_run = predict.run_prediction(str(fluo_dataset / "02"), run_dir, str(tmp_path / "run"))
    assert from_package["postprocess"] == from_run["postprocess"] and from_package["cells"] == from_run["cells"] > 0
    for name in sorted(os.listdir(tmp_path / "run" / "02_RES")):
        if name.endswith(".tif"):
            np.testing.assert_array_equal(tiff.read(tmp_path / "package" / "02_RES" / name),
                                          tiff.read(tmp_path / "run" / "02_RES" / name))


def test_the_onnx_engine_gives_the_keras_weights_labels(package, fluo_dataset, tmp_path):
    path, _ = package
    keras_outputs, onnx_outputs = (predict.load_model(path, engine=engine) for engine in ("keras", "onnx"))
    frames = np.random.default_rng(1).random((2, 96, 64, 1), np.float32)
    np.testing.assert_allclose(onnx_outputs.predict(frames), keras_outputs.predict(frames), atol=1e-5)
    # The command as a user types it, against the Keras weights through the API.
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.predict", f"--model={path}", "--engine=onnx",
                           f"--input={fluo_dataset / '02'}", f"--output_dir={tmp_path / 'onnx'}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    by_keras = predict.run_prediction(str(fluo_dataset / "02"), path, str(tmp_path / "keras"))
    masks = sorted(name for name in os.listdir(tmp_path / "keras" / "02_RES") if name.endswith(".tif"))
    assert masks and by_keras["cells"] > 0
    for name in masks:
        np.testing.assert_array_equal(tiff.read(tmp_path / "onnx" / "02_RES" / name),
                                      tiff.read(tmp_path / "keras" / "02_RES" / name))
    assert (tmp_path / "onnx" / "cells.csv").read_text() == (tmp_path / "keras" / "cells.csv").read_text()


def _with_entry(package: str, copy: str, name: str, data: bytes) -> str:
    """A copy of the zip `package` with the file `name` replaced by `data`."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(copy, "w") as target:
        for info in source.infolist():
            target.writestr(info, data if info.filename == name else source.read(info.filename))
    return copy


def test_a_corrupt_onnx_entry_fails_the_check_and_the_engine_in_one_line(package, run_dir, tmp_path):
    path, _ = package
    onnx_file = "cellseg_unet.onnx"
    whole = zipfile.ZipFile(path).read(onnx_file)
    corrupt = _with_entry(path, str(tmp_path / "corrupt.zip"), onnx_file, whole[:len(whole) // 2])
    done = export_command(f"--model={corrupt}", "--check")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cellseg-export: {corrupt}: bioimageio.core's model test failed: ") and onnx_file in last
    assert "failed" in done.stdout
    with pytest.raises(ValueError) as refused:
        predict.load_model(corrupt, engine="onnx")
    assert str(refused.value).startswith(f"{corrupt}: {onnx_file}: not a readable ONNX model (")
    assert "\n" not in str(refused.value)
    # A package without the entry (an earlier export), and the engine asked of a run folder.
    without = str(tmp_path / "without.zip")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(without, "w") as target:
        for info in source.infolist():
            if info.filename != onnx_file:
                target.writestr(info, source.read(info.filename))
    with pytest.raises(ValueError, match=r"the package has no onnx weights .*--engine=keras$"):
        predict.load_model(without, engine="onnx")
    with pytest.raises(ValueError, match=r"the onnx engine runs a package's onnx weights"):
        predict.load_model(run_dir, engine="onnx")
    package_only = export_command(f"--model={path}", f"--output={tmp_path / 'x.zip'}")
    assert package_only.returncode == 1 and package_only.stderr.strip().splitlines()[-1] == \
        f"cellseg-export: --model={path} is a package: it can only be tested (--check, without --output); " \
        "export takes a run folder"


def export_command(*args):
    return subprocess.run([sys.executable, "-m", "cellseg.cli.export", *args], capture_output=True, text=True)


def test_bad_exports_are_refused_in_one_line(run_dir, tmp_path):
    missing = export_command(f"--model={tmp_path}", f"--output={tmp_path / 'x.zip'}")
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1] == \
        f"cellseg-export: {tmp_path}: not a run folder (no {run_folder.BEST})"
    not_zip = export_command(f"--model={run_dir}", f"--output={tmp_path / 'x.tar'}")
    assert not_zip.returncode == 1 and not_zip.stderr.strip().splitlines()[-1] == \
        f"cellseg-export: {tmp_path / 'x.tar'}: a package is a .zip file"
    assert not os.listdir(tmp_path)


def test_a_run_folder_s_broken_or_missing_files_are_named(run_dir, tmp_path):
    import shutil

    run, package = tmp_path / "run", tmp_path / "x.zip"
    shutil.copytree(run_dir, run)
    best = run / run_folder.BEST
    best.write_bytes(best.read_bytes()[:2000])
    with pytest.raises(ValueError) as refused:
        model_zoo.export(str(run), str(package))
    assert str(refused.value) == f"{best}: not a readable .keras file (truncated or corrupt)"
    shutil.copy(os.path.join(run_dir, run_folder.BEST), best)
    (run / run_folder.POSTPROCESS).write_text("")
    with pytest.raises(ValueError) as refused:
        model_zoo.export(str(run), str(package))
    assert str(refused.value).startswith(f"{run / run_folder.POSTPROCESS}: empty; ")
    (run / run_folder.POSTPROCESS).unlink()
    (run / run_folder.METRICS).unlink()
    with pytest.raises(ValueError) as refused:
        model_zoo.export(str(run), str(package))
    assert str(refused.value) == \
        f"{run}: its metrics.json is missing, so the run's records are unknown; give a test frame (--test_image)"
    assert not package.exists()


def test_an_existing_package_is_kept_unless_overwrite(run_dir, tmp_path):
    earlier = tmp_path / "tiny.zip"
    earlier.write_bytes(b"an earlier package")
    done = export_command(f"--model={run_dir}", f"--output={earlier}")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == \
        f"cellseg-export: {earlier} exists; pass --overwrite to replace it"
    assert earlier.read_bytes() == b"an earlier package"
