"""The commands' shape: flags made from the library's configs, so Python and the command agree."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

CHECK = """
import dataclasses, json
from absl import flags
from cellseg import training
from cellseg.cli import train
flags.FLAGS(["cellseg-train", "--records_dir=r", "--model_dir=m"])
from_flags = train.config_from_flags()
print(json.dumps([from_flags == training.Config(records_dir="r", model_dir="m"),
                  sorted(holder.name for holder in train._FLAGS), sorted(train.HELP)]))
"""


def test_the_command_and_the_python_api_build_the_same_run():
    import json

    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    same, flag_names, helped = json.loads(result.stdout.splitlines()[-1])
    assert same  # augmentation included: the command's defaults are augment.Config's
    assert flag_names == helped and {"rotation", "noise", "patch_size", "target"} <= set(flag_names)


# TensorFlow's C++ log lines and notices, absl's and Beam's INFO lines, warnings of imports on the root logger
# (Beam's "apitools not found"), Keras progress bars.
STARTUP_NOISE = re.compile(r"^[IWE]\d{4} |absl::InitializeLog|oneDNN custom operations|cuda drivers|cuInit|"
                           r"^INFO:|^WARNING:root:|\d+/\d+ \S*━", re.M)


# The commands as a user runs them: without the test session's TF_CPP_MIN_LOG_LEVEL and CUDA_VISIBLE_DEVICES,
# which would hide the very lines these tests look for.
USER_ENV = {key: value for key, value in os.environ.items()
            if key not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}

COMMANDS = ["synth", "summary", "convert", "train", "predict", "evaluate", "track", "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_tensorflow_start_up_lines_unless_verbose(command):
    shown = subprocess.run([sys.executable, "-m", f"cellseg.cli.{command}", "--help"], capture_output=True, text=True,
                           env=USER_ENV)
    assert "Try --helpfull" in shown.stdout  # absl printed the help (and exits with status 1)
    assert not STARTUP_NOISE.search(shown.stdout + shown.stderr), (shown.stdout + shown.stderr)[-2000:]
    if command == "predict":  # TensorFlow's own lines, when asked for
        loud = subprocess.run([sys.executable, "-m", "cellseg.cli.predict", "--help", "--verbose"],
                              capture_output=True, text=True, env=USER_ENV)
        assert STARTUP_NOISE.search(loud.stderr)
    if command == "convert" and importlib.util.find_spec("apitools") is None:  # Beam's warning, when asked for
        loud = subprocess.run([sys.executable, "-m", "cellseg.cli.convert", "--help", "--verbose"],
                              capture_output=True, text=True, env=USER_ENV)
        assert "WARNING:root:apitools not found" in loud.stderr


def test_a_tiny_real_run_of_every_command_prints_no_start_up_lines(tmp_path):
    # synth -> summary -> convert -> train -> predict -> evaluate -> track -> export, as a new user would.
    data, records, run, out = tmp_path / "data", tmp_path / "records", tmp_path / "run", tmp_path / "out"
    steps = {
        "synth": [f"--output_dir={data}", "--sequences=2", "--frames=2", "--height=64", "--width=64", "--seed=1"],
        "summary": [f"--input_dir={data}"],
        "convert": [f"--input_dir={data}", f"--output_dir={records}", "--val_sequences=02"],
        "train": [f"--records_dir={records}", f"--model_dir={run}", "--epochs=1", "--steps_per_epoch=1",
                  "--patch_size=32", "--base_filters=4", "--depth=2", "--per_replica_batch_size=2"],
        "predict": [f"--model={run}", f"--input={data / '02'}", f"--output_dir={out}", "--notta"],
        "evaluate": [f"--pred={out / '02_RES'}", f"--gt={data / '02_GT' / 'SEG'}"],
        "track": [f"--input={out / '02_RES'}", f"--output_dir={tmp_path / 'tracked'}"],
        "export": [f"--model={run}", f"--output={tmp_path / 'model.zip'}"],
    }
    assert sorted(steps) == sorted(COMMANDS)
    for command, args in steps.items():
        done = subprocess.run([sys.executable, "-m", f"cellseg.cli.{command}", *args], capture_output=True, text=True,
                              env=USER_ENV)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        noise = STARTUP_NOISE.search(done.stdout + done.stderr)
        assert not noise, f"cellseg-{command}: {noise.group(0)!r} in\n{(done.stdout + done.stderr)[-3000:]}"


def test_the_backend_is_read_from_the_command_line_and_its_flagfiles(tmp_path):
    from cellseg.cli import keras_backend

    flagfile = tmp_path / "flags.txt"
    flagfile.write_text("--epochs=2\n--backend=jax\n")
    assert keras_backend._given(["--epochs=2"]) is None
    assert keras_backend._given(["--backend", "jax"]) == "jax"
    assert keras_backend._given([f"--flagfile={flagfile}"]) == "jax"
    assert keras_backend._given([f"--flagfile={flagfile}", "--backend=tensorflow"]) == "tensorflow"  # last wins
    assert keras_backend._given(["--backend=tensorflow", f"--flagfile={flagfile}"]) == "jax"
    assert keras_backend._given([f"--flagfile={tmp_path / 'missing'}"]) is None  # absl says what is wrong
    import keras

    assert keras.backend.backend() == "tensorflow"  # this process's
    keras_backend.check("tensorflow")
    with pytest.raises(RuntimeError, match="Keras runs on tensorflow, not --backend=jax"):
        keras_backend.check("jax")
