"""Analysis tools for the DFR poster's problems: matching curves and entropy, gradient locality, occlusion,
metrics and resampling, regions."""
