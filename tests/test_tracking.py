import os

import numpy as np
import pytest

from cellseg import linking, tracking


def disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def frames_of(*per_frame, shape=(80, 120)):
    """Label frames from lists of (label, centre, radius); labels are arbitrary, as a segmentation's are."""
    frames = []
    for discs in per_frame:
        labels = np.zeros(shape, np.uint16)
        for label, centre, radius in discs:
            labels[disc(shape, centre, radius)] = label
        frames.append(labels)
    return frames


def track(frames, **config):
    tracker = tracking.Tracker(tracking.Config(**config))
    return [tracker.add(f) for f in frames], tracker


def label_at(labels, point):
    return int(labels[point])


def test_a_disc_moving_5_px_per_frame_keeps_one_label():
    frames = frames_of(*[[(7 + t, (40, 20 + 5 * t), 10)] for t in range(10)])  # its label changes each frame
    out, tracker = track(frames)
    assert {label_at(f, (40, 20 + 5 * t)) for t, f in enumerate(out)} == {1}
    assert tracker.rows() == [(1, 0, 9, 0)]


def test_two_crossing_discs_keep_their_labels():
    # One moves right along row 30, the other down column 60: their paths cross at (30, 60), the second
    # disc passing it at frame 4 and the first at frame 8, brushing past each other in between.
    a = [(30, 20 + 5 * t) for t in range(13)]
    b = [(10 + 5 * t, 60) for t in range(13)]
    frames = frames_of(*[[(1 + t % 2, a[t], 6), (2 - t % 2, b[t], 6)] for t in range(13)], shape=(100, 120))
    out, tracker = track(frames)
    first = {label_at(f, a[t]) for t, f in enumerate(out)}
    second = {label_at(f, b[t]) for t, f in enumerate(out)}
    assert len(first) == 1 and len(second) == 1 and first != second and 0 not in first | second
    assert len(tracker.rows()) == 2


def test_a_disc_splitting_in_two_gives_one_parent_and_two_children():
    before = [[(5, (40, 60), 14)] for _ in range(3)]
    after = [[(3, (40, 50), 10), (9, (40, 70), 10)] for _ in range(3)]
    out, tracker = track(frames_of(*before, *after))
    assert tracker.rows() == [(1, 0, 2, 0), (2, 3, 5, 1), (3, 3, 5, 1)]
    assert {label_at(out[4], (40, 50)), label_at(out[4], (40, 70))} == {2, 3}


def test_a_disc_missing_for_one_frame_is_bridged_and_stays_one_cell():
    discs = [[(1, (40, 30 + 3 * t), 10)] if t != 3 else [] for t in range(7)]
    discs[3] = [(4, (10, 110), 5)]  # something else elsewhere, so the frame is not empty
    out, tracker = track(frames_of(*discs))
    before, after = label_at(out[2], (40, 36)), label_at(out[4], (40, 42))
    rows = {label: (first, last, parent) for label, first, last, parent in tracker.rows()}
    # The challenge's format: the part after the gap is a new label whose parent is the part before.
    assert rows[before] == (0, 2, 0) and rows[after] == (4, 6, before)
    assert tracker.lineages()[after] == before  # one cell


def test_two_cells_merged_in_one_frame_are_cut_apart_and_keep_their_tracks():
    # Two discs side by side for three frames; in the fourth the segmentation gives them one label.
    apart = [[(1, (40, 48), 9), (2, (40, 68), 9), (3, (15, 100), 9)] for _ in range(3)]
    merged = frames_of(*apart)[0].copy()
    merged[merged == 2] = 1
    frames = frames_of(*apart) + [merged]
    out, tracker = track(frames)
    left, right = label_at(out[2], (40, 48)), label_at(out[2], (40, 68))
    assert label_at(out[3], (40, 48)) == left and label_at(out[3], (40, 68)) == right
    for label in (left, right):  # each piece is its disc again (the cut runs along the neck)
        piece, cell = out[3] == label, out[2] == label
        assert (piece & cell).sum() / (piece | cell).sum() > 0.9
    assert sorted(tracker.rows()) == [(1, 0, 3, 0), (2, 0, 3, 0), (3, 0, 3, 0)]
    # Without the cut the merged object continues one track; the other ends.
    _, plain = track(frames, split_merged=False)
    assert sorted(last for _, _, last, _ in plain.rows()) == [2, 3, 3]


