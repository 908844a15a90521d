"""Results tables kept inside documentation pages, between markers (no TensorFlow: the tracking benchmark
loads none)."""

from __future__ import annotations

import os
import sys


def between_markers(path: str, text: str, name: str, title: str) -> None:
    """Put `text` between the `<!-- name: begin -->` and `<!-- name: end -->` markers of the page at `path`
    (made with `title` when missing); the rest of the page is kept."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    page = open(path).read() if os.path.exists(path) else f"# {title}\n\n{begin}\n{end}\n"
    if begin not in page or end not in page:
        sys.exit(f"{name}: {path} lacks the markers {begin} and {end}")
    head, rest = page.split(begin, 1)
    with open(path, "w") as handle:
        handle.write(f"{head}{begin}\n{text}{end}{rest.split(end, 1)[1]}")
