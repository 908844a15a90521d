"""The training plan: settings derived from a dataset's fingerprint, each with its reason (`plan.json`).

Different cells need different handling. The converter's `dataset.json` holds
the training split's fingerprint: frame sizes, foreground and class fractions,
cells per frame, from which the mean cell area and diameter follow. The plan
derives from them what a fixed default would get wrong on some kind of cells:

- `input_scale`: frames are resampled so that the network sees cells between
  CELL_DIAMETERS across (`cellseg.resampling`): smaller cells are enlarged (at
  most MAX_SCALE times), larger ones shrunk; cells in the range are left as
  they are. Prediction resamples each frame the same way. The settings below
  are in the pixels of the resampled frames;
- `patch_size`: a patch holds several cells (three mean cell diameters across),
  from 128 to 256 px and no larger than the frames;
- `class_weight_power`: the classes' weights are `fraction ** -power`
  (`preprocess.softened_weights`); on sparse frames the square root (0.5) still
  weighs thin boundaries tens of times the background, and training swings
  from epoch to epoch, so the power is lowered until no class weighs more
  than `MAX_CLASS_WEIGHT`;
- `foreground_patches`: where fewer than two cells touch a random patch on
  average and cells cover under FEW_PIXELS of the frame, a third of the
  patches are centred on a cell (as nnU-Net oversamples foreground), else
  none. Where cells are few but large (real CHO nuclei: 1.5 a patch, 13.6 % of
  the pixels), centred patches showed the network too little background and
  it painted false cells: SEG 0.874 against 0.902 without them over three
  seeds (docs/QUALITY.md);
- `weight_averaging`: on sparse frames (foreground under SPARSE_FOREGROUND),
  validation and checkpoints use a moving average of the weights (momentum
  WEIGHT_AVERAGING): on sparse synthetic phase contrast at learning rate 1e-3,
  validation Dice fell by up to 0.34 between late epochs without it and by at
  most 0.015 with it (five trainings each). On denser real cells (CHO 13.6 %,
  E. coli 1.9 % foreground) it changed SEG by -0.008 and -0.014, within the
  noise between runs, so it is left off there;
- `overlap_weight`: the weight of the Dice term beside the cross-entropy
  (`--loss=bce_tversky`): 1 where cells cover under FEW_PIXELS of the frames,
  where it steadies sparse training (E. coli colony, 1.9 %: SEG 0.820 with it,
  0.729 without it at the long budget), else 0. On denser cells a Dice term
  over the whole batch is dominated by the large bright cells and gives up the
  dim ones: real CHO nuclei (13.6 %) reached 0.899 without it against 0.846
  with it over two seeds at the long budget (docs/QUALITY.md);
- `min_size`: the smallest object kept, a tenth of the mean cell area (the
  middle of what tuning tries), used by prediction where no tuning was made.

Every setting the user gives (a flag, or a value other than the config's
default in the Python API) overrides its planned value; the plan says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

from cellseg import losses, preprocess, records, run_folder

MIN_PATCH, MAX_PATCH = 128, 256
PATCH_DIAMETERS = 3.0  # cell diameters across a training patch
MAX_CLASS_WEIGHT = 10.0
FOREGROUND_SHARE = 1 / 3
EMPTY_BELOW = 2.0  # cells touching a random patch, on average
FEW_PIXELS = 0.05  # foreground fraction under which cells are rare in the pixels too
MIN_SIZE_OF_CELL = 0.1  # of the mean cell area
# Cell diameters (px) the network sees as they are. Below, interior and boundary classes barely differ;
# above, a cell outgrows the receptive field of a depth-4 U-Net (`model.receptive_radius`: 137 px). Cells of
# 10 and 15 px enlarged to 20 px (as Cellpose rescales to a canonical size) lost 0.03 and 0.02 SEG in
# benchmarks/quality.py (dense synthetic phase contrast, PSC; docs/QUALITY.md): a U-Net trained on the
# dataset itself needs no canonical size, only a workable one.
CELL_DIAMETERS = (8.0, 128.0)
SCALES = (0.25, 2.0)  # the input scale's bounds
SPARSE_FOREGROUND = 0.01  # foreground fraction under which weights are averaged
WEIGHT_AVERAGING = 0.95  # momentum of that average
PLANNED = ("input_scale", "patch_size", "class_weight_power", "foreground_patches", "weight_averaging",
           "overlap_weight")  # the config fields a plan sets


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What the plan is derived from, read from a converted dataset's `dataset.json` (its training split)."""

    frame_height: int  # the smallest frame's sides
    frame_width: int
    foreground_fraction: float
    cells_per_frame: float
    class_fractions: tuple[float, ...]  # background, interior, boundary

    @classmethod
    def of(cls, description: dict) -> Fingerprint:
        sizes = description.get("frame_sizes") or [[0, 0]]
        height, width = min(sizes, key=lambda size: size[0] * size[1])
        return cls(int(height), int(width), float(description.get("foreground_fraction", 0.0)),
                   float(description.get("cells_per_frame", 0.0)),
                   tuple(float(f) for f in description.get("class_fractions", ())))

    @property
    def cell_area(self) -> float:
        """The mean cell area in px: the foreground over the cells of a frame (0 without cells)."""
        if self.cells_per_frame <= 0:
            return 0.0
        return self.foreground_fraction * self.frame_height * self.frame_width / self.cells_per_frame

    @property
    def cell_diameter(self) -> float:
        """The diameter of a disc of the mean cell area."""
        return 2.0 * math.sqrt(self.cell_area / math.pi)

    def describe(self) -> str:
        return (f"frames {self.frame_height} x {self.frame_width} px, foreground {self.foreground_fraction:.1%}, "
                f"{self.cells_per_frame:.1f} cells a frame, mean cell area {self.cell_area:.0f} px "
                f"(diameter {self.cell_diameter:.0f} px)")


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    value: float | int
    reason: str
    given: bool = False  # the user's value, which overrides the planned one
    planned: float | int | None = None  # what the plan would have chosen, when given


