"""Conventions of a command-line program (issue 17): shell completion through ``polymix``,
``--version`` of the Hydra apps, a closed stdout, YAML's ``off``, and relative paths under
``hydra.job.chdir=true``."""

from __future__ import annotations

import pytest


@pytest.fixture
def polymix(cli_output):
    """``polymix(*args)`` runs ``polymix ARGS`` in this process; returns (status, stdout, stderr)."""
    return cli_output


# ------------------------------------------------------------------------- shell completion


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_completion_query_completes_config_groups(polymix, monkeypatch, command):
    """The installed bash script asks ``polymix -sc query=bash`` with the whole line."""
    monkeypatch.setenv("COMP_LINE", f"polymix {command} model=")
    status, out, err = polymix("-sc", "query=bash")
    assert status == 0, err
    assert out.split() == ["model=moe", "model=nn", "model=pce"]


def test_completion_query_completes_keys_and_commands(polymix, monkeypatch):
    monkeypatch.setenv("COMP_LINE", "polymix train trainer.epo")
    assert polymix("-sc", "query=bash")[1].split() == ["trainer.epochs="]
    monkeypatch.setenv("COMP_LINE", "polymix ")
    assert polymix("-sc", "query=bash")[1].split() == [
        "train",
        "evaluate",
        "predict",
        "design",
        "suggest",
        "summarize",
    ]
    monkeypatch.setenv("COMP_LINE", "polymix ev")
    assert polymix("-sc", "query=bash")[1].split() == ["evaluate"]


@pytest.mark.parametrize("args", [["train", "-sc", "install=bash"], ["-sc", "install=bash"]])
def test_completion_install_registers_polymix(polymix, args):
    """The script registers completion for ``polymix`` (not for ``train``) and asks it."""
    status, out, err = polymix(*args)
    assert status == 0, err
    assert "complete -p polymix " in out
    assert out.rstrip().endswith("-F hydra_bash_completion polymix")


def test_completion_bad_request_is_a_usage_error(polymix):
    status, _out, err = polymix("-sc", "nonsense")
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("polymix: error:")


# ------------------------------------------------------------------------------- --version


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_version_of_a_hydra_app_is_polymix_version(polymix, command):
    import hydra

    from polymix_cli import __version__

    status, out, err = polymix(command, "--version")
    assert status == 0, err
    assert out == f"polymix {__version__} (Hydra {hydra.__version__})\n"
    assert polymix("--version")[1] == f"polymix {__version__}\n"


# ------------------------------------------------------------------- YAML's off for "off"


@pytest.fixture
def quiet_experiment(tmp_path):
    """A user's config dir whose experiment writes ``eval.sensitivity: off`` (YAML: false)."""
    folder = tmp_path / "configs"
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "quiet.yaml").write_text(
        "# @package _global_\neval:\n  sensitivity: off\n", encoding="utf-8"
    )
    return folder


@pytest.mark.parametrize(
    "overrides",
    [["experiment=quiet"], ["eval.sensitivity=off"], ["eval.sensitivity=false"]],
    ids=["yaml-file", "command-line", "false"],
)
def test_sensitivity_off_from_yaml_or_command_line(quiet_experiment, overrides):
    from polymix_cli.config.compose import compose
    from polymix_cli.config.validation import parse_train_config

    job = compose("train", overrides, config_dir=str(quiet_experiment))
    assert parse_train_config(job).eval.sensitivity == "off"


def test_sensitivity_on_is_still_refused():
    from polymix_cli.config.compose import compose
    from polymix_cli.config.validation import ConfigError, parse_train_config

    with pytest.raises(ConfigError, match="eval.sensitivity must be one of"):
        parse_train_config(compose("train", ["eval.sensitivity=true"]))


@pytest.mark.usefixtures("one_thread")
def test_train_with_sensitivity_off_in_a_user_experiment(polymix, quiet_experiment, tmp_path):
    import json

    from helpers import TINY

    from polymix_cli.runs.checkpoint import load_checkpoint

    run_dir = tmp_path / "run"
    status, _out, err = polymix(
        "train",
        "--config-dir",
        str(quiet_experiment),
        "experiment=quiet",
        *TINY,
        f"hydra.run.dir={run_dir}",
    )
    assert status == 0, err
    stored = load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"]
    assert "  sensitivity: 'off'" in stored.splitlines()
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert "sensitivity" not in json.dumps(metrics)
