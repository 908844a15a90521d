"""The training step (augmentation included) and whole-frame prediction on Keras' JAX backend, beside a plain
PyTorch U-Net of the same shape in the same process, in images/s and ms a frame.

    KERAS_BACKEND=jax python benchmarks/gpu.py [--bases=16,64] [--size=512] [--batch=16] [--steps=20]

Made for a GPU machine that has JAX (and PyTorch) but neither TensorFlow nor
network access: it imports no TensorFlow (cellseg's on-device code is
`keras.ops`, `cellseg/backends/jax.py` holds JAX's steps), and the batch is
held in memory, so the model's step is measured, not an input pipeline.
Precision: bf16 (`mixed_bfloat16`, and `torch.autocast` in bfloat16) on a GPU,
float32 on the CPU, where the benchmark runs too (small shapes, to check it).
PyTorch's rows are left out where it is not installed. The U-Nets: depth 4,
two 3 x 3 convolutions, batch norm and ReLU per block, bilinear upsampling,
three-class outputs; cellseg's step also warps each sample (elastic, rotation,
flips, intensity) and derives its target on the device, PyTorch's trains on
the batch as given. Results go to benchmarks/results/gpu-<device>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # cellseg from the source tree

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from cellseg import losses, metrics, segmenter  # noqa: E402
from timing import StepTimes  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGET = "three_class"


def frames(batch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) [batch, size, size, 1]: bright discs on noise, about 7 % of the pixels."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[:size, :size]
    labels = np.zeros((batch, size, size, 1), np.int32)
    for sample in range(batch):
        for cell in range(1, size * size // 4000 + 2):
            y, x = rng.integers(0, size, 2)
            labels[sample, ((ys - y) ** 2 + (xs - x) ** 2) < 81, 0] = cell
    images = (labels > 0) * 0.6 + rng.normal(0.2, 0.05, labels.shape)
    return images.astype(np.float32), labels


def keras_rates(base: int, size: int, batch: int, steps: int, frame: int) -> dict:
    """cellseg's Segmenter on JAX: training images/s (median step), prediction ms for one frame x frame."""
    images, labels = frames(batch, size)
    net = segmenter.Segmenter(size, base, 4, target=TARGET, class_weights=(1.0, 2.0, 4.0))
    net.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.Config().for_target(TARGET),
                metrics=metrics.pixel_metrics(TARGET))
    timer = StepTimes()
    repeated = steps + 2
    net.fit(np.repeat(images, repeated, 0), np.repeat(labels, repeated, 0),
            sample_weight=np.zeros((batch * repeated, size, size, 1), np.float32), batch_size=batch, epochs=1,
            callbacks=[timer], verbose=0, shuffle=False)
    step = float(np.median(np.diff(timer.times)[1:]))  # the first steps include compilation
    whole = segmenter.output_model(net, frame)
    tile = np.zeros((1, frame, frame, 1), np.float32)
    np.asarray(whole.predict_on_batch(tile))  # compiled
    start = time.perf_counter()
    for _ in range(5):
        np.asarray(whole.predict_on_batch(tile))
    return {"images_per_s": round(batch / step, 1), "predict_ms": round((time.perf_counter() - start) / 5 * 1000, 2)}


