"""The command lines that the README and launch/ show, run through the installed entry points on tiny data.

Each command runs as a user types it: the console script in the environment's
bin folder, in a fresh process, with the user's environment (not the test
session's TensorFlow settings), and every output is checked against what the
command says it wrote.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from cellseg import ctc, predict, tiff

BIN = os.path.dirname(sys.executable)
USER_ENV = {key: value for key, value in os.environ.items()
            if key not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "KERAS_BACKEND")}
USER_ENV["JAX_PLATFORMS"] = "cpu"  # --backend=jax on the CPU, as in CI
TINY_NET = ["--patch_size=32", "--base_filters=4", "--depth=2", "--per_replica_batch_size=2"]


def command(name, *args, ok=True, cwd=None, env=None):
    done = subprocess.run([os.path.join(BIN, f"cellseg-{name}"), *map(str, args)], capture_output=True, text=True,
                          env=env or USER_ENV, cwd=cwd, timeout=600)
    if ok:
        assert done.returncode == 0, f"cellseg-{name} {' '.join(map(str, args))}:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """synth -> convert -> train over two CPU replicas (MirroredStrategy), as the README's steps go."""
    root = tmp_path_factory.mktemp("commands")
    data, records, run = root / "Fluo-N2DH-SYNTH", root / "records", root / "run"
    command("synth", "--kind=fluo", f"--output_dir={data}", "--sequences=2", "--frames=3", "--height=64",
            "--width=64", "--seed=2")
    command("convert", f"--input_dir={data}", f"--output_dir={records}", "--val_sequences=02")
    trained = command("train", f"--records_dir={records}", f"--model_dir={run}", "--epochs=2", "--steps_per_epoch=2",
                      "--cpu_replicas=2", "--strategy=mirrored", *TINY_NET)
    return root, data, records, run, trained


def test_train_over_two_cpu_replicas_from_the_command_line(trained):
    _, _, _, run, done = trained
    assert "2 replica(s) (MirroredStrategy); global batch 4 = 2 per replica x 2" in done.stdout
    assert "cannot split the CPU" not in done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and (run / "checkpoints" / "best.keras").exists()
    flagfile = (run / "flags.txt").read_text()
    assert "--cpu_replicas=2" in flagfile and "--strategy=mirrored" in flagfile
    # the same run again from its flags: resumes after its last epoch, trains nothing more, still succeeds
    again = command("train", f"--flagfile={run / 'flags.txt'}")
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2, again.stdout[-2000:]


WITHOUT_TENSORFLOW = {**USER_ENV, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "without_tensorflow")}


def check_mixed_precision(done, run):
    """--mixed_precision as typed: the log names the policy the devices get (bfloat16 on a CPU), the checkpoint
    records it with float32 weights, and its training and validation losses stay finite."""
    import keras

    assert "mixed precision: mixed_bfloat16 (bfloat16 compute, float32 weights)" in done.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    losses = [float(metrics["final_epoch"]["loss"]), metrics["validation"]["loss"]]
    assert np.isfinite(losses).all(), metrics
    net = keras.saving.load_model(run / "checkpoints" / "best.keras", compile=False)
    assert net.dtype_policy.name == "mixed_bfloat16", net.dtype_policy
    assert all(weight.dtype == "float32" for weight in net.weights)
    # Loaded outside the run, the U-Net inside is rebuilt under the global float32 policy: prediction computes
    # in float32 whatever the run trained in.
    assert {layer.dtype_policy.name for layer in net.unet.layers if layer.weights} == {"float32"}


