"""The training plan: each setting derived from the fingerprint, checked against the rule computed by hand."""

import math

import numpy as np
import pytest

from cellseg import data, records as records_lib, plan, preprocess, training

DENSE = {"frame_sizes": [[443, 512]], "foreground_fraction": 0.141, "cells_per_frame": 9.8,
         "class_fractions": [0.859, 0.12, 0.021]}
SPARSE = {"frame_sizes": [[512, 512]], "foreground_fraction": 0.004, "cells_per_frame": 4.0,
          "class_fractions": [0.996, 0.0025, 0.0015]}


def test_the_fingerprint_gives_the_mean_cell_area_and_diameter():
    fingerprint = plan.Fingerprint.of(DENSE)
    area = 0.141 * 443 * 512 / 9.8  # the foreground of a frame over its cells
    assert fingerprint.cell_area == pytest.approx(area)
    assert math.pi * (fingerprint.cell_diameter / 2) ** 2 == pytest.approx(area)
    assert plan.Fingerprint.of({**DENSE, "cells_per_frame": 0}).cell_area == 0.0  # no cells: no size


@pytest.mark.parametrize("description, depth, expected", [
    (DENSE, 4, 208),  # diameter 64.4 px: 3 diameters = 193 px, up to a multiple of 16
    (SPARSE, 4, 128),  # diameter 26 px: the smallest patch
    ({**DENSE, "frame_sizes": [[100, 120]]}, 4, 96),  # no larger than the frames (a multiple of 16)
    ({**DENSE, "cells_per_frame": 1.0}, 4, 256),  # huge cells: the largest patch
])
def test_the_patch_holds_three_cell_diameters_within_bounds(description, depth, expected):
    side, reason = plan.patch_size(plan.Fingerprint.of(description), depth)
    assert side == expected and side % 2**depth == 0 and "diameters" in reason


def test_class_weights_are_softened_until_none_weighs_more_than_the_bound():
    dense_power, _ = plan.class_weight_power(DENSE, "three_class")
    assert dense_power == preprocess.CLASS_WEIGHT_POWER  # nothing to soften
    power, reason = plan.class_weight_power(SPARSE, "three_class")
    at_default = max(preprocess.softened_weights(SPARSE["class_fractions"], 0.5))
    assert at_default > plan.MAX_CLASS_WEIGHT and "softened" in reason
    assert 0 < power < 0.5
    assert max(preprocess.softened_weights(SPARSE["class_fractions"], power)) <= plan.MAX_CLASS_WEIGHT
    # the highest such power: a little more would break the bound
    assert max(preprocess.softened_weights(SPARSE["class_fractions"], power + 0.005)) > plan.MAX_CLASS_WEIGHT


def test_foreground_patches_where_few_cells_touch_a_patch():
    sparse = plan.Fingerprint.of(SPARSE)
    touching = 4.0 / (512 * 512) * (128 + sparse.cell_diameter) ** 2  # cells a frame / pixels x the reach
    share, reason = plan.foreground_patches(sparse, 128)
    assert touching < 2 and share == pytest.approx(1 / 3, abs=1e-3) and f"{touching:.2f}" in reason
    crowded = plan.Fingerprint.of({**DENSE, "cells_per_frame": 200.0, "foreground_fraction": 0.5})
    assert plan.foreground_patches(crowded, 128)[0] == 0.0
    # few cells a patch, but large ones covering 10 % of the pixels (like the CHO nuclei): random patches
    large = plan.Fingerprint.of({**SPARSE, "cells_per_frame": 2.0, "foreground_fraction": 0.1})
    touching = 0.1 / large.cell_area * (128 + large.cell_diameter) ** 2
    share, reason = plan.foreground_patches(large, 128)
    assert touching < 2 and share == 0.0 and "cover 10.0% of the pixels (at least 5%)" in reason
    # the same fraction just under the bound: centred again
    assert plan.foreground_patches(plan.Fingerprint.of({**SPARSE, "cells_per_frame": 1.0,
                                                        "foreground_fraction": 0.049}), 128)[0] > 0


