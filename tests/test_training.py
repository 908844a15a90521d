import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from cellseg import data, evaluate, targets, training

TINY = dict(patch_size=32, base_filters=4, depth=2, per_replica_batch_size=4, steps_per_epoch=4,
            learning_rate=1e-2, validation_images=2, seed=1, tune_postprocessing=False)


def config(records, model_dir, **overrides):
    return training.Config(records_dir=records, model_dir=str(model_dir), **{**TINY, **overrides})


@pytest.fixture(scope="module")
def run(fluo_records, tmp_path_factory):
    """A tiny 3-epoch run under MirroredStrategy on two logical CPU devices."""
    model_dir = tmp_path_factory.mktemp("run")
    cfg = config(fluo_records, model_dir, epochs=3, cpu_replicas=2, strategy="mirrored", tune_postprocessing=True)
    replicas = []

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            replicas.append(self.model.distribute_strategy.num_replicas_in_sync)

    return cfg, training.train(cfg, extra_callbacks=[Spy()], log=lambda *_: None), replicas


def test_two_replicas_train_and_the_loss_falls(run):
    cfg, result, replicas = run
    assert replicas == [2]
    epochs = training.read_log(cfg.model_dir)
    assert [int(row["epoch"]) for row in epochs] == [0, 1, 2]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert result["epochs_run"] == 3 and 0.0 <= result["validation"]["dice"] <= 1.0
    metrics_json = json.load(open(os.path.join(cfg.model_dir, "metrics.json")))
    assert metrics_json["validation"] == result["validation"]
    assert metrics_json["best_epoch"] == 1 + int(max(epochs, key=lambda r: r["val_dice"])["epoch"])


def test_checkpoint_and_export_predict_the_same(run, fluo_records):
    cfg, _, _ = run
    best = keras.models.load_model(os.path.join(cfg.model_dir, "checkpoints", "best.keras"))
    assert isinstance(best, training.Segmenter)
    images = next(iter(data.validation_dataset(data.open_records(fluo_records), 32, 4)))[0]
    assert best.target == cfg.target == "three_class"  # the default
    from_checkpoint = targets.activate(best.target, best(images, training=False)).numpy()
    assert from_checkpoint.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(from_checkpoint.sum(-1), 1.0, rtol=1e-5)
    exported = tf.saved_model.load(os.path.join(cfg.model_dir, "export"))
    np.testing.assert_allclose(exported.serve(images).numpy(), from_checkpoint, atol=1e-5)
    again = keras.models.load_model(os.path.join(cfg.model_dir, "checkpoints", "best.keras"))
    np.testing.assert_array_equal(targets.activate(again.target, again(images, training=False)).numpy(),
                                  from_checkpoint)


def test_postprocess_json_is_tuned_on_validation_and_used_by_predict(run, fluo_dataset, tmp_path):
    from cellseg import ctc, evaluate, instances, predict, tiff

    cfg, result, _ = run
    tuned = json.load(open(os.path.join(cfg.model_dir, "postprocess.json")))
    assert tuned == result["postprocess"] and tuned["target"] == cfg.target
    assert tuned["frames"] == 4 and 0.0 <= tuned["seg"] <= 1.0
    # Predicting the validation sequence with the run folder reproduces the SEG
    # that tuning reached on the same frames, against the same truth.
    output = predict.run_prediction(str(fluo_dataset / "02"), cfg.model_dir, str(tmp_path))
    assert output["tuned"] and output["postprocess"] == instances.Postprocess.from_dict(tuned).to_dict()
    pairs = [(tiff.read(frame.truth()[0]), tiff.read(tmp_path / "02_RES" / f"mask{frame.index:03d}.tif"))
             for frame in ctc.discover(str(fluo_dataset)).frames if frame.sequence == "02"]
    assert evaluate.score(pairs)["seg"] == pytest.approx(tuned["seg"], abs=1e-9)