def test_a_cell_cut_in_pieces_before_is_not_cut_when_it_is_whole_again():
    # A cell segmented as a large and a small piece (under half the typical cell) for three frames, then
    # whole: the whole object stays one (it holds one cell and a piece); like-sized cells around it.
    others = [(5, (15, 20), 8), (6, (15, 60), 8), (7, (65, 20), 8), (8, (65, 100), 8)]
    whole = frames_of(others + [(1, (40, 60), 9)])[0]
    cut = whole.copy()
    cut[(cut == 1) & (np.arange(cut.shape[1])[None, :] > 64)] = 2  # the right quarter a piece of its own
    out, _ = track([cut, cut, cut, whole])
    assert len(np.unique(out[3][whole == 1])) == 1
    assert tracking.split_merged(cut, whole, np.arange(1, 9)).max() == whole.max()  # nothing cut


def test_a_round_cell_drawn_in_two_halves_before_is_not_cut_when_it_is_whole_again():
    # Both halves are of a cell's size and seen for three frames, as two touching cells would be; the whole
    # object is convex (no waist), so it is one cell that the segmentation had split.
    others = [(5, (15, 20), 8), (6, (15, 60), 8), (7, (65, 20), 8), (8, (65, 100), 8)]
    whole = frames_of(others + [(1, (40, 60), 13)])[0]
    halves = whole.copy()
    halves[(halves == 1) & (np.arange(halves.shape[1])[None, :] > 60)] = 2
    assert (halves == 2).sum() >= tracking.FRAGMENT * (whole == 5).sum()  # a cell's size each
    out, _ = track([halves, halves, halves, whole])
    assert len(np.unique(out[3][whole == 1])) == 1
    # The same two halves, pulled apart by a waist (two discs touching): cut.
    pair = frames_of(others + [(1, (40, 50), 10), (2, (40, 68), 10)])[0]
    joined = np.where(pair == 2, 1, pair)
    out, _ = track([pair, pair, pair, joined])
    assert len(np.unique(out[3][joined == 1])) == 2


def test_a_pair_seen_for_one_frame_only_does_not_cut():
    # Two objects that appear from nothing may be one cell's pieces: they cut a later object only once
    # seen for two frames (daughters of a division are trusted at once).
    other = [(3, (15, 100), 9)]
    empty, apart = frames_of(other, other + [(1, (40, 48), 9), (2, (40, 68), 9)])
    merged = apart.copy()
    merged[merged == 2] = 1
    out, _ = track([empty, apart, merged])
    assert len(np.unique(out[2][merged == 1])) == 1
    out, _ = track([empty, apart, apart, merged])
    assert len(np.unique(out[3][merged == 1])) == 2


def test_a_whole_frame_shifted_by_40_px_links_correctly():
    cells = [(1, (30, 30), 7), (2, (30, 52), 7), (3, (52, 40), 7), (4, (60, 70), 7)]
    moved = [(label + 10, (y, x + 40), r) for label, (y, x), r in cells]
    out, tracker = track(frames_of(cells, moved, shape=(100, 140)))
    for (_, (y, x), _), (_, (y2, x2), _) in zip(cells, moved):
        assert label_at(out[0], (y, x)) == label_at(out[1], (y2, x2))
    assert len(tracker.rows()) == 4
    # Without drift correction the 40 px jump is not followed.
    plain, _ = track(frames_of(cells, moved, shape=(100, 140)), drift=False)
    assert not all(label_at(plain[0], (y, x)) == label_at(plain[1], (y2, x2))
                   for (_, (y, x), _), (_, (y2, x2), _) in zip(cells, moved))


def test_global_shift_is_zero_for_cells_moving_on_their_own():
    before = frames_of([(1, (20, 20), 6), (2, (50, 80), 6)])[0]
    after = frames_of([(1, (22, 19), 6), (2, (49, 83), 6)])[0]
    assert linking.global_shift(before, after) == (0, 0)
    assert linking.global_shift(before, linking.shifted(before, (-7, 12))) == (-7, 12)


