"""A Python without TensorFlow, for the commands' tests: on PYTHONPATH, this makes `import tensorflow` (and
importlib's find_spec) fail as on a machine where it is not installed (pip install 'cellseg[jax]')."""

import importlib.abc
import sys


class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoTensorFlow())
