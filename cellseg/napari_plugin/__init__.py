"""cellseg in napari (the `napari` extra): the dock widget "cellseg: segment and track" (`widget`), a reader of
cellseg's results (`reader`) and sample data (`samples`), declared in `napari.yaml` (npe2)."""