def torch_rates(base: int, size: int, batch: int, steps: int, frame: int) -> dict | None:
    """The same U-Net in plain PyTorch (eager), its training images/s and prediction ms; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    from torch import nn

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def block(inputs, filters):
        return nn.Sequential(nn.Conv2d(inputs, filters, 3, padding=1, bias=False),
                             nn.BatchNorm2d(filters, momentum=0.1), nn.ReLU(inplace=True),
                             nn.Conv2d(filters, filters, 3, padding=1, bias=False),
                             nn.BatchNorm2d(filters, momentum=0.1), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [base * 2**level for level in range(5)]
            self.down = nn.ModuleList([block(1, widths[0])] + [block(widths[i - 1], widths[i]) for i in range(1, 5)])
            self.up = nn.ModuleList([block(widths[i + 1] + widths[i], widths[i]) for i in range(4)])
            self.logits = nn.Conv2d(widths[0], 3, 1)

        def forward(self, x):
            skips = []
            for level, down in enumerate(self.down):
                x = down(x if level == 0 else nn.functional.max_pool2d(x, 2))
                skips.append(x)
            for level in range(3, -1, -1):
                x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                x = self.up[level](torch.cat([skips[level], x], 1))
            return self.logits(x)

    images, labels = frames(batch, size)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(device)
    y = torch.from_numpy((labels[..., 0] > 0).astype(np.int64)).to(device)
    net = UNet().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    precision = torch.bfloat16 if device == "cuda" else torch.float32

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    times = []
    for _ in range(steps + 2):
        with torch.autocast(device, dtype=precision, enabled=device == "cuda"):
            loss = nn.functional.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        times.append(time.perf_counter())
    step = float(np.median(np.diff(times)[1:]))
    net.eval()
    tile = torch.zeros((1, 1, frame, frame), device=device)
    with torch.no_grad(), torch.autocast(device, dtype=precision, enabled=device == "cuda"):
        net(tile)
        sync()
        start = time.perf_counter()
        for _ in range(5):
            net(tile)
        sync()
    return {"images_per_s": round(batch / step, 1), "predict_ms": round((time.perf_counter() - start) / 5 * 1000, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", default="16,64", help="base filter counts, comma-separated")
    parser.add_argument("--size", type=int, default=0, help="training patch side (default: 512 on a GPU, 64 on "
                        "the CPU)")
    parser.add_argument("--batch", type=int, default=0, help="batch (default: 16 on a GPU, 2 on the CPU)")
    parser.add_argument("--steps", type=int, default=0, help="measured steps (default: 20 on a GPU, 2 on the CPU)")
    parser.add_argument("--frame", type=int, default=0, help="prediction frame side (default: 1024 on a GPU, 128 "
                        "on the CPU)")
    parser.add_argument("--results_dir", default=RESULTS, help="where gpu-<device>.md and .json go")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        sys.exit(f"gpu.py: runs on Keras' JAX backend; KERAS_BACKEND is {keras.backend.backend()}")
    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    if on_gpu:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    size, batch = args.size or (512 if on_gpu else 64), args.batch or (16 if on_gpu else 2)
    steps, frame = args.steps or (20 if on_gpu else 2), args.frame or (1024 if on_gpu else 128)
    rows = []
    for base in (int(b) for b in args.bases.split(",")):
        for name, rates in (("cellseg, Keras 3 on JAX, fit", keras_rates), ("plain PyTorch, eager", torch_rates)):
            measured = rates(base, size, batch, steps, frame)
            if measured is None:
                print(f"{name}: not installed, left out", file=sys.stderr)
                continue
            rows.append({"model": name, "base_filters": base, **measured})
            print(f"base {base}, {name}: {measured}", file=sys.stderr)
    kind = getattr(device, "device_kind", device.platform)
    slug = "gpu-" + "-".join(re.findall(r"[a-z0-9]+", kind.lower())[:4])
    result = {"device": kind, "platform": device.platform, "devices": jax.device_count(), "jax": jax.__version__,
              "keras": keras.__version__, "precision": "bf16" if on_gpu else "float32", "size": size,
              "batch": batch, "steps": steps, "frame": frame, "cpu": platform.processor() or platform.machine(),
              "date": time.strftime("%Y-%m-%d"), "tensorflow_loaded": "tensorflow" in sys.modules, "rows": rows}
    lines = [f"{kind} ({device.platform}, {jax.device_count()} device(s)), JAX {jax.__version__}, Keras "
             f"{keras.__version__}, {result['precision']}; training: batch {batch} of {size} x {size}, median of "
             f"{steps} steps; prediction: one {frame} x {frame} frame, mean of 5; {result['date']}.", "",
             "| model | base | training img/s | prediction ms |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['model']} | {r['base_filters']} | {r['images_per_s']} | {r['predict_ms']} |" for r in rows]
    os.makedirs(args.results_dir, exist_ok=True)
    with open(os.path.join(args.results_dir, f"{slug}.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    with open(os.path.join(args.results_dir, f"{slug}.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