def test_frames_of_another_shape_are_refused():
    tracker = tracking.Tracker()
    tracker.add(np.zeros((10, 10), np.uint16))
    with pytest.raises(ValueError, match="frame 1 is"):
        tracker.add(np.zeros((10, 12), np.uint16))


def test_speeds_and_path_lengths_of_a_disc_on_a_known_path_equal_hand_computed_values(tmp_path):
    import csv

    from cellseg import tiff

    path = [(40, 20), (40, 26), (48, 32), (48, 32), (40, 38)]  # steps of 6, 10, 0 and 10 px
    for t, centre in enumerate(path):
        labels = np.zeros((90, 90), np.uint16)
        labels[disc(labels.shape, centre, 9)] = 3
        tiff.write_labels(tmp_path / f"frame_{t}.tif", labels)
    result = tracking.track_folder(str(tmp_path), str(tmp_path / "out"), pixel_size=0.5, frame_interval=2.0)
    assert result == {"frames": 5, "labels": 1, "tracks": 1, "divisions": 0}
    (row,) = list(csv.DictReader(open(tmp_path / "out" / "tracks.csv")))
    assert float(row["path_length_um"]) == pytest.approx(0.5 * 26)
    assert float(row["net_displacement_um"]) == pytest.approx(0.5 * 18)
    assert float(row["mean_speed_um_per_min"]) == pytest.approx(0.5 * 26 / (4 * 2.0))
    assert float(row["max_speed_um_per_min"]) == pytest.approx(0.5 * 10 / 2.0)
    assert float(row["straightness"]) == pytest.approx(18 / 26)
    assert float(row["mean_area_um2"]) == pytest.approx(0.25 * np.count_nonzero(disc((90, 90), (40, 20), 9)))
    assert (row["first_frame"], row["last_frame"], row["frames"], row["divides"]) == ("0", "4", "5", "0")
    assert sorted(os.listdir(tmp_path / "out")) == [*(f"frame_{t}.tif" for t in range(5)), "res_track.txt",
                                                    "tracks.csv"]


def test_tracking_the_truth_masks_scores_tra_1_with_the_challenge_measures(fluo_dataset, tmp_path):
    from cellseg import evaluate

    result = tracking.track_folder(str(fluo_dataset / "02_GT" / "TRA"), str(tmp_path / "02_RES"))
    assert result["frames"] == len(os.listdir(fluo_dataset / "02")) and sorted(os.listdir(tmp_path / "02_RES"))[0] \
        == "mask000.tif"
    scores = evaluate.tracking_scores(str(tmp_path / "02_RES"), str(fluo_dataset / "02_GT"))
    assert scores == {"tra": 1.0, "det": 1.0, "lnk": 1.0}


def test_the_track_command_tracks_another_tools_labels_and_refuses_a_missing_folder(tmp_path):
    import subprocess
    import sys

    from cellseg import ctc, tiff

    for t in range(3):
        labels = np.zeros((60, 60), np.uint16)
        labels[disc(labels.shape, (30, 15 + 4 * t), 8)] = 40 + t  # another tool numbers its objects its own way
        tiff.write_labels(tmp_path / f"seg_{t:02d}.tif", labels)
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.track", f"--input={tmp_path}",
                           f"--output_dir={tmp_path / 'tracked'}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tracked 3 frame(s): 1 cell track(s), 0 division(s)" in done.stdout
    assert ctc.read_tracks(tmp_path / "tracked" / "res_track.txt") == [(1, 0, 2, 0)]
    assert tiff.read(tmp_path / "tracked" / "seg_02.tif")[30, 23] == 1
    missing = subprocess.run([sys.executable, "-m", "cellseg.cli.track", f"--input={tmp_path / 'nowhere'}"],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1] == \
        f"cellseg-track: {tmp_path / 'nowhere'}: no such folder"


def write_frames(folder, frames, names=None):
    from cellseg import tiff

    os.makedirs(folder, exist_ok=True)
    for index, labels in enumerate(frames):
        tiff.write_labels(os.path.join(folder, names[index] if names else f"mask{index:03d}.tif"), labels)