def test_weights_are_averaged_on_sparse_frames_only():
    momentum, reason = plan.weight_averaging(plan.Fingerprint.of(SPARSE))
    assert momentum == plan.WEIGHT_AVERAGING > 0 and "foreground 0.4% (under 1%)" in reason
    assert plan.weight_averaging(plan.Fingerprint.of(DENSE))[0] == 0.0  # 14.1 %: off
    at_bound = plan.Fingerprint.of({**SPARSE, "foreground_fraction": plan.SPARSE_FOREGROUND})
    assert plan.weight_averaging(at_bound)[0] == 0.0
    config = training.Config(records_dir="r", model_dir="m")
    assert plan.make(config, SPARSE)[0].weight_averaging == plan.WEIGHT_AVERAGING
    off = training.Config(records_dir="r", model_dir="m", weight_averaging=0.5)  # given: kept
    assert plan.make(off, SPARSE)[0].weight_averaging == 0.5
    assert plan.make(config, SPARSE, given={"weight_averaging"})[0].weight_averaging == 0.0


def test_the_dice_term_is_kept_where_cells_are_rare_in_the_pixels_only():
    weight, reason = plan.overlap_weight(plan.Fingerprint.of(SPARSE), "bce_tversky")
    assert weight == 1.0 and "cells cover 0.4% of the pixels (under 5%)" in reason
    weight, reason = plan.overlap_weight(plan.Fingerprint.of(DENSE), "bce_tversky")  # 14.1 %: cross-entropy alone
    assert weight == 0.0 and "cells cover 14.1% of the pixels (at least 5%): cross-entropy alone" in reason
    at_bound = plan.Fingerprint.of({**SPARSE, "foreground_fraction": plan.FEW_PIXELS})
    assert plan.overlap_weight(at_bound, "bce_tversky")[0] == 0.0
    # the overlap-only losses would learn nothing at weight 0: not planned
    assert plan.overlap_weight(plan.Fingerprint.of(DENSE), "dice")[0] == 1.0
    config = training.Config(records_dir="r", model_dir="m")
    assert plan.make(config, DENSE)[0].objective.overlap_weight == 0.0
    assert plan.make(config, SPARSE)[0].objective.overlap_weight == 1.0
    dice = training.Config.from_flat(records_dir="r", model_dir="m", loss="dice")
    assert plan.make(dice, DENSE)[0].objective.overlap_weight == 1.0
    given, chosen = plan.make(config, DENSE, given={"overlap_weight"})
    assert given.objective.overlap_weight == 1.0 and "overlap_weight 1: given (planned 0)" in "\n".join(chosen.lines())


def test_given_settings_override_the_plan_and_the_log_says_so(tmp_path):
    config = training.Config(records_dir="r", model_dir=str(tmp_path))
    planned, chosen = plan.make(config, SPARSE, given={"patch_size"})
    assert planned.network.patch_size == config.network.patch_size  # given: kept
    assert planned.class_weight_power == chosen.value("class_weight_power") < 0.5
    assert planned.foreground_patches == pytest.approx(1 / 3, abs=1e-3)
    lines = "\n".join(chosen.lines())
    assert f"patch_size {config.network.patch_size}: given (planned 128)" in lines
    # the Python API: values other than the config's defaults count as given
    own = training.Config(records_dir="r", model_dir=str(tmp_path), class_weight_power=0.2)
    kept, _ = plan.make(own, SPARSE)
    assert kept.class_weight_power == 0.2 and kept.network.patch_size == 128
    chosen.write(str(tmp_path))
    saved = plan.read(str(tmp_path))
    reason = next(s.reason for s in chosen.settings if s.name == "patch_size")
    assert saved["settings"]["patch_size"] == {"value": 256, "reason": reason, "given": True, "planned": 128}
    assert saved["settings"]["input_scale"]["value"] == 1.0  # 18 px cells: as they are
    assert saved["settings"]["min_size"]["value"] == round(0.1 * plan.Fingerprint.of(SPARSE).cell_area)


def _with_diameter(diameter: float) -> dict:
    """SPARSE with 4 cells a frame of mean diameter `diameter` px."""
    area = math.pi * (diameter / 2) ** 2
    return {**SPARSE, "foreground_fraction": 4 * area / (512 * 512)}


