"""Draw docs/figures/augmentation.png: a frame, its mask and weights, before and after augmentation.

    .venv/bin/python docs/figures/augmentation.py

Runs the real path: synthesise a fluorescence frame, convert it with the Beam
job, read a tile through the tf.data pipeline and warp it with cellseg.augment
(two seeds), so the picture shows what training sees.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from beam_pipelines import ctc_to_tfrecord as convert  # noqa: E402
from cellseg import augment, data, records as records_lib, synthetic  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PANEL, LABEL = 224, 18


def tile():
    with tempfile.TemporaryDirectory() as scratch:
        root = os.path.join(scratch, "Fluo-N2DH-SYNTH")
        synthetic.write_dataset(root, synthetic.Config(kind="fluo", sequences=1, frames=1, height=256, width=256, seed=4))
        out = os.path.join(scratch, "records")
        convert.run([root], convert.Output(out), convert.Settings(val_fraction=0.999))
        records = records_lib.open_records(out)
        return next(iter(data.validation_dataset(records, 256, 1)))


def to_panel(array, low, high):
    scaled = np.clip((array - low) / (high - low), 0, 1)
    return Image.fromarray((scaled * 255).astype(np.uint8)).resize((PANEL, PANEL), Image.BILINEAR)


def main():
    image, mask, weights = tile()
    config = augment.Config(rotation=10, scale=0.1, elastic_sigma=10.0, gamma=0.2, contrast=0.1, brightness=0.05)
    rows = [("original", (image, mask, weights))]
    for seed in (1, 2):
        rows.append((f"augmented, seed {seed}", augment.augment(image, mask, weights, tf.constant([seed, 0]), config)))
    top = float(tf.reduce_max(weights))
    canvas = Image.new("L", (3 * PANEL, len(rows) * (PANEL + LABEL) + LABEL), 255)
    draw = ImageDraw.Draw(canvas)
    for col, name in enumerate(("image", "mask", "weights (w_c + border term)")):
        draw.text((col * PANEL + 4, 2), name, fill=0)
    for row, (title, tensors) in enumerate(rows):
        y = LABEL + row * (PANEL + LABEL)
        draw.text((4, y + 2), title, fill=0)
        arrays = [t.numpy()[0, ..., 0] for t in tensors]
        for col, (array, (low, high)) in enumerate(zip(arrays, ((0, 1), (0, 1), (0, top)))):
            canvas.paste(to_panel(array, low, high), (col * PANEL, y + LABEL))
    path = os.path.join(HERE, "augmentation.png")
    canvas.save(path, optimize=True)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
