import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from cellseg import instances, scores, targets

SHAPE = (64, 96)


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def rod(shape, centre, half_length, half_width):
    """A horizontal ellipse."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) / half_width) ** 2 + ((xx - centre[1]) / half_length) ** 2 <= 1


def scene(*masks):
    """Instance labels 1..n of the masks, each later one labelled over the earlier ones."""
    labels = np.zeros(masks[0].shape, np.int32)
    for label, mask in enumerate(masks, start=1):
        labels[mask] = label
    return labels


SCENES = {
    "touching discs": lambda: scene(disc(SHAPE, (32, 30), 12), disc(SHAPE, (32, 52), 12)),
    # Tips two pixels wide that just touch: deeper overlaps of tapered tips leave
    # boundary pixels as near to the other cell's interior as to their own.
    "rods end to end": lambda: scene(rod(SHAPE, (32.5, 26), 20, 3), rod(SHAPE, (32.5, 65), 20, 3)),
    "rod beside a disc": lambda: scene(disc(SHAPE, (26, 30), 12), rod(SHAPE, (40, 32), 20, 3)),
}


def perfect_outputs(labels, target):
    if target == "three_class":
        return np.eye(3, dtype=np.float32)[targets.three_class_numpy(labels)]
    if target == "distance":
        return np.stack(targets.distance_maps(labels), axis=-1)
    return (labels > 0)[..., None].astype(np.float32)


@pytest.mark.parametrize("target", ["three_class", "distance"])
@pytest.mark.parametrize("name", SCENES)
def test_perfect_targets_recover_touching_cells_exactly(name, target):
    reference = SCENES[name]()
    assert ndimage.label(reference > 0)[1] == 1  # the cells touch
    labels = instances.labels_from_outputs(perfect_outputs(reference, target), instances.Postprocess(target))
    assert labels.dtype == np.uint16 and labels.max() == reference.max()
    assert scores.seg_score([reference], [labels]) == 1.0


def test_two_touching_discs_become_two_instances():
    first, second = disc((60, 80), (30, 25), 12), disc((60, 80), (30, 47), 12)
    assert (first & second).any()  # they overlap: one connected blob
    reference = np.where(first, 1, 0) + np.where(second & ~first, 2, 0)
    for labels in (instances.split_touching(first | second),
                   instances.labels_from_outputs(perfect_outputs(reference, "binary"), instances.Postprocess("binary"))):
        assert labels.dtype == np.uint16 and labels.max() == 2
        assert scores.seg_score([reference], [labels]) > 0.9


def test_an_elongated_cell_is_not_cut():
    yy, xx = np.mgrid[:40, :90]
    rod = ((yy - 20) / 6.0) ** 2 + ((xx - 45) / 35.0) ** 2 <= 1
    assert instances.split_touching(rod).max() == 1


def test_small_objects_are_dropped_and_labels_are_sequential():
    mask = disc((50, 50), (25, 25), 8)
    mask[2:4, 2:4] = True  # a 4-pixel speck
    labels = instances.split_touching(mask, min_size=10)
    assert labels.max() == 1 and labels[3, 3] == 0
    assert set(np.unique(instances.split_touching(mask, min_size=0))) == {0, 1, 2}


def test_holes_enclosed_by_one_object_are_filled():
    ring = disc((40, 40), (20, 20), 12) & ~disc((40, 40), (20, 20), 4)
    probabilities = np.where(ring, 0.9, 0.1).astype(np.float32)[..., None]
    filled = instances.labels_from_outputs(probabilities, instances.Postprocess("binary", seed_threshold=20.0))
    assert filled.max() == 1 and filled[20, 20] == 1
    kept = instances.labels_from_outputs(probabilities, instances.Postprocess("binary", seed_threshold=20.0, fill_holes=False))
    assert kept.max() == 1 and kept[20, 20] == 0
    # Split into a left and a right object, the ring's hole borders two objects: not a hole.
    seeds = np.zeros(ring.shape, bool)
    seeds[20, 10] = seeds[20, 30] = True
    halves = instances.seeded_watershed(np.zeros(ring.shape), seeds, ring, min_size=0, fill_holes=True)
    assert halves.max() == 2 and halves[20, 20] == 0


def test_thresholds_apply_and_empty_outputs_give_no_cells():
    probabilities = np.where(disc((40, 40), (20, 20), 9), 0.8, 0.3).astype(np.float32)[..., None]
    assert instances.labels_from_outputs(probabilities, instances.Postprocess("binary")).max() == 1
    assert instances.labels_from_outputs(probabilities, instances.Postprocess("binary", mask_threshold=0.9)).max() == 0
    empty = {"binary": np.zeros((30, 30, 1), np.float32),
             "three_class": np.eye(3, dtype=np.float32)[np.zeros((30, 30), int)],
             "distance": np.zeros((30, 30, 2), np.float32)}
    for target, outputs in empty.items():
        labels = instances.labels_from_outputs(outputs, instances.Postprocess(target))
        assert labels.dtype == np.uint16 and labels.shape == (30, 30) and not labels.any()


def test_outputs_with_the_wrong_channels_are_refused():
    with pytest.raises(ValueError, match="'distance' needs outputs \\[H, W, 2\\]"):
        instances.labels_from_outputs(np.zeros((8, 8, 3), np.float32), instances.Postprocess("distance"))
    with pytest.raises(ValueError, match="'binary'"):
        instances.labels_from_outputs(np.zeros((8, 8), np.float32), instances.Postprocess("binary"))


def test_tune_finds_the_threshold_that_keeps_a_faint_cell_without_its_halo():
    shape = (48, 80)
    cell_a, cell_b = disc(shape, (24, 20), 8), disc(shape, (24, 56), 8)
    halo = disc(shape, (24, 56), 11) & ~cell_b  # p = 0.35: joins cell B below a threshold of 0.35
    probabilities = np.select([cell_a, cell_b, halo], [0.8, 0.45, 0.35], 0.05).astype(np.float32)[..., None]
    reference = scene(cell_a, cell_b)
    calls = []
    settings, score = instances.tune([probabilities], [reference], "binary", {"mask_threshold": [0.3, 0.4, 0.5, 0.6]},
                                     progress=lambda done, total: calls.append((done, total)))
    assert settings.target == "binary" and settings.mask_threshold == 0.4 and settings.fill_holes
    assert score == scores.seg_score([reference], [instances.labels_from_outputs(probabilities, settings)])
    assert score == 1.0
    total = 4 * len(targets.get("binary").seed_grid) + 2  # three min_size candidates, one already scored
    assert calls == [(done, total) for done in range(1, total + 1)]


def test_tune_tries_min_sizes_from_the_references():
    reference = scene(disc((40, 40), (20, 20), 10))  # 317 pixels: candidates 0, 32 and 79
    # A speck inside a gap in the cell: kept, it borders the gap, which stays unfilled.
    gap = disc((40, 40), (20, 20), 4) & ~disc((40, 40), (20, 20), 2)
    probabilities = np.where((reference > 0) & ~gap, 0.9, 0.1).astype(np.float32)[..., None]
    grid = {"mask_threshold": [0.5], "seed_threshold": [20.0]}  # no seeds: each component is one object
    settings, score = instances.tune([probabilities], [reference], "binary", grid)
    assert score == 1.0 and settings.min_size == 32
    speck_kept = instances.labels_from_outputs(probabilities, dataclasses.replace(settings, min_size=0))
    assert speck_kept.max() == 2 and scores.seg_score([reference], [speck_kept]) < 1.0
    settings, _ = instances.tune([probabilities], [reference], "binary", {**grid, "min_size": [100, 40, 0]})
    assert settings.min_size == 100  # ties keep the first


def test_tune_breaks_seg_ties_by_detection_f1():
    shape = (40, 80)
    cell, blob = disc(shape, (20, 20), 8), disc(shape, (20, 60), 6)
    probabilities = np.select([cell, blob], [0.9, 0.45], 0.05).astype(np.float32)[..., None]
    reference = scene(cell)
    grid = {"mask_threshold": [0.4, 0.5], "min_size": [0]}
    for order in ([0.4, 0.5], [0.5, 0.4]):
        settings, score = instances.tune([probabilities], [reference], "binary", {**grid, "mask_threshold": order})
        # SEG is 1 either way (it ignores the false blob); F1 is 1 only without the blob.
        assert score == 1.0 and settings.mask_threshold == 0.5


def interior_domes(shape, centres, radius, neck, peaks=(0.95, 0.9)):
    """Three-class outputs of two discs that touch with no boundary between them, as a short-trained
    network draws them: the interior falls from `peaks` at the centres to `neck` where the discs meet (on
    the line between the centres), the boundary class lies on the outer border only. Returns (outputs,
    reference labels: each pixel of the union to its nearest centre)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    distances = np.stack([np.hypot(yy - y, xx - x) for y, x in centres])
    union = distances.min(axis=0) <= radius
    nearest = distances.argmin(axis=0)
    reference = np.where(union, nearest + 1, 0)
    half_gap = np.hypot(*np.subtract(centres[0], centres[1])) / 2
    peak = np.asarray(peaks)[nearest]
    interior = np.where(union, peak - (peak - neck) * distances.min(axis=0) / half_gap, 0.0).clip(0.0, 1.0)
    border = union & ~ndimage.binary_erosion(union)
    interior[border] = 0.0
    boundary = np.where(border, 0.9, 0.0)
    background = 1.0 - interior - boundary
    return np.stack([background, interior, boundary], axis=-1).astype(np.float32), reference


