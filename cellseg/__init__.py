"""cellseg: U-Net cell segmentation for Cell Tracking Challenge data."""
