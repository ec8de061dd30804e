"""The training engine: the loop, the hand-derived gradient step, optimisers and schedulers,
and the signal handling that stops a run cleanly."""
