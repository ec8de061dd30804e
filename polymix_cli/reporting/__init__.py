"""Reporting: predictive summaries and metrics from parameter draws, the evaluation of a
model on its data, plots, and the summaries of sweeps."""
