"""The commands' shape: flags made from the library's configs, so Python and the command agree."""

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


STARTUP_NOISE = re.compile(r"^[IWE]\d{4} |absl::InitializeLog|oneDNN custom operations|cuda drivers|cuInit", re.M)


@pytest.mark.parametrize("command", ["synth", "summary", "convert", "train", "predict", "evaluate", "track"])
def test_help_shows_no_tensorflow_start_up_lines_unless_verbose(command):
    shown = subprocess.run([sys.executable, "-m", f"cellseg.cli.{command}", "--help"], capture_output=True, text=True)
    assert "Try --helpfull" in shown.stdout  # absl printed the help (and exits with status 1)
    assert not STARTUP_NOISE.search(shown.stdout + shown.stderr), (shown.stdout + shown.stderr)[-2000:]
    if command == "predict":  # TensorFlow's own lines, when asked for
        loud = subprocess.run([sys.executable, "-m", "cellseg.cli.predict", "--help", "--verbose"],
                              capture_output=True, text=True)
        assert STARTUP_NOISE.search(loud.stderr)