def test_frames_are_keyed_by_the_number_in_their_name_and_a_missing_frame_is_a_gap(tmp_path):
    from cellseg import ctc

    numbers = [0, 1, 2, 4, 5, 6, 7]  # frame 3 is missing
    frames = frames_of(*[[(1, (40, 20 + 5 * t), 10)] for t in numbers])
    write_frames(tmp_path / "in", frames, [f"mask{t:03d}.tif" for t in numbers])
    result = tracking.track_folder(str(tmp_path / "in"), str(tmp_path / "out"))
    assert result["frames"] == 7
    # The disc is bridged over the missing frame: the part after it is a new label whose parent is the part before.
    assert ctc.read_tracks(tmp_path / "out" / "res_track.txt") == [(1, 0, 2, 0), (2, 4, 7, 1)]
    assert sorted(ctc.masks_by_index(str(tmp_path / "out"))) == numbers


def test_label_images_without_background_keep_every_cell(tmp_path):
    import csv

    quadrants = np.zeros((40, 40), np.uint16)
    quadrants[:20, :20], quadrants[:20, 20:], quadrants[20:, :20], quadrants[20:, 20:] = 1, 2, 3, 4
    write_frames(tmp_path / "in", [quadrants + 6] * 3)  # labels 7..10, no pixel of 0 or 1
    result = tracking.track_folder(str(tmp_path / "in"), str(tmp_path / "out"), pictures=True)
    rows = list(csv.DictReader(open(tmp_path / "out" / "tracks.csv")))
    assert result["tracks"] == 4 and sorted(int(row["track"]) for row in rows) == [1, 2, 3, 4]
    assert (tmp_path / "out" / "overlays" / "lineage.png").exists()


@pytest.mark.parametrize("bad, reason", [(np.float32, "floating-point values"), (np.int16, "negative labels")])
def test_a_bad_frame_is_refused_before_any_frame_is_rewritten(tmp_path, bad, reason):
    from cellseg import tiff

    frames = frames_of(*[[(5, (40, 20 + 5 * t), 10)] for t in range(4)])
    write_frames(tmp_path, frames)
    last = frames[3].astype(bad)
    last[:3, :3] = -3 if bad == np.int16 else 2.5
    tiff.write(tmp_path / "mask003.tif", last)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    with pytest.raises(ValueError, match=f"^{tmp_path / 'mask003.tif'}: .*{reason}"):
        tracking.track_folder(str(tmp_path), str(tmp_path))  # in place
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


