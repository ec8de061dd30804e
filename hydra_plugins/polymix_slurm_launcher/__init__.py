"""polymix's Slurm launcher, where Hydra looks for launchers: Hydra instantiates only
plugin classes defined in the ``hydra_plugins`` namespace package. The code is in
:mod:`polymix_cli.cli.slurm` (light to import: Hydra imports this module at every start)."""

from polymix_cli.cli.slurm import SlurmLauncher as _SlurmLauncher

__all__ = ["SlurmLauncher"]


class SlurmLauncher(_SlurmLauncher):
    """``hydra/launcher=slurm``: see :class:`polymix_cli.cli.slurm.SlurmLauncher`."""
