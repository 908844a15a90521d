import numpy as np
import pytest
from PIL import Image

from cellseg import track_pictures


def test_a_mother_sits_midway_between_her_daughters_and_families_stay_together():
    # 1 -> (2, 3), 2 -> (4, 5); founder 6 alone. Leaves in family order: 4, 5, 3, then 6.
    cells = {1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 0}
    rows = track_pictures.tree_rows(cells)
    assert [rows[cell] for cell in (4, 5, 3, 6)] == [0, 1, 2, 3]
    assert rows[2] == 0.5 and rows[1] == (0.5 + 2) / 2


def test_daughters_take_hues_near_their_mother_s():
    palette = track_pictures.colours({1: 0, 2: 1, 3: 1, 4: 0})
    distance = {cell: np.abs(np.subtract(palette[cell], palette[1])).sum() for cell in (2, 3, 4)}
    assert max(distance[2], distance[3]) < distance[4]


@pytest.mark.parametrize("length_um, bar", [(100, 20), (26, 5), (3, 0.5)])
def test_the_scale_bar_is_a_round_length_near_a_fifth_of_the_frame(length_um, bar):
    assert track_pictures.scale_bar_um(length_um) == pytest.approx(bar)


def test_a_lineage_of_300_tracks_is_drawn_tall_enough_to_read(tmp_path):
    # 150 founders dividing once at frame 9: 450 cells, 300 leaves.
    cells, spans = {}, {}
    for founder in range(1, 151):
        cells[founder], spans[founder] = 0, (0, 9)
        for daughter in (1000 + 2 * founder, 1001 + 2 * founder):
            cells[daughter], spans[daughter] = founder, (10, 19)
    path = tmp_path / "lineage.png"
    track_pictures.save_lineage_tree(str(path), spans, cells, set(range(1, 151)), frame_interval=5.0)
    width, height = Image.open(path).size
    assert height >= 300 * track_pictures.ROW_INCHES * track_pictures.DPI and width >= 6 * track_pictures.DPI


def test_trajectories_are_drawn_at_least_at_the_frame_s_size_with_a_scale_bar(tmp_path):
    frame = np.zeros((400, 600), np.uint8)
    paths = {1: [(100.0, 100.0), (110.0, 120.0)], 2: [(115.0, 125.0), (130.0, 140.0)]}
    path = tmp_path / "trajectories.png"
    track_pictures.save_trajectories(str(path), frame, paths, {1: 0, 2: 1}, pixel_size=0.1)
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape[0] >= 400 and picture.shape[1] >= 600
    # The scale bar: white pixels near the bottom right corner.
    corner = picture[int(0.9 * picture.shape[0]):, int(0.6 * picture.shape[1]):]
    assert (corner.min(axis=-1) > 240).sum() > 50
