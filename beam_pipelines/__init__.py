"""Apache Beam jobs of cellseg (the CTC to TFRecord conversion)."""
