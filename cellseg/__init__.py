"""cellseg: U-Net cell segmentation for Cell Tracking Challenge data."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("cellseg")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