def test_train_and_predict_on_jax_without_tensorflow_label_as_tensorflow_does(trained, tmp_path):
    """The JAX commands on a Python where TensorFlow cannot be imported (as with pip install 'cellseg[jax]'):
    records read in Python, numpy batches, TensorBoard by its own writer, --mixed_precision in bfloat16; the labels
    equal TensorFlow's."""
    # One device: DataParallel over two host devices trains (by hand, on an idle machine), but XLA's CPU all-reduce
    # aborts after a 40 s rendezvous timeout when the two cores are shared with other work, as in CI.
    _, data, records, _, _ = trained
    run = tmp_path / "jax-run"
    done = command("train", "--backend=jax", f"--records_dir={records}", f"--model_dir={run}", "--epochs=2",
                   "--steps_per_epoch=3", "--learning_rate=1e-2", "--mixed_precision", *TINY_NET,
                   env=WITHOUT_TENSORFLOW)
    assert "1 replica(s) (one cpu device on JAX); global batch 2 = 2 per replica x 1" in done.stdout
    check_mixed_precision(done, run)
    for made in ("plan.json", "postprocess.json", "metrics.json", "flags.txt", "checkpoints/best.keras"):
        assert (run / made).exists(), made
    assert not (run / "export").exists()
    assert ("export/ (a SavedModel for serving) needs TensorFlow, which is not installed here: pip install "
            "'cellseg[tensorflow]'; not written") in done.stdout
    assert "--backend=jax" in (run / "flags.txt").read_text()
    again = command("train", f"--flagfile={run / 'flags.txt'}", env=WITHOUT_TENSORFLOW)  # resumes: nothing more
    assert "(one cpu device on JAX)" in again.stdout and json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    assert list((run / "tensorboard" / "train").glob("*.v2")) and list((run / "tensorboard" / "images").glob("*.v2"))
    labels = {}
    for backend, env in (("jax", WITHOUT_TENSORFLOW), ("tensorflow", USER_ENV)):
        out = tmp_path / backend
        command("predict", f"--backend={backend}", f"--model={run}", f"--input={data / '02'}", f"--output_dir={out}",
                env=env)
        labels[backend] = [tifffile.imread(path) for path in sorted((out / "02_RES").glob("mask*.tif"))]
        assert (out / "02_RES" / "res_track.txt").exists()
    assert len(labels["jax"]) == 3 and all(a.shape == (64, 64) for a in labels["jax"])
    assert any(a.max() > 0 for a in labels["jax"]), "no cells found: the equality below would be empty"
    for on_jax, on_tf in zip(labels["jax"], labels["tensorflow"]):
        np.testing.assert_array_equal(on_jax, on_tf)
    refused = command("train", "--backend=jax", "--strategy=multi_worker", f"--records_dir={records}",
                      f"--model_dir={tmp_path / 'refused'}", ok=False, env=WITHOUT_TENSORFLOW)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == ("cellseg-train: --strategy=multi_worker runs on TensorFlow "
                                                      "only (TF_CONFIG); on JAX, train on one host")
    # What needs TensorFlow says so in one line.
    for name, args in (("convert", [f"--input_dir={data}", f"--output_dir={tmp_path / 'records'}"]),
                       ("export", [f"--model={run}", f"--output={tmp_path / 'model.zip'}"])):
        missing = command(name, *args, ok=False, env=WITHOUT_TENSORFLOW)
        assert missing.returncode == 1 and missing.stderr.strip() == (
            f"cellseg-{name}: it needs TensorFlow, which is not installed here: pip install 'cellseg[tensorflow]'")
    assert not (tmp_path / "records").exists() and not (tmp_path / "model.zip").exists()


def test_one_device_and_auto_strategies_and_planned_settings_given_on_the_command_line(trained, tmp_path):
    """Both strategies, the first with --mixed_precision (bfloat16 on a CPU); the second run also gives
    --input_scale, --foreground_patches, --overlap_weight and --clip_norm as typed: plan.json and flags.txt
    keep them, and prediction resamples the frames by the run's scale and gives labels of the frames' own size."""
    _, data, records, _, _ = trained
    given = ["--input_scale=1.5", "--foreground_patches=0.5", "--overlap_weight=0.5", "--clip_norm=1",
             "--weight_averaging=0.5"]
    for strategy, extra in (("one_device", ["--mixed_precision"]), ("auto", given)):
        done = command("train", f"--records_dir={records}", f"--model_dir={tmp_path / strategy}", "--epochs=1",
                       "--steps_per_epoch=1", f"--strategy={strategy}", "--notune_postprocessing", *TINY_NET, *extra)
        assert "1 replica(s) (OneDeviceStrategy)" in done.stdout
        if strategy == "one_device":
            check_mixed_precision(done, tmp_path / strategy)
    run = tmp_path / "auto"
    settings = json.loads((run / "plan.json").read_text())["settings"]
    assert settings["input_scale"]["value"] == 1.5 and settings["input_scale"]["given"]
    assert settings["foreground_patches"]["value"] == 0.5 and settings["foreground_patches"]["given"]
    assert settings["overlap_weight"]["value"] == 0.5 and settings["overlap_weight"]["given"]
    assert "input_scale 1.5: given" in done.stdout and "overlap_weight 0.5: given" in done.stdout
    flagfile = (run / "flags.txt").read_text()
    assert "--input_scale=1.5" in flagfile and "--clip_norm=1.0" in flagfile and "--weight_averaging=0.5" in flagfile
    assert "--overlap_weight=0.5" in flagfile
    out = tmp_path / "predicted"
    command("predict", f"--model={run}", f"--input={data / '02'}", f"--output_dir={out}", "--notta")
    frames = sorted((data / "02").glob("*.tif"))
    masks = sorted((out / "02_RES").glob("mask*.tif"))
    assert len(masks) == len(frames)
    assert all(tiff.read(m).shape == tiff.read(f).shape for m, f in zip(masks, frames))
    bad = command("train", f"--records_dir={records}", f"--model_dir={tmp_path / 'bad'}", "--input_scale=9",
                  *TINY_NET, ok=False)
    assert bad.returncode != 0 and "flag --input_scale=9: 9.0 is not a number in the range [0, 4]" in bad.stderr


