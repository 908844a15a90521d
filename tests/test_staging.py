"""Results moved into place whole, or not at all."""

import errno
import os

import pytest

from cellseg import staging


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def tree(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def test_a_completed_block_replaces_the_named_parts_and_drops_what_the_new_result_lacks(tmp_path):
    out = str(tmp_path / "out")
    write(os.path.join(out, "01_RES", "mask000.tif"), "old")
    write(os.path.join(out, "01_RES", "mask001.tif"), "old, a frame the new result does not have")
    write(os.path.join(out, "tracks.csv"), "old")
    write(os.path.join(out, "02_RES", "mask000.tif"), "another sequence's")
    with staging.staged(out, ("01_RES", "cells.csv", "tracks.csv")) as scratch:
        write(os.path.join(scratch, "01_RES", "mask000.tif"), "new")
        write(os.path.join(scratch, "cells.csv"), "new")
    assert tree(out) == ["01_RES/mask000.tif", "02_RES/mask000.tif", "cells.csv"]
    assert open(os.path.join(out, "01_RES", "mask000.tif")).read() == "new"


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, ValueError])
def test_an_interrupted_block_leaves_the_folder_as_it_was(tmp_path, interruption):
    out = str(tmp_path / "out")
    write(os.path.join(out, "mask000.tif"), "old")
    with pytest.raises(interruption):
        with staging.staged(out) as scratch:
            write(os.path.join(scratch, "mask000.tif"), "new")
            raise interruption()
    assert tree(out) == ["mask000.tif"] and open(os.path.join(out, "mask000.tif")).read() == "old"


def test_a_failed_write_is_one_line_naming_the_file_it_was_to_become_and_a_new_folder_goes_again(tmp_path):
    out = str(tmp_path / "new")
    with pytest.raises(ValueError) as raised:
        with staging.staged(out, kind="track") as scratch:
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(scratch, "mask003.tif"))
    assert str(raised.value) == f"{os.path.join(out, 'mask003.tif')}: cannot write (No space left on device)"
    assert not os.path.exists(out)


def test_every_entry_written_replaces_its_namesake_when_no_parts_are_named(tmp_path):
    out = str(tmp_path / "labels")
    write(os.path.join(out, "mask000.tif"), "input")
    write(os.path.join(out, "notes.txt"), "the user's")
    with staging.staged(out) as scratch:
        write(os.path.join(scratch, "mask000.tif"), "relabelled")
        write(os.path.join(scratch, "res_track.txt"), "1 0 0 0")
    assert tree(out) == ["mask000.tif", "notes.txt", "res_track.txt"]
    assert open(os.path.join(out, "mask000.tif")).read() == "relabelled"
