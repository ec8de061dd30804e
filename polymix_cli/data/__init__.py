"""Data: synthetic generators with a known truth, the user's own files (CSV, NPZ), and the
affine maps between the user's units and the model's domain."""
