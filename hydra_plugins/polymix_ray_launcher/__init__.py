"""polymix's Ray launcher, where Hydra looks for launchers (the code is in
:mod:`polymix_cli.cli.ray`). Without the extra ``ray`` (hydra-ray-launcher and ray) it
defines nothing, and ``hydra/launcher=ray`` says which extra to install."""

try:
    from polymix_cli.cli.ray import RayLauncher as _RayLauncher
except ImportError:  # the extra `ray` is not installed
    _RayLauncher = None

if _RayLauncher is not None:

    class RayLauncher(_RayLauncher):
        """``hydra/launcher=ray``: see :class:`polymix_cli.cli.ray.RayLauncher`."""

    __all__ = ["RayLauncher"]
