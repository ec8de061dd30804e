"""polymix's Hydra configs, installed as the package ``polymix_cli.configs`` (see
pyproject.toml) and read by the CLI as ``pkg://polymix_cli.configs``."""