def test_interior_peaks_part_touching_cells_that_the_interior_level_joins():
    outputs, reference = interior_domes((48, 80), [(24, 28), (24, 50)], 12, neck=0.85)
    level = instances.labels_from_outputs(outputs, instances.Postprocess("three_class", 0.5, 0.7))
    assert level.max() == 1  # the interior is above 0.7 across the contact: one seed
    peaks = instances.Postprocess("three_class", 0.5, 0.02, seed_peaks=True)
    labels = instances.labels_from_outputs(outputs, peaks)
    assert labels.max() == 2 and scores.seg_score([reference], [labels]) > 0.95
    # The lower peak rises 0.05 above the contact: asked for 0.2, it is no seed.
    higher = dataclasses.replace(peaks, seed_threshold=0.2)
    assert instances.labels_from_outputs(outputs, higher).max() == 1


def test_tune_tries_interior_peaks_beside_the_level():
    outputs, reference = interior_domes((48, 80), [(24, 28), (24, 50)], 12, neck=0.85)
    grid = {"mask_threshold": [0.5], "min_size": [0]}
    levels_only, seg_levels = instances.tune([outputs], [reference], "three_class", {**grid, "seed_peak_height": []})
    assert not levels_only.seed_peaks and seg_levels < 0.6  # the two cells stay one object
    calls = []
    chosen, seg = instances.tune([outputs], [reference], "three_class", grid,
                                 progress=lambda done, total: calls.append(total))
    assert chosen.seed_peaks and chosen.seed_threshold in targets.get("three_class").peak_grid and seg > 0.95
    assert calls[-1] == len(targets.get("three_class").seed_grid) + len(targets.get("three_class").peak_grid)
    # On cells that a boundary parts, the level scores as well and, scored first, is kept.
    apart = np.eye(3, dtype=np.float32)[targets.three_class_numpy(reference)]
    chosen, seg = instances.tune([apart], [reference], "three_class", grid)
    assert not chosen.seed_peaks and seg == 1.0