@pytest.mark.parametrize("size", [96, 64])
def test_an_intensity_movie_given_as_labels_is_refused(tmp_path, size):
    from cellseg import synthetic

    synthetic.write_dataset(tmp_path / "data", synthetic.Config(kind="fluo", sequences=1, frames=2, height=size,
                                                                width=size, seed=1))
    with pytest.raises(ValueError, match="t000.tif: not a label image: .*an intensity image"):
        tracking.track_folder(str(tmp_path / "data" / "01"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("imagej", [True, False])
def test_a_one_frame_stack_or_single_tiff_file_is_tracked(tmp_path, imagej):
    import tifffile

    from cellseg import ctc, stacks

    labels = frames_of([(3, (40, 30), 9), (8, (40, 80), 9)])[0]
    path = str(tmp_path / "one.tif")
    stacks.write(path, labels[None]) if imagej else tifffile.imwrite(path, labels)
    result = tracking.track_folder(path, tracking.default_output(path))
    assert result["frames"] == 1 and result["tracks"] == 2
    assert ctc.read_tracks(tmp_path / "one_RES" / "res_track.txt") == [(1, 0, 0, 0), (2, 0, 0, 0)]


def test_a_full_disk_fails_in_one_line_and_leaves_no_mask_half_written(tmp_path, monkeypatch):
    import errno

    from cellseg import tiff

    frames = frames_of(*[[(5, (40, 20 + 5 * t), 10)] for t in range(4)])
    write_frames(tmp_path, frames)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    written = []

    def write_until_full(path, labels):
        if len(written) == 2:
            with open(path, "wb") as handle:
                handle.write(b"II*\x00 torn")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path)
        tiff.write(path, labels.astype(np.uint16))

    monkeypatch.setattr(tiff, "write_labels", write_until_full)
    with pytest.raises(ValueError) as raised:
        tracking.track_folder(str(tmp_path), str(tmp_path))
    assert str(raised.value) == f"{tmp_path / 'mask002.tif'}: cannot write (No space left on device)"
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def rod(shape, centre, length, width=12, angle=0.0):
    """A capsule: the points within width / 2 of a segment of `length - width` through `centre`."""
    rows, cols = np.indices(shape, dtype=float)
    direction = np.array([np.sin(angle), np.cos(angle)])
    offset = np.stack([rows - centre[0], cols - centre[1]], -1)
    along = np.clip(offset @ direction, -(length - width) / 2, (length - width) / 2)
    nearest = along[..., None] * direction
    return np.linalg.norm(offset - nearest, axis=-1) <= width / 2


def rods(*per_frame, shape=(120, 600)):
    """Label frames from lists of (label, centre, length[, angle]) rods."""
    frames = []
    for placed in per_frame:
        labels = np.zeros(shape, np.uint16)
        for label, centre, length, *angle in placed:
            labels[rod(shape, centre, length, angle=angle[0] if angle else 0.0)] = label
        frames.append(labels)
    return frames


def test_a_rod_dividing_into_two_half_length_daughters_is_one_division():
    # The mother grows to 64 px and divides across her long axis into two 28 px daughters, which part and
    # move with the colony (12 px a frame): each overlaps her by under half. Neighbours lie close by.
    neighbours = [(50, (40, 200), 40, 0.3), (51, (80, 330), 44, -0.2)]
    frames = []
    for t in range(3):
        frames += rods(neighbours + [(9, (60, 260 + 12 * t), 56 + 4 * t)])
    for t in range(3, 6):
        x = 260 + 12 * t
        frames += rods(neighbours + [(4 + t, (60, x - 17 - t), 22 + 2 * t), (20 - t, (60, x + 17 + t), 22 + 2 * t)])
    mother = frames[2] == 9
    for label in (7, 17):
        daughter = frames[3] == label
        assert (daughter & mother).sum() / (daughter | mother).sum() < 0.5
    out, tracker = track(frames)
    rows = {row[0]: row[1:] for row in tracker.rows()}
    parent = label_at(out[2], (60, 284))
    assert rows[parent] == (0, 2, 0) and tracker.divided == {parent}
    daughters = {label_at(out[4], (60, 308 - 21)), label_at(out[4], (60, 308 + 21))}
    assert len(daughters) == 2 and all(rows[d] == (3, 5, parent) for d in daughters)
    assert len(rows) == 5  # two neighbours, the mother, her daughters


def test_a_row_of_packed_rods_moving_under_a_radial_expansion_keeps_every_rod():
    # Nine 40 px rods end to end; each frame the row stretches by 20 % about its middle, so the outer rods
    # move 34 to 40 px a frame, nearly their own length, onto where their inner neighbours were.
    middle, count = 300, 9
    place = [middle + 42 * (k - (count - 1) / 2) for k in range(count)]
    frames = []
    for t in range(3):
        stretch = 1.2**t
        frames += rods([(1 + (k * 7 + t) % count, (60, middle + (x - middle) * stretch), 40 * 1.1**t)
                        for k, x in enumerate(place)], shape=(120, 1100))
    assert all(len(np.unique(labels)) == count + 1 for labels in frames)  # no rod leaves the frame or overlaps
    out, tracker = track(frames)
    assert len(tracker.rows()) == count and not tracker.divided
    for k, x in enumerate(place):
        points = [(60, int(round(middle + (x - middle) * 1.2**t))) for t in range(3)]
        assert len({label_at(out[t], point) for t, point in enumerate(points)}) == 1
    _, plain = track(frames, divisions=False)
    assert len(plain.rows()) == count


@pytest.mark.parametrize("missing", ["frame", "cell"])
def test_a_division_during_a_one_frame_gap_links_the_daughters_to_their_mother(missing):
    # The mother is seen in frames 0-2, her daughters from frame 4 on; frame 3 is absent from the sequence,
    # or present without her (the segmentation missed her). A neighbour is missing there too.
    others = [(30, (60, 100), 40, 0.5)]
    mother = [rods(others + [(7, (60, 300 + 4 * t), 56)])[0] for t in range(3)]
    daughters = [rods(others + [(2, (60, 300 + 4 * t - 17), 30), (5, (60, 300 + 4 * t + 17), 30)])[0]
                 for t in (4, 5)]
    tracker = tracking.Tracker()
    numbered = list(zip([0, 1, 2, 4, 5], mother + daughters))
    if missing == "cell":
        numbered.insert(3, (3, rods([(40, (20, 500), 40)])[0]))  # only a cell passing by
    for number, labels in numbered:
        tracker.add(labels, number)
    rows = {row[0]: row[1:] for row in tracker.rows()}
    parent = [label for label, (first, last, _) in rows.items() if (first, last) == (0, 2) and label in tracker.divided]
    assert len(parent) == 1
    assert sorted(row for row in rows.values() if row[2] == parent[0]) == [(4, 5, parent[0])] * 2
    other = [label for label, row in rows.items() if row[0] == 0 and label != parent[0]]
    assert len(other) == 1 and rows[other[0]] == (0, 2, 0)  # missing at frame 3, bridged: a gap child
    assert [row for row in rows.values() if row[2] == other[0]] == [(4, 5, other[0])]


def test_the_assignment_without_divisions_is_the_linear_assignment_s_optimum():
    from scipy import optimize

    rng = np.random.default_rng(0)
    n_before, n_after = 12, 15
    cost = rng.uniform(0, 3, (n_before, n_after))
    rows, cols = np.indices(cost.shape).reshape(2, -1)
    found = linking.Hypotheses(np.stack([rows, cols], 1), cost.ravel(), np.zeros(cost.size),
                                np.zeros((0, 3), np.int64), np.zeros(0), np.zeros(0))
    chosen, _ = linking.assign(found, n_before, n_after)
    # The same choice as a plain linear assignment: a link pays its cost instead of START + END; only
    # each cell's CHOICES cheapest links are allowed.
    allowed = np.zeros(cost.shape, bool)
    np.put_along_axis(allowed, np.argsort(cost, axis=1)[:, : linking.CHOICES], True, axis=1)
    gain = np.where(allowed, np.minimum(cost - linking.START - linking.END, 0), 0)
    best_rows, best_cols = optimize.linear_sum_assignment(gain)
    assert gain[rows[chosen], cols[chosen]].sum() == pytest.approx(gain[best_rows, best_cols].sum())
    assert len(set(rows[chosen])) == len(chosen) == len(set(cols[chosen]))


def test_the_displacement_field_extends_a_radial_expansion_to_the_edge():
    centre = np.array([200.0, 300.0])
    points = centre + np.stack(np.meshgrid(np.arange(-60, 61, 20.0), np.arange(-60, 61, 20.0)), -1).reshape(-1, 2)
    queries = centre + np.array([[0.0, 0.0], [0.0, 150.0], [-120.0, 100.0], [140.0, -140.0]])
    field, weight = linking.displacement_field(points, 0.2 * (points - centre), queries, reach=100.0)
    np.testing.assert_allclose(field, 0.2 * (queries - centre), atol=0.05 * 0.2 * 200)
    assert (weight > 0).all()


def test_the_track_command_refuses_a_bad_frame_in_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    from cellseg import tiff

    frames = frames_of(*[[(5, (40, 20 + 5 * t), 10)] for t in range(3)])
    write_frames(tmp_path / "in", frames)
    tiff.write(tmp_path / "in" / "mask002.tif", frames[2].astype(np.float32))
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.track", f"--input={tmp_path / 'in'}",
                           f"--output_dir={tmp_path / 'out'}"], capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("tracking frames")]
    assert done.returncode == 1 and lines == [f"cellseg-track: {tmp_path / 'in' / 'mask002.tif'}: not a label "
                                              "image: floating-point values (float32); expected integer labels"]
    assert not (tmp_path / "out").exists()

