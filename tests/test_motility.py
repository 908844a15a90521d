import pytest

from cellseg import motility


def lineage_observations():
    """Founder 1 (frames 0-2) divides into 2 and 3 (from frame 3); 2 divides at frame 6 into 4 and 5 (frames
    7-8); 3 is seen to the end. One observation per cell and frame, all at rest."""
    spans = {1: (0, 2), 2: (3, 6), 3: (3, 8), 4: (7, 8), 5: (7, 8)}
    return [(frame, cell, 10.0 * cell, 5.0, 100) for cell, (first, last) in spans.items()
            for frame in range(first, last + 1)]


def table(frame_interval=None):
    parents = {1: 0, 2: 1, 3: 1, 4: 2, 5: 2}
    rows = motility.tracks_table(lineage_observations(), {cell: cell for cell in parents}, parents, {1, 2},
                                 frame_interval=frame_interval)
    return {row["track"]: row for row in rows}


def test_generations_count_divisions_from_the_founder():
    assert {cell: row["generation"] for cell, row in table().items()} == {1: 0, 2: 1, 3: 1, 4: 2, 5: 2}
    assert motility.generations({7: 3, 3: 0, 9: 7}) == {3: 0, 7: 1, 9: 2}


def test_the_cell_cycle_is_given_for_tracks_born_of_a_division_that_divide():
    # Cell 2 is born at frame 3 and its daughters appear at frame 7: 4 frames from division to division.
    rows = table()
    assert rows[2]["cell_cycle_frames"] == 4
    assert [rows[cell]["cell_cycle_frames"] for cell in (1, 3, 4, 5)] == ["", "", "", ""]  # founder, or no end


def test_the_cell_cycle_is_in_minutes_with_a_frame_interval():
    rows = table(frame_interval=5.0)
    assert rows[2]["cell_cycle_min"] == pytest.approx(20.0)
    assert motility.columns(frame_interval=5.0)[-1] == "cell_cycle_min"
    assert set(rows[2]) == set(motility.columns(frame_interval=5.0))