def test_tune_refuses_mismatched_frames():
    labels = np.zeros((16, 16), np.uint16)
    outputs = np.zeros((16, 16, 1), np.float32)
    for args in (([], []), ([outputs], []), ([outputs], [np.zeros((16, 17), np.uint16)])):
        with pytest.raises(ValueError):
            instances.tune(*args, "binary")
    with pytest.raises(ValueError, match="unknown grid keys"):
        instances.tune([outputs], [labels], "binary", {"seed": [1.0]})
    with pytest.raises(ValueError, match="three_class, not binary"):
        instances.tune([outputs], [labels], "binary", {"seed_peak_height": [0.1]})
    with pytest.raises(ValueError, match="seed threshold or seed peak height"):
        instances.tune([outputs], [labels], "binary", {"seed_threshold": []})


def test_settings_round_trip_and_defaults():
    settings = instances.Postprocess("distance", 0.1, -0.2, min_size=25, fill_holes=False)
    assert instances.Postprocess.from_dict({**settings.to_dict(), "seg": 0.87}) == settings
    for target, (mask, seed) in {"binary": (0.5, 2.0), "three_class": (0.5, 0.7), "distance": (0.05, 0.4)}.items():
        default = instances.Postprocess(target)
        assert (default.mask_threshold, default.seed_threshold) == (mask, seed)
        assert instances.Postprocess.from_dict(default.to_dict()) == default
    peaks = instances.Postprocess("three_class", 0.4, 0.02, min_size=9, seed_peaks=True)
    assert instances.Postprocess.from_dict(peaks.to_dict()) == peaks
    assert peaks.describe() == "mask threshold 0.4, seed peak height 0.02, min size 9 px"
    # postprocess.json written before seed peaks existed: the interior level, as then.
    older = {"target": "three_class", "mask_threshold": 0.4, "seed_threshold": 0.8, "min_size": 9, "seg": 0.8}
    assert not instances.Postprocess.from_dict(older).seed_peaks
    assert instances.Postprocess.from_dict(older).describe() == "mask threshold 0.4, seed threshold 0.8, min size 9 px"


