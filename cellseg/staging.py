"""Results written whole or not at all: a hidden folder beside them, moved into place when complete.

Prediction and tracking write many files (masks, `res_track.txt`, tables,
pictures). Written in place, an interruption (Ctrl-C, a kill, a full disk)
would leave a mixture of new and earlier files that looks complete. Here they
are written into a fresh hidden folder inside the destination; when the block
completes, each part written (a file or a folder) replaces the destination's
part of the same name, the earlier one moved aside first and every rename
undone if one fails, with Ctrl-C held off for those few renames. On any error
the hidden folder is removed and the destination is as it was. A failed write
becomes a one-line ValueError naming the file it was to become.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from typing import Iterator

from cellseg import errors

PREFIX = ".cellseg-"  # hidden folders of results being written


def cannot_write(error: OSError, where: str) -> str:
    """The one line for a failed write to `where`."""
    return f"{where}: cannot write ({error.strerror or errors.first_line(error)})"


@contextlib.contextmanager
def staged(output_dir: str, parts: tuple[str, ...] | None = None, kind: str = "result") -> Iterator[str]:
    """A fresh folder inside `output_dir` (made when missing) to write a result into.

    When the block completes, the `parts` written into it (None: every entry
    written) replace those of `output_dir`; an earlier result's part that the new
    one lacks is removed when `parts` names it. When the block raises (Ctrl-C
    included), the folder is removed, `output_dir` is left as it was (and removed
    again when this made it). OSError becomes a one-line ValueError.
    """
    made = not os.path.isdir(output_dir)
    try:
        os.makedirs(output_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-", dir=output_dir)
    except OSError as error:
        raise ValueError(cannot_write(error, str(error.filename or output_dir))) from None
    try:
        try:
            yield staging
        except OSError as error:
            where = str(error.filename or output_dir)
            if where.startswith(staging):  # named as the file it was to become
                where = os.path.join(output_dir, os.path.relpath(where, staging))
            raise ValueError(cannot_write(error, where)) from None
        with _ctrl_c_held():
            try:
                _move_into_place(staging, output_dir, parts if parts is not None else tuple(os.listdir(staging)))
            except OSError as error:
                raise ValueError(f"{output_dir}: cannot move the new {kind} into place "
                                 f"({error.strerror or errors.first_line(error)}); the folder is as it was") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made and os.path.isdir(output_dir) and not os.listdir(output_dir):
            os.rmdir(output_dir)


def _move_into_place(staging: str, output_dir: str, parts: tuple[str, ...]) -> None:
    """Rename each part of `staging` over `output_dir`'s, the earlier one moved aside into `staging` (and
    removed with it); on an error the renames done are undone."""
    earlier = tempfile.mkdtemp(prefix="earlier-", dir=staging)
    done = []
    try:
        for part in parts:
            for source, target in ((os.path.join(output_dir, part), os.path.join(earlier, part)),
                                   (os.path.join(staging, part), os.path.join(output_dir, part))):
                if os.path.lexists(source):
                    os.rename(source, target)
                    done.append((source, target))
    except OSError:
        for source, target in reversed(done):
            os.rename(target, source)
        raise


@contextlib.contextmanager
def _ctrl_c_held():
    """Ctrl-C ignored while the block runs (a few renames), so that it cannot leave a result half moved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
