"""Conventions of a command-line program (issue 17): shell completion through ``polymix``,
``--version`` of the Hydra apps, a closed stdout, YAML's ``off``, and relative paths under
``hydra.job.chdir=true``."""

from __future__ import annotations

import logging
import sys

import pytest

from polymix_cli.cli.main import main


@pytest.fixture
def polymix(capsys, monkeypatch):
    """``polymix(*args)`` runs ``polymix ARGS`` in this process; returns (status, stdout, stderr)."""
    monkeypatch.delenv("POLYMIX_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", list(sys.argv))

    def run(*args: str) -> tuple[int, str, str]:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exc:
            status = exc.code
        finally:  # Hydra configures logging for each run: undo it
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


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
    assert polymix("-sc", "query=bash")[1].split() == ["train", "evaluate", "predict", "summarize"]
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
    status, out, err = polymix("-sc", "nonsense")
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
