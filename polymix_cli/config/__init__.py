"""Configs: the typed schema of every config group, validation with messages that name the
option, and building models from a validated config (only from polymix's own registry)."""