@pytest.mark.parametrize("diameter, expected", [
    (26.0, 1.0),  # within 8-128 px: as it is
    (8.0, 1.0),
    (6.0, 1.333),  # 8 / 6, rounded
    (5.0, 1.6),  # 8 / 5
    (3.0, 2.0),  # 8 / 3, bounded to 2
    (256.0, 0.5),  # 128 / 256
])
def test_frames_are_resampled_to_bring_cells_within_the_diameters(diameter, expected):
    fingerprint = plan.Fingerprint.of(_with_diameter(diameter))
    assert fingerprint.cell_diameter == pytest.approx(diameter)
    scale, reason = plan.input_scale(fingerprint)
    assert scale == pytest.approx(expected, abs=1e-3)
    assert ("as they are" in reason) == (expected == 1.0)


def test_the_plan_sizes_patches_and_minimum_size_at_the_input_scale(tmp_path):
    small = _with_diameter(5.0)  # scale 1.6: 8 px cells at the input scale
    config = training.Config(records_dir="r", model_dir=str(tmp_path))
    planned, chosen = plan.make(config, small)
    assert planned.input_scale == 1.6
    assert chosen.value("min_size") == round(0.1 * math.pi * 4.0**2)  # a tenth of a disc 5 x 1.6 = 8 px across
    # four cells in a 512 px frame: at scale 1.6, a 128 px patch covers 80 px of the frame
    touching = 4 / 512**2 * (128 / 1.6 + 5.0) ** 2
    assert f"{touching:.2f} cells touch" in next(s.reason for s in chosen.settings if s.name == "foreground_patches")
    big = _with_diameter(100.0)  # in range: patches of 3 x 100 px, rounded up to 16
    assert plan.make(config, big)[0].network.patch_size == 256
    # a given scale replaces the planned one and the others follow it
    given, chosen = plan.make(config, small, given={"input_scale"})
    assert given.input_scale == 1.0 and "input_scale 1: given (planned 1.6)" in "\n".join(chosen.lines())
    assert chosen.value("min_size") == round(0.1 * math.pi * 2.5**2)
    with pytest.raises(ValueError, match="--input_scale must be in"):
        training.Config(records_dir="r", model_dir="m", input_scale=0)


def test_an_unreadable_plan_is_named(tmp_path):
    (tmp_path / "plan.json").write_text("")
    with pytest.raises(ValueError, match="plan.json: unreadable plan"):
        plan.read(str(tmp_path))
    assert plan.read(str(tmp_path / "elsewhere")) is None


def test_foreground_patches_are_centred_on_cells(tmp_path):
    # one 96 x 96 frame with a single 6 x 6 cell: random 32 px patches rarely hold it, centred ones always do
    from beam_pipelines import ctc_to_tfrecord as convert
    from cellseg import tiff

    root = tmp_path / "Fluo-N2DH-ONECELL"
    for sequence in ("01", "02"):
        (root / sequence).mkdir(parents=True)
        (root / f"{sequence}_GT" / "SEG").mkdir(parents=True)
        image = np.zeros((96, 96), np.uint16)
        labels = np.zeros((96, 96), np.uint16)
        labels[70:76, 10:16] = 1
        image[labels > 0] = 1000
        tiff.write(root / sequence / "t000.tif", image)
        tiff.write_labels(root / f"{sequence}_GT" / "SEG" / "man_seg000.tif", labels)
    out = str(tmp_path / "records")
    convert.run([str(root)], convert.Output(out), convert.Settings(val_sequences=("02",)))
    records = records_lib.open_records(out)

    def with_cells(share):
        batches = data.training_dataset(records, 32, 9, seed=4, foreground_share=share).take(8)
        return np.mean([np.any(labels.numpy()[i] > 0) for _, labels, _ in batches for i in range(9)])

    assert with_cells(1.0) == 1.0  # 9 patches a frame, every one on the cell
    assert with_cells(0.0) < 0.5
    assert 0.3 < with_cells(1 / 3) < 1.0
