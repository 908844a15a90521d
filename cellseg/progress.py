"""A progress line for long loops, on stderr: redrawn on a terminal, every tenth in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    """Call with (done, total) after each item: `progress = Progress("frames"); progress(3, 20)`."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.start
        line = f"{self.label}: {done}/{total} ({elapsed:.1f} s)"
        if self.stream.isatty():
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
        else:
            tenth = 10 * done // max(total, 1)
            if tenth == self.last_tenth and done < total:
                return
            self.last_tenth = tenth
            self.stream.write(line + "\n")
        self.stream.flush()
