"""The commands' shape: flags made from the library's configs, so Python and the command agree."""

import subprocess
import sys

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
