"""Runs: preparing, training, evaluating and predicting from a validated config, and
the checkpoints and run-dir files they leave. Hydra-free: the CLI resolves the config
and the run dir, then calls these functions; tests call them directly."""
