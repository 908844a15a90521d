"""Shared fixtures: tiny seeded synthetic datasets, TensorFlow kept quiet and on the CPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest

from cellseg import synthetic


@pytest.fixture(scope="session")
def fluo_dataset(tmp_path_factory):
    """A 2-sequence, 4-frame, 96 x 96 fluorescence dataset (gold on frames 0 and 3)."""
    root = tmp_path_factory.mktemp("data") / "Fluo-N2DH-SYNTH"
    synthetic.write_dataset(root, synthetic.Config(kind="fluo", sequences=2, frames=4, height=96, width=96, seed=3))
    return root