@pytest.mark.parametrize("kwargs, message", [
    ({"target": "watershed"}, "unknown target"),
    ({"mask_threshold": 1.5}, "mask_threshold"),
    ({"target": "three_class", "mask_threshold": 0.0}, "mask_threshold"),
    ({"target": "distance", "mask_threshold": 0.0}, "mask_threshold"),
    ({"seed_threshold": -1.0}, "seed_threshold"),
    ({"target": "three_class", "seed_threshold": 1.0}, "seed_threshold"),
    ({"target": "distance", "seed_threshold": -1.0}, "seed_threshold"),
    ({"min_size": -1}, "min_size"),
    ({"target": "binary", "seed_peaks": True}, "seed_peaks"),
    ({"target": "distance", "seed_peaks": True}, "seed_peaks"),
    ({"target": "three_class", "seed_threshold": 0.0, "seed_peaks": True}, "seed_threshold"),
])
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        instances.Postprocess(**kwargs)


def _filled_by_flooding(labels):
    """The hole filling rule, pixel by pixel: flood each background region (4-connected); fill it with the
    one label it borders, unless it reaches the frame's edge or borders two labels."""
    labels = labels.copy()
    height, width = labels.shape
    seen = np.zeros(labels.shape, bool)
    for start in zip(*np.nonzero(labels == 0)):
        if seen[start]:
            continue
        region, stack, borders, edge = [], [start], set(), False
        seen[start] = True
        while stack:
            y, x = stack.pop()
            region.append((y, x))
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if not (0 <= ny < height and 0 <= nx < width):
                    edge = True
                elif labels[ny, nx]:
                    borders.add(int(labels[ny, nx]))
                elif not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if not edge and len(borders) == 1:
            for pixel in region:
                labels[pixel] = next(iter(borders))
    return labels


def test_hole_filling_equals_flooding_each_background_region():
    rng = np.random.default_rng(0)
    for trial in range(60):
        labels = rng.integers(1, 4, (rng.integers(8, 30), rng.integers(8, 30)))
        labels = np.where(rng.random(labels.shape) < 0.35, 0, labels)
        if trial % 2:
            labels = np.kron(labels, np.ones((2, 2), labels.dtype))  # wider holes
        np.testing.assert_array_equal(instances._fill_holes(labels), _filled_by_flooding(labels))


