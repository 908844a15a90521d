import configparser
import json
import os
import shlex
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch")
BIN = os.path.dirname(sys.executable) + "/"


def launch(script, *args, timeout=300, env=None):
    return subprocess.run(["bash", os.path.join(LAUNCH, script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "CELLSEG_BIN": BIN, **(env or {})})


def printed(result):
    """The commands a script printed, each split into its words."""
    assert result.returncode == 0, result.stderr[-2000:]
    return [shlex.split(line) for line in result.stdout.splitlines() if line.startswith(BIN)]


def options(command):
    return dict(word[2:].split("=", 1) if "=" in word else (word[2:], True) for word in command if word.startswith("--"))


def test_local_conversion_dry_run_uses_every_core():
    [command] = printed(launch("convert_local.sh", "data/Fluo-N2DH-GOWT1", "--dry_run"))
    assert command[0] == BIN + "cellseg-convert"
    assert options(command) == {"input_dir": "data/Fluo-N2DH-GOWT1", "output_dir": "records/Fluo-N2DH-GOWT1",
                                "runner": "DirectRunner", "direct_running_mode": "multi_processing",
                                "direct_num_workers": str(os.cpu_count())}


WORKER_REQUIREMENTS = os.path.join(os.path.dirname(LAUNCH), "launch", "worker-requirements.txt")


def test_the_workers_install_the_tensorflow_of_setup_cfg_beside_the_wheel():
    # The wheel names no TensorFlow (the jax extra runs without it); Beam's workers convert and predict on it.
    config = configparser.ConfigParser()
    config.read(os.path.join(os.path.dirname(LAUNCH), "setup.cfg"))
    pinned = config["options.extras_require"]["tensorflow"].split()
    assert not any(line.startswith("tensorflow") for line in config["options"]["install_requires"].split())
    lines = [line for line in open(WORKER_REQUIREMENTS).read().splitlines() if line and not line.startswith("#")]
    assert lines == pinned == ["tensorflow>=2.21,<2.22"]


@pytest.mark.parametrize("script, runner, expected", [
    ("convert_dataflow.sh", "DataflowRunner", {"temp_location": "gs://b/records/tmp", "project": "p", "region": "r"}),
    ("convert_flink.sh", "FlinkRunner", {"flink_master": "flink:8081", "environment_type": "DOCKER"}),
    ("convert_spark.sh", "SparkRunner", {"spark_master_url": "spark://spark:7077", "environment_type": "DOCKER"}),
    ("convert_portable.sh", "PortableRunner", {"job_endpoint": "localhost:8099", "environment_type": "DOCKER"}),
])
def test_cluster_conversions_build_the_wheel_and_name_their_runner(script, runner, expected):
    result = launch(script, "gs://b/in", "gs://b/records", "--project=p", "--region=r", "--dry_run",
                    env={"FLINK_MASTER": "flink:8081", "SPARK_MASTER": "spark://spark:7077"})
    build, convert = printed(result)
    assert build[1:4] == ["-m", "pip", "wheel"] and "--no-deps" in build
    found = options(convert)
    assert found["runner"] == runner and found["input_dir"] == "gs://b/in" and found["output_dir"] == "gs://b/records"
    assert found["extra_package"].endswith("dist/cellseg-0.1.0-py3-none-any.whl")
    assert found["requirements_file"] == WORKER_REQUIREMENTS and found["requirements_cache"] == "skip"
    assert expected.items() <= found.items()


@pytest.mark.parametrize("script, runner, expected", [
    ("predict_dataflow.sh", "DataflowRunner", {"temp_location": "gs://b/results/tmp", "project": "p", "region": "r",
                                              "dataflow_service_options": "worker_accelerator=type:nvidia-l4;count:1",
                                              "sdk_container_image": "r-docker.pkg.dev/p/c/sdk:1"}),
    ("predict_flink.sh", "FlinkRunner", {"flink_master": "flink:8081", "environment_type": "DOCKER"}),
    ("predict_spark.sh", "SparkRunner", {"spark_master_url": "spark://spark:7077", "environment_type": "DOCKER"}),
    ("predict_portable.sh", "PortableRunner", {"job_endpoint": "localhost:8099", "environment_type": "DOCKER"}),
])
def test_cluster_predictions_build_the_wheel_and_name_their_runner(script, runner, expected):
    result = launch(script, "gs://b/runs/r", "gs://b/plates", "gs://b/results", "--project=p", "--region=r",
                    "--dry_run", env={"FLINK_MASTER": "flink:8081", "SPARK_MASTER": "spark://spark:7077",
                                      "ACCELERATOR": "type:nvidia-l4;count:1", "CONTAINER": "r-docker.pkg.dev/p/c/sdk:1"})
    build, predict = printed(result)
    assert build[1:4] == ["-m", "pip", "wheel"]
    assert predict[0] == BIN + "cellseg-predict"
    found = options(predict)
    assert found["runner"] == runner and found["model"] == "gs://b/runs/r" and found["input"] == "gs://b/plates"
    assert found["output_dir"] == "gs://b/results" and found["extra_package"].endswith(".whl")
    assert found["requirements_file"] == WORKER_REQUIREMENTS and found["requirements_cache"] == "skip"
    assert expected.items() <= found.items()
    if runner != "DataflowRunner":  # the GPU options are Dataflow's
        assert "dataflow_service_options" not in found


def test_a_prediction_script_without_its_three_paths_says_how_to_call_it():
    done = subprocess.run(["bash", os.path.join(LAUNCH, "predict_flink.sh"), "runs/r", "data/x"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage: ") and "MODEL INPUT OUTPUT" in done.stderr


def test_train_dry_run_uses_every_gpu_with_mixed_precision_and_xla():
    [command] = printed(launch("train.sh", "records/x", "runs/x", "--epochs=3", "--dry_run"))
    assert command[0] == BIN + "cellseg-train"
    assert options(command) == {"records_dir": "records/x", "model_dir": "runs/x", "strategy": "mirrored",
                                "mixed_precision": True, "jit_compile": True, "epochs": "3"}


def test_multi_worker_dry_run_writes_tf_config_for_this_worker():
    result = launch("train_multi_worker.sh", "node1:2222,node2:2222", "1", "gs://b/records", "gs://b/run", "--dry_run")
    [command] = printed(result)
    assert options(command)["strategy"] == "multi_worker" and options(command)["model_dir"] == "gs://b/run"
    line = next(line for line in result.stdout.splitlines() if line.startswith("TF_CONFIG="))
    assert json.loads(line.split("=", 1)[1].strip("'")) == {
        "cluster": {"worker": ["node1:2222", "node2:2222"]}, "task": {"type": "worker", "index": 1}}


def test_tensorboard_serves_on_localhost_by_default():
    [command] = printed(launch("tensorboard.sh", "--dry_run"))
    assert command[0] == BIN + "tensorboard"
    assert options(command) == {"logdir": "runs", "host": "localhost", "port": "6006"}


def test_scripts_without_their_arguments_print_usage():
    for script in ("convert_local.sh", "convert_dataflow.sh", "train.sh", "train_multi_worker.sh"):
        result = launch(script)
        assert result.returncode == 2 and result.stderr.startswith("usage:")


def test_local_conversion_and_training_run_for_real(fluo_dataset, tmp_path):
    records, run = tmp_path / "records", tmp_path / "run"
    converted = launch("convert_local.sh", str(fluo_dataset), str(records), "--val_sequences=02")
    assert converted.returncode == 0, converted.stderr[-2000:]
    assert json.load(open(records / "dataset.json"))["counts"]["written"] == 8
    trained = launch("train.sh", str(records), str(run), "--epochs=1", "--steps_per_epoch=2", "--patch_size=32",
                     "--base_filters=4", "--depth=2", "--per_replica_batch_size=2", "--validation_images=0")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "--mixed_precision" in trained.stdout and "--jit_compile" in trained.stdout
    assert os.path.exists(run / "checkpoints" / "best.keras") and os.path.exists(run / "postprocess.json")
    # The default target's model, trained in mixed precision, segments the held-out sequence.
    from cellseg import predict

    result = predict.run_prediction(str(fluo_dataset / "02"), str(run), str(tmp_path / "out"), 64, 32)
    assert result["target"] == "three_class" and result["tuned"] and result["frames"] == 4


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_together_and_only_the_chief_writes_the_run_folder(one_frame_records, tmp_path):
    hosts = ",".join(f"localhost:{port}" for port in free_ports(2))
    run = tmp_path / "run"
    flags = ["--epochs=1", "--steps_per_epoch=2", "--patch_size=32", "--base_filters=4", "--depth=2",
             "--per_replica_batch_size=2", "--validation_images=1", "--nomixed_precision", "--nojit_compile"]
    env = {**os.environ, "CELLSEG_BIN": BIN}
    workers = [subprocess.Popen(["bash", os.path.join(LAUNCH, "train_multi_worker.sh"), hosts, str(index),
                                 str(one_frame_records), str(run), *flags], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env) for index in (0, 1)]
    deadline = time.monotonic() + 300
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=max(1, deadline - time.monotonic())))
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    chief_out, other_out = outputs[0][0], outputs[1][0]
    assert "2 replica(s) (MultiWorkerMirroredStrategy); global batch 4 = 2 per replica x 2" in chief_out
    # 9 validation tiles: 5 on one host, 4 on the other, padded to as many full batches on both.
    for out, err in outputs:
        assert "validation: 9 tile(s) of 32 px, 3 step(s) per pass on every host" in out
        assert "ran out of data" not in out + err
    assert "validation (best checkpoint, inference mode)" in chief_out
    assert "validation (best checkpoint" not in other_out  # the other worker writes no results
    assert os.path.exists(run / "checkpoints" / "best.keras")
    assert os.path.exists(run / "metrics.json") and os.path.exists(run / "postprocess.json")
    assert os.listdir(run / "tensorboard" / "train") and os.listdir(run / "tensorboard" / "images")
    assert [int(row.split(",")[0]) for row in open(run / "log.csv").read().splitlines()[1:]] == [0]
    # The other worker keeps what it must write apart from the chief's files.
    assert os.listdir(run / "workers") == ["worker-1"]


def serving(port, deadline):
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("localhost", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def test_the_portable_job_api_on_loopback_writes_what_the_direct_runner_writes(fluo_dataset, tiny_run, tmp_path):
    # The protocol of Flink's and Spark's job servers, spoken here by Beam's local job service, with SDK
    # workers from an external worker pool, each started as its own process as on a cluster.
    from beam_pipelines import ctc_to_tfrecord as convert

    job_port, pool_port = free_ports(2)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path / "dist"), os.path.dirname(LAUNCH)],
                           capture_output=True, text=True, env=env)
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    [built] = list((tmp_path / "dist").glob("cellseg-*.whl"))
    services = [subprocess.Popen([sys.executable, "-m", module, flag], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
                for module, flag in (("apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"),
                                     ("apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"))]
    try:
        deadline = time.monotonic() + 120
        assert serving(job_port, deadline) and serving(pool_port, deadline)
        portable_env = {"PATH": env["PATH"], "JOB_ENDPOINT": f"localhost:{job_port}", "ENVIRONMENT_TYPE": "EXTERNAL",
                        "ENVIRONMENT_CONFIG": f"localhost:{pool_port}", "WHEEL": str(built)}
        result = launch("convert_portable.sh", str(fluo_dataset), str(tmp_path / "portable"), "--val_sequences=02",
                        timeout=300, env=portable_env)
        # the prediction job through the same job service and worker pool
        predicted = launch("predict_portable.sh", tiny_run, str(fluo_dataset), str(tmp_path / "predicted"),
                           "--notta", timeout=300, env=portable_env)
    finally:
        for service in services:
            service.kill()
            service.wait()
    [command] = printed(result)
    assert options(command)["runner"] == "PortableRunner" and options(command)["extra_package"] == str(built)
    direct = convert.run([str(fluo_dataset)], convert.Output(str(tmp_path / "direct")),
                         convert.Settings(val_sequences=("02",)))
    portable = json.loads((tmp_path / "portable" / "dataset.json").read_text())
    assert portable["counts"] == direct["counts"] and portable["counts"]["written"] == 8
    for split in ("train", "val"):
        # The same examples (compared as protos: the bytes of a proto map follow no fixed order).
        records = []
        for name in ("portable", "direct"):
            shards = sorted(str(path) for path in (tmp_path / name).glob(f"{split}-*.tfrecord"))
            examples = [tf.train.Example.FromString(raw.numpy()) for raw in tf.data.TFRecordDataset(shards)]
            records.append(sorted(examples, key=lambda e: (e.features.feature["sequence"].bytes_list.value[0],
                                                           e.features.feature["frame"].int64_list.value[0])))
        assert records[0] == records[1] and len(records[0]) == 4
    [command] = printed(predicted)
    assert options(command)["runner"] == "PortableRunner" and options(command)["model"] == tiny_run
    from beam_pipelines import predict_sequences

    direct = predict_sequences.run(str(fluo_dataset), str(tmp_path / "direct-predicted"),
                                   predict_sequences.Settings(tiny_run, tta=False))
    portable = json.loads((tmp_path / "predicted" / "predictions.json").read_text())
    assert {k: portable[k] for k in ("sequences", "frames", "errors", "cells", "tracks")} == \
        {k: direct[k] for k in ("sequences", "frames", "errors", "cells", "tracks")}
    assert portable["frames"] == 8 and portable["cells"] > 0
    for name in ("01", "02"):
        for mask in sorted((tmp_path / "direct-predicted" / name / f"{name}_RES").glob("mask*.tif")):
            assert (tmp_path / "predicted" / name / f"{name}_RES" / mask.name).read_bytes() == mask.read_bytes()
