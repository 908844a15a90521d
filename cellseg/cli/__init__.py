"""The cellseg commands: one module each, thin absl apps over the library (`setup.cfg` names their entry points)."""