def random_cells(rng, shape, count, radius):
    """A mask of `count` overlapping random discs and ellipses: clumps, lone cells, some on the edge."""
    mask = np.zeros(shape, bool)
    for _ in range(count):
        centre = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        if rng.random() < 0.5:
            mask |= disc(shape, centre, rng.uniform(1, radius))
        else:
            mask |= rod(shape, centre, rng.uniform(2, 2 * radius), rng.uniform(1, radius / 2))
    return mask


@pytest.mark.parametrize("height", [0.5, 1.0, 2.0, 3.7])
def test_h_maxima_on_the_cells_only_equals_skimage_on_the_whole_frame(height):
    from skimage import morphology

    rng = np.random.default_rng(int(height * 10))
    for trial in range(25):
        shape = tuple(rng.integers(20, 90, 2))
        mask = random_cells(rng, shape, rng.integers(1, 25), rng.choice([2.5, 6.0, 12.0]))
        if trial == 0:  # cells all lower than `height` but one
            mask = np.zeros(shape, bool)
            mask[2:4, 2:40] = mask[10, 5] = mask[15:17, 20:22] = True
            mask |= disc(shape, (shape[0] - 9, shape[1] - 9), 7)
        distance = ndimage.distance_transform_edt(mask)
        np.testing.assert_array_equal(instances.h_maxima(distance, height), morphology.h_maxima(distance, height),
                                      err_msg=f"trial {trial}")


@pytest.mark.parametrize("height", [0.005, 0.05, 0.2])
def test_h_maxima_of_a_masked_probability_equals_skimage(height):
    from skimage import morphology

    rng = np.random.default_rng(int(height * 1000))
    for trial in range(15):
        shape = tuple(rng.integers(20, 90, 2))
        mask = random_cells(rng, shape, rng.integers(1, 25), rng.choice([2.5, 6.0, 12.0]))
        probability = ndimage.gaussian_filter(rng.random(shape), 2.0)  # in (0, 1): positive on the cells
        masked = np.where(mask, probability, 0.0)
        np.testing.assert_array_equal(instances.h_maxima(masked, height), morphology.h_maxima(masked, height),
                                      err_msg=f"trial {trial}")


def test_binary_instances_split_touching_cells_as_before():
    # The watershed seeds and the relabelling, both rewritten for speed, against skimage's own.
    from skimage import morphology, segmentation

    rng = np.random.default_rng(3)
    for _ in range(10):
        mask = random_cells(rng, (80, 120), 30, 9.0)
        distance = ndimage.distance_transform_edt(mask)
        markers, _ = ndimage.label(morphology.h_maxima(distance, 2.0).astype(bool))
        expected = segmentation.watershed(-distance, markers, mask=mask)
        unseeded, _ = ndimage.label(mask & (expected == 0))
        expected = np.where(unseeded > 0, unseeded + markers.max(), expected)
        expected[np.bincount(expected.ravel())[expected] < 10] = 0
        expected = segmentation.relabel_sequential(instances._fill_holes(expected))[0]
        np.testing.assert_array_equal(instances.split_touching(mask, 2.0, 10), expected)


def test_tuning_scores_settings_that_cut_noise_into_too_many_objects_as_zero():
    # An early network's outputs: a checkerboard of single bright pixels (131072 of them in 512 x 512) around
    # one solid cell. Kept whole at min size 1, they overflow uint16 labels; at 50 only the cell is left.
    outputs = np.zeros((512, 512, 1), np.float32)
    outputs[::2, ::2] = outputs[1::2, 1::2] = 1.0
    outputs[97:123, 97:123] = 0.0  # a gap around the cell
    outputs[100:120, 100:120] = 1.0
    reference = np.zeros((512, 512), np.uint16)
    reference[100:120, 100:120] = 1
    with pytest.raises(instances.TooManyObjects, match="objects do not fit uint16 labels"):
        instances.labels_from_outputs(outputs, instances.Postprocess("binary", 0.5, 1.0, min_size=1))
    chosen, seg = instances.tune([outputs], [reference], "binary",
                                 grid={"mask_threshold": [0.5], "seed_threshold": [1.0], "min_size": [1, 50]})
    assert chosen.min_size == 50 and seg == pytest.approx(1.0)