def test_predict_with_tta_evaluate_and_track_again(trained):
    root, data, _, run, _ = trained
    out = root / "predictions"
    command("predict", f"--model={run}", f"--input={data / '02'}", f"--output_dir={out}", "--overlays")
    masks = ctc.masks_by_index(str(out / "02_RES"))
    assert sorted(masks) == [0, 1, 2]
    assert (out / "02_RES" / "res_track.txt").exists() and (out / "overlays" / "lineage.png").exists()
    report = root / "reports" / "evaluation.json"  # a folder that does not exist yet
    scored = command("evaluate", f"--pred={out / '02_RES'}", f"--gt={data / '02_GT' / 'SEG'}", "--baseline=otsu",
                     f"--output_json={report}")
    evaluation = json.loads(report.read_text())
    assert f"{evaluation['cellseg']['seg']:.3f}" in scored.stdout and "otsu" in evaluation
    # cellseg-track on the result: the same masks, one label per track, whatever labels it was given
    tracked = root / "tracked"
    command("track", f"--input={out / '02_RES'}", f"--output_dir={tracked}")
    for index, path in ctc.masks_by_index(str(tracked)).items():
        assert ((tiff.read(path) > 0) == (tiff.read(masks[index]) > 0)).all()


def test_track_the_truth_and_evaluate_it_with_tracking_scores(trained, tmp_path):
    # The truth masks of sequence 02, renamed as a result and tracked: TRA, DET and LNK of a perfect segmentation.
    _, data, _, _, _ = trained
    result = tmp_path / "02_RES"
    result.mkdir()
    for index, path in ctc.masks_by_index(str(data / "02_GT" / "TRA")).items():
        tiff.write_labels(result / ctc.result_name(index), tiff.read(path))
    command("track", f"--input={result}")
    scored = command("evaluate", f"--pred={result}", f"--gt={data / '02_GT' / 'SEG'}",
                     f"--output_json={tmp_path / 'evaluation.json'}")
    tracking = json.loads((tmp_path / "evaluation.json").read_text())["tracking"]
    assert tracking == {"tra": 1.0, "det": 1.0, "lnk": 1.0} and "TRA 1.000" in scored.stdout


def test_predict_a_checkpoint_file_without_tta_and_a_stack(trained):
    root, data, _, run, _ = trained
    frames = [tiff.read(path) for path in ctc.sequence_frames(str(data / "02"))]
    stack = root / "movie.tif"
    tifffile.imwrite(stack, np.stack(frames), photometric="minisblack")
    command("predict", f"--model={run / 'checkpoints' / 'best.keras'}", f"--input={stack}",
            f"--output_dir={root / 'stack_out'}", "--notta")
    result = root / "stack_out" / "movie_RES"
    assert sorted(ctc.masks_by_index(str(result))) == [0, 1, 2] and (result / "res_track.txt").exists()
    labels = root / "labels.tif"
    tifffile.imwrite(labels, np.stack([tiff.read(p) for _, p in sorted(ctc.masks_by_index(str(result)).items())]),
                    photometric="minisblack")
    command("track", f"--input={labels}")
    assert (root / "labels_RES" / "res_track.txt").exists()


def test_export_with_its_check_and_predict_with_the_package(trained):
    root, data, _, run, _ = trained
    package = root / "model.zip"
    checked = command("export", f"--model={run}", f"--output={package}",
                      f"--test_image={data / '02' / 't000.tif'}", "--check")
    assert "model test: passed" in checked.stdout + checked.stderr
    command("predict", f"--model={package}", f"--input={data / '02'}", f"--output_dir={root / 'zip_out'}", "--notta")
    assert sorted(ctc.masks_by_index(str(root / "zip_out" / "02_RES"))) == [0, 1, 2]


def test_summary_of_the_dataset(trained):
    _, data, _, _, _ = trained
    done = command("summary", f"--input_dir={data}")
    assert "01" in done.stdout and "02" in done.stdout


def test_predict_on_beam_from_the_command_line_equals_the_single_process(trained, tmp_path):
    root, data, _, run, _ = trained
    done = command("predict", f"--model={run}", f"--input={data}", f"--output_dir={tmp_path / 'beam'}",
                   "--runner=DirectRunner", "--direct_num_workers=2", "--notta")
    assert "6 frames found = segmented 6 + errors 0; 2 sequence(s)" in done.stdout
    for name in ("01", "02"):  # the single process, as cellseg-predict runs it (tested above)
        predict.run_prediction(str(data / name), str(run), str(tmp_path / name), tta=False)
        for mask in sorted((tmp_path / name / f"{name}_RES").glob("mask*.tif")):
            np.testing.assert_array_equal(tiff.read(tmp_path / "beam" / name / f"{name}_RES" / mask.name),
                                          tiff.read(mask))
        assert (tmp_path / "beam" / name / f"{name}_RES" / "res_track.txt").read_text() == \
            (tmp_path / name / f"{name}_RES" / "res_track.txt").read_text()
    bad = command("predict", f"--model={run}", f"--input={data}", f"--output_dir={tmp_path / 'bad'}",
                  "--runner=DirectRunner", "--no_such_flag=1", ok=False)
    assert bad.stderr.strip().splitlines()[-1] == ("cellseg-predict: unknown flag(s) --no_such_flag=1 (neither a "
                                                   "cellseg-predict nor a Beam option)")
    alone = command("predict", f"--model={run}", f"--input={data}", f"--output_dir={tmp_path / 'bad'}",
                    "--direct_num_workers=2", ok=False)
    assert "Unknown command line flag 'direct_num_workers'" in alone.stderr


