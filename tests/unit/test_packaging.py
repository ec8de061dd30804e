"""What the wheel holds: every subpackage of polymix_cli, and the repository's configs/
folder as the package ``polymix_cli.configs`` with every YAML file of every group."""

from __future__ import annotations

import fnmatch
import importlib.resources
import tomllib
from pathlib import Path

from helpers import REPO

SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed():
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "polymix_cli").rglob("__init__.py")
    }
    missing = on_disk - set(SETUPTOOLS["packages"])
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


def test_configs_are_package_data():
    assert SETUPTOOLS["package-dir"]["polymix_cli.configs"] == "configs"
    assert "polymix_cli.configs" in SETUPTOOLS["packages"]
    assert (REPO / "configs" / "__init__.py").is_file()
    patterns = SETUPTOOLS["package-data"]["polymix_cli.configs"]
    configs = REPO / "configs"
    files = [p.relative_to(configs).as_posix() for p in configs.rglob("*") if p.is_file()]
    files = [f for f in files if "__pycache__" not in f and not f.endswith(".py")]
    assert {"hydra/launcher/joblib.yaml", "hydra/job_logging/polymix.yaml"} <= set(files)
    assert "experiment/moe_sign.yaml" in files and "hparams_search/moe_optuna.yaml" in files
    # setuptools' "**/" also matches no folder at all; fnmatch's "*" crosses "/"
    left_out = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not left_out, f"not in the wheel: {left_out}"


def test_editable_install_reads_the_checkout():
    """With `pip install -e .` (make install), pkg://polymix_cli.configs is configs/
    itself: an edit there applies without reinstalling."""
    found = importlib.resources.files("polymix_cli.configs")
    assert Path(str(found)).resolve() == (REPO / "configs").resolve()