def test_tensorboard_holds_scalars_and_validation_images(run):
    cfg, _, _ = run
    board = os.path.join(cfg.model_dir, "tensorboard")
    tags = {}
    for run_name in ("train", "validation", "images"):
        accumulator = event_accumulator.EventAccumulator(os.path.join(board, run_name), size_guidance={"tensors": 0})
        accumulator.Reload()
        tags[run_name] = set(accumulator.Tags()["tensors"])
    assert {"epoch_loss", "epoch_dice", "epoch_learning_rate"} <= tags["train"]
    assert {"epoch_loss", "epoch_dice"} <= tags["validation"]
    image_tag = "validation: image | target | prediction"
    assert image_tag in tags["images"]
    accumulator = event_accumulator.EventAccumulator(os.path.join(board, "images"), size_guidance={"tensors": 0})
    accumulator.Reload()
    events = accumulator.Tensors(image_tag)
    assert [e.step for e in events] == [0, 1, 2]
    encoded = tf.make_ndarray(events[-1].tensor_proto)  # width, height, then PNG-encoded images
    width, height = int(encoded[0]), int(encoded[1])
    assert (width, height) == (3 * 32, 32) and len(encoded) == 2 + 2


def test_a_killed_run_resumes_at_its_next_epoch_with_the_same_step_count(fluo_records, tmp_path):
    class Killed(Exception):
        pass

    class KillAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Killed()

    cfg = config(fluo_records, tmp_path / "resume", epochs=2, validation_images=0)
    with pytest.raises(Killed):
        training.train(cfg, extra_callbacks=[KillAfterFirstEpoch()], log=lambda *_: None)
    seen = {}

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault("first_epoch", epoch)
            seen.setdefault("iterations", int(self.model.optimizer.iterations.numpy()))

        def on_train_end(self, logs=None):
            seen["final_iterations"] = int(self.model.optimizer.iterations.numpy())

    training.train(cfg, extra_callbacks=[Watch()], log=lambda *_: None)
    assert seen == {"first_epoch": 1, "iterations": 4, "final_iterations": 8}
    assert [int(row["epoch"]) for row in training.read_log(cfg.model_dir)] == [0, 1]


def test_step_seeds_differ_by_replica_and_step():
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")][:2])
    with strategy.scope():
        segmenter = training.Segmenter(32, 4, 2, seed=3)
        segmenter.compile(optimizer=keras.optimizers.Adam())
    seeds = lambda: [s.numpy().tolist() for s in strategy.experimental_local_results(  # noqa: E731
        strategy.run(segmenter._step_seed))]
    assert seeds() == [[3 * 1_000_003, 0], [3 * 1_000_003 + 1, 0]]
    segmenter.optimizer.iterations.assign(5)
    assert seeds() == [[3 * 1_000_003, 5], [3 * 1_000_003 + 1, 5]]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "cellseg.train", *args], capture_output=True, text=True)


def predicts_and_evaluates_from_the_command_line(run_dir, target, channels, fluo_dataset, out):
    tuned = json.load(open(run_dir / "postprocess.json"))
    assert tuned["target"] == target
    exported = tf.saved_model.load(str(run_dir / "export"))
    assert exported.serve(tf.zeros([1, 32, 32, 1])).shape == (1, 32, 32, channels)
    predicted = subprocess.run([sys.executable, "-m", "cellseg.predict", f"--model={run_dir}",
                                f"--input={fluo_dataset / '02'}", f"--output_dir={out}", "--tile_size=64",
                                "--overlap=32"], capture_output=True, text=True)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert f"target {target}; post-processing: mask threshold {tuned['mask_threshold']:g}" in predicted.stdout
    assert "tuned on validation (postprocess.json)" in predicted.stdout
    assert sorted(os.listdir(out / "02_RES")) == [f"mask00{t}.tif" for t in range(4)]
    # (cellseg-evaluate's command line is tested in test_evaluate.py; it does not depend on the target.)
    report = evaluate.evaluate(str(out / "02_RES"), str(fluo_dataset / "02_GT" / "SEG"))
    assert report["cellseg"]["frames"] == 2 and report["missing_predictions"] == []