def input_scale(fingerprint: Fingerprint) -> tuple[float, str]:
    """The scale that brings the mean cell diameter into CELL_DIAMETERS (1 inside it, or without cells)."""
    diameter = fingerprint.cell_diameter
    low, high = CELL_DIAMETERS
    if not diameter or low <= diameter <= high:
        return 1.0, f"cells {diameter:.0f} px across, within {low:g}-{high:g} px: frames as they are"
    scale = round(min(max(low / diameter if diameter < low else high / diameter, SCALES[0]), SCALES[1]), 3)
    return scale, (f"cells {diameter:.0f} px across, outside {low:g}-{high:g} px: frames resampled to "
                   f"{diameter * scale:.0f} px cells (bounded to {SCALES[0]:g}-{SCALES[1]:g}), in training and "
                   "prediction")


def patch_size(fingerprint: Fingerprint, depth: int, scale: float = 1.0) -> tuple[int, str]:
    stride = 2**depth
    diameter = fingerprint.cell_diameter * scale
    wanted = max(MIN_PATCH, PATCH_DIAMETERS * diameter)
    side = min(MAX_PATCH, stride * math.ceil(wanted / stride))
    smallest = stride * max(1, int(min(fingerprint.frame_height, fingerprint.frame_width) * scale) // stride)
    side = max(stride, min(side, smallest))
    return side, (f"{PATCH_DIAMETERS:g} cell diameters ({diameter:.0f} px each), within "
                  f"{MIN_PATCH}-{MAX_PATCH} px and the frames")


def class_weight_power(description: dict, target: str) -> tuple[float, str]:
    """The highest power up to the default (0.5) at which no class of `target` weighs more than MAX_CLASS_WEIGHT."""
    default = preprocess.CLASS_WEIGHT_POWER
    heaviest = max(records.class_weights(description, target, default))
    if heaviest <= MAX_CLASS_WEIGHT:
        return default, f"the default; its heaviest class weighs {heaviest:.1f} (at most {MAX_CLASS_WEIGHT:g})"
    low, high = 0.0, default
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if max(records.class_weights(description, target, middle)) <= MAX_CLASS_WEIGHT \
            else (low, middle)
    power = round(low, 3)
    return power, (f"softened from {default:g}, where the heaviest class would weigh {heaviest:.1f}, so that none "
                   f"weighs more than {MAX_CLASS_WEIGHT:g} (sparse frames)")


def foreground_patches(fingerprint: Fingerprint, side: int, scale: float = 1.0) -> tuple[float, str]:
    """A third of the patches centred on a cell where fewer than EMPTY_BELOW cells touch a random patch on
    average (a fifth of random patches or more then hold no cell, more where cells gather in colonies) and
    cells cover under FEW_PIXELS of the frames. `side` is in the pixels of frames at `scale`."""
    area, fraction = fingerprint.cell_area, fingerprint.foreground_fraction
    touching = fraction / area * (side / scale + fingerprint.cell_diameter) ** 2 if area else 0.0
    if touching >= EMPTY_BELOW:
        return 0.0, f"{touching:.1f} cells touch a random {side} px patch on average"
    few = f"{touching:.2f} cells touch a random {side} px patch on average (under {EMPTY_BELOW:g})"
    if fraction >= FEW_PIXELS:
        return 0.0, (f"{few}, but cells cover {fraction:.1%} of the pixels (at least {FEW_PIXELS:.0%}): patches at "
                     "random places, which show the background as it is")
    return round(FOREGROUND_SHARE, 3), (f"{few} and cover {fraction:.1%} of the pixels (under {FEW_PIXELS:.0%}): a "
                                        "third are centred on a cell")


def weight_averaging(fingerprint: Fingerprint) -> tuple[float, str]:
    """WEIGHT_AVERAGING on sparse frames (foreground under SPARSE_FOREGROUND), else 0 (off)."""
    fraction = fingerprint.foreground_fraction
    if fraction < SPARSE_FOREGROUND:
        return WEIGHT_AVERAGING, (f"foreground {fraction:.1%} (under {SPARSE_FOREGROUND:.0%}): validation and "
                                  "checkpoints use a moving average of the weights, which keeps sparse training "
                                  "from swinging between epochs")
    return 0.0, f"foreground {fraction:.1%} (at least {SPARSE_FOREGROUND:.0%}): the weights as trained"


def overlap_weight(fingerprint: Fingerprint, loss: str) -> tuple[float, str]:
    """1 (the Dice term beside the cross-entropy) where cells cover under FEW_PIXELS of the frames, else 0
    (cross-entropy alone); planned only for the default loss, bce_tversky (the overlap-only losses need it)."""
    if loss != losses.Config.loss:
        return 1.0, f"--loss={loss}: the weight as it is"
    fraction = fingerprint.foreground_fraction
    if fraction < FEW_PIXELS:
        return 1.0, (f"cells cover {fraction:.1%} of the pixels (under {FEW_PIXELS:.0%}): cross-entropy and the "
                     "Dice term, which steadies training where cells are rare in the pixels")
    return 0.0, (f"cells cover {fraction:.1%} of the pixels (at least {FEW_PIXELS:.0%}): cross-entropy alone, "
                 "which keeps dim cells that a Dice term over the batch gives up")


@dataclasses.dataclass(frozen=True)
class Plan:
    fingerprint: Fingerprint
    settings: tuple[Setting, ...]

    def value(self, name: str):
        return next(s.value for s in self.settings if s.name == name)

    def lines(self) -> list[str]:
        """The plan as the training log prints it: each setting, its value and its reason (or that it was given)."""
        lines = [f"plan from the training split: {self.fingerprint.describe()}"]
        for s in self.settings:
            lines.append(f"  {s.name} {s.value:g}: " + (f"given (planned {s.planned:g})" if s.given else s.reason))
        return lines

    def to_dict(self) -> dict:
        return {"fingerprint": {**dataclasses.asdict(self.fingerprint), "cell_area": self.fingerprint.cell_area,
                                "cell_diameter": self.fingerprint.cell_diameter},
                "settings": {s.name: {"value": s.value, "reason": s.reason, "given": s.given,
                                      **({"planned": s.planned} if s.given else {})} for s in self.settings}}

    def write(self, model_dir: str) -> None:
        with open(os.path.join(model_dir, run_folder.PLAN), "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)


def make(config, description: dict, given: set[str] | None = None):
    """(the config with every planned value set that `given` does not name, the plan), from a converted
    dataset's `dataset.json` content (`records.read_description`).

    `given`: the names of the settings the user gave; None takes those whose value
    differs from the config's default (the Python API).
    """
    fingerprint = Fingerprint.of(description)
    flat = config.flat()
    if given is None:
        defaults = dict(type(config).flat_defaults())
        given = {name for name in PLANNED if flat[name] != defaults[name]}
    scale, scale_reason = input_scale(fingerprint)
    if "input_scale" in given:
        scale = flat["input_scale"]
    side, side_reason = patch_size(fingerprint, flat["depth"], scale)
    power, power_reason = class_weight_power(description, config.target)
    share, share_reason = foreground_patches(fingerprint, flat["patch_size"] if "patch_size" in given else side,
                                             scale)
    planned = {"input_scale": input_scale(fingerprint), "patch_size": (side, side_reason),
               "class_weight_power": (power, power_reason), "foreground_patches": (share, share_reason),
               "weight_averaging": weight_averaging(fingerprint),
               "overlap_weight": overlap_weight(fingerprint, flat["loss"])}
    settings = [Setting(name, flat[name], reason, True, value) if name in given else Setting(name, value, reason)
                for name, (value, reason) in planned.items()]
    area = fingerprint.cell_area * scale**2
    settings.append(Setting("min_size", round(MIN_SIZE_OF_CELL * area),
                            f"a tenth of the mean cell area ({area:.0f} px at the input scale), where no tuning "
                            "was made"))
    plan = Plan(fingerprint, tuple(settings))
    return type(config).from_flat(**{**flat, **{s.name: s.value for s in settings if s.name in PLANNED}}), plan


def read(model_dir: str) -> dict | None:
    """A run folder's plan.json as a dict, None when it has none; ValueError naming the file when unreadable."""
    path = os.path.join(model_dir, run_folder.PLAN)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable plan ({error}); train again, or remove it") from None


def planned_value(model_dir: str, name: str, default=None):
    """A setting's value in a run folder's plan.json; `default` without a plan or without that setting."""
    settings = (read(model_dir) or {}).get("settings", {})
    return settings.get(name, {}).get("value", default)
