"""The plugin's sample data: the synthetic sequences of `cellseg-synth` (and `make demo`), in memory."""

from __future__ import annotations

import numpy as np

from cellseg import synthetic

KINDS = {"fluo": "fluorescence", "phc": "phase contrast"}


def sequence(kind: str, frames: int = 12, size: int = 256, seed: int = 0) -> list[tuple]:
    """Sequence 01 of `cellseg-synth --kind=KIND --seed=SEED` (frames x size x size) as napari layer data: the
    frames as an image layer, the truth (a label per track) as a hidden labels layer."""
    config = synthetic.Config(kind=kind, sequences=1, frames=frames, height=size, width=size, seed=seed)
    images, labels = zip(*synthetic.Simulation(config, 1))
    name = f"synthetic {KINDS[kind]}"
    return [(np.stack(images), {"name": name}, "image"),
            (np.stack(labels), {"name": f"{name} truth", "visible": False}, "labels")]


def fluorescence() -> list[tuple]:
    """Synthetic fluorescent nuclei, 12 frames of 256 x 256, dividing."""
    return sequence("fluo")


def phase_contrast() -> list[tuple]:
    """Synthetic phase-contrast cells (dark with bright halos), 12 frames of 256 x 256, dividing."""
    return sequence("phc")