def test_flags_txt_reruns_the_run_and_binary_goes_end_to_end(fluo_records, fluo_dataset, tmp_path):
    first = cli(f"--records_dir={fluo_records}", f"--model_dir={tmp_path / 'a'}", "--epochs=1", "--steps_per_epoch=2",
                "--patch_size=32", "--base_filters=4", "--depth=2", "--per_replica_batch_size=2",
                "--validation_images=0", "--target=binary")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "post-processing (binary) tuned on 4 validation frame(s)" in first.stdout
    predicts_and_evaluates_from_the_command_line(tmp_path / "a", "binary", 1, fluo_dataset, tmp_path / "out")
    flagfile = tmp_path / "a" / "flags.txt"
    assert "--patch_size=32" in flagfile.read_text() and "--records_dir=" in flagfile.read_text()
    again = cli(f"--flagfile={flagfile}", f"--model_dir={tmp_path / 'b'}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "b" / "flags.txt").read_text().replace("/b\n", "/a\n") == flagfile.read_text()
    assert json.load(open(tmp_path / "b" / "metrics.json"))["epochs_run"] == 1


def test_distance_target_goes_end_to_end_from_the_command_line(fluo_records, fluo_dataset, tmp_path):
    # (The default three_class target goes end to end in test_launch.py and make demo.)
    run_dir = tmp_path / "run"
    trained = cli(f"--records_dir={fluo_records}", f"--model_dir={run_dir}", "--target=distance", "--epochs=1",
                  "--steps_per_epoch=3", "--patch_size=32", "--base_filters=4", "--depth=2",
                  "--per_replica_batch_size=4", "--learning_rate=1e-2", "--validation_images=0")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "post-processing (distance) tuned on 4 validation frame(s)" in trained.stdout
    predicts_and_evaluates_from_the_command_line(run_dir, "distance", 2, fluo_dataset, tmp_path / "out")


def test_distance_target_needs_records_with_distance_maps(fluo_records, tmp_path):
    def drop_distances(directory):
        description = json.loads((directory / "dataset.json").read_text())
        description["settings"]["distance_maps"] = False
        (directory / "dataset.json").write_text(json.dumps(description))

    records = bad_records(fluo_records, tmp_path, drop_distances)
    result = cli(f"--records_dir={records}", f"--model_dir={tmp_path / 'run'}", "--target=distance",
                 "--patch_size=32", "--depth=2")
    assert result.returncode != 0 and "holds no distance maps" in result.stderr
    assert "Traceback" not in result.stderr


def bad_records(fluo_records, tmp_path, change):
    copy = tmp_path / "records"
    shutil.copytree(fluo_records, copy)
    change(copy)
    return copy


def set_version(directory):
    description = json.loads((directory / "dataset.json").read_text())
    description["schema_version"] = 7
    (directory / "dataset.json").write_text(json.dumps(description))


@pytest.mark.parametrize("case, make, extra, message", [
    ("no dataset.json", lambda d: os.remove(d / "dataset.json"), [], "no dataset.json"),
    ("no shards", lambda d: [os.remove(p) for p in d.glob("train-*")], [], "no train-"),
    ("unknown schema", set_version, [], "schema version 7"),
    ("patch larger than frames", None, ["--patch_size=256"], "larger than every frame"),
    ("patch not a multiple", None, ["--patch_size=40"], "multiple of 2**depth = 16"),
    ("batch size", None, ["--per_replica_batch_size=0"], "per_replica_batch_size"),
    ("strategy", None, ["--strategy=tpu"], "strategy"),
    ("target", None, ["--target=stardist"], "target"),
])
def test_bad_input_exits_non_zero_with_one_clear_line(fluo_records, tmp_path, case, make, extra, message):
    records = bad_records(fluo_records, tmp_path, make) if make else fluo_records
    result = cli(f"--records_dir={records}", f"--model_dir={tmp_path / 'run'}", *extra)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_chief_and_worker_count_come_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert training.is_chief() and training.worker_count() == 1 and training.worker_index() == 0
    cluster = {"worker": ["localhost:1", "localhost:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not training.is_chief() and training.worker_count() == 2 and training.worker_index() == 1
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert training.is_chief()
    with_chief = {"chief": ["localhost:0"], **cluster}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert not training.is_chief() and training.worker_count() == 3 and training.worker_index() == 1
