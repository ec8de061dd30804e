"""``polymix``: the command-line entry point. Dispatches to the Hydra apps and to
``summarize`` (plain argparse); ``--help`` and ``--version`` answer without importing
torch or Hydra."""

from __future__ import annotations

import os
import re
import sys

from polymix_cli.cli import allocator, errors
from polymix_cli.config.safety import CALLABLE_KEYS

COMMANDS = {
    "train": "train a stochastic surrogate from configs (Hydra app: overrides, -m, --cfg job, --help)",
    "evaluate": "re-evaluate a checkpoint: polymix evaluate ckpt=PATH [overrides]",
    "predict": "predict with a checkpoint: polymix predict ckpt=PATH input=FILE output=FILE [predict.*=...]",
    "design": "a space-filling design to simulate: polymix design bounds=[[LOW,HIGH],...] n=N output=FILE",
    "suggest": "the next inputs to simulate: polymix suggest ckpt=PATH n=K output=FILE",
    "inspect": "the posterior of a checkpoint's parameters: polymix inspect ckpt=PATH",
    "export": "a TorchScript (or ONNX) model that predicts without polymix: polymix export ckpt=PATH output=FILE",
    "summarize": "(re)build a sweep's summary: polymix summarize DIR [--sort-by METRIC]",
}

USAGE = """usage: polymix COMMAND [HYDRA OVERRIDES ...]

Stochastic surrogate models (polynomial chaos, neural networks, mixtures of experts)
learned by variational inference.

commands:
{commands}

examples:
  polymix train                                   # the default experiment, moe_sign
  polymix train experiment=moe_sign trainer.epochs=2000
  polymix train -m model.gate.width=8,16,32 model.expert.degree=2,3,5
  polymix train -m hydra/launcher=joblib model.gate.width=8,16,32   # jobs in parallel
  polymix train -m hparams_search=moe_optuna      # an optuna study
  polymix evaluate ckpt=outputs/moe_sign/<run>/checkpoints/last.pt
  polymix train experiment=pce_file data.path=examples/heat.csv data.outputs=[temperature]
  polymix predict ckpt=outputs/pce_file/<run>/checkpoints/last.pt input=new.csv output=pred.csv
  polymix design bounds=[[0,10],[100,200]] inputs=[a,b] n=20 output=design.csv
  polymix suggest ckpt=outputs/pce_file/<run>/checkpoints/last.pt n=5 output=next.csv
  polymix inspect ckpt=outputs/line_priors/<run>/checkpoints/last.pt
  polymix export ckpt=outputs/pce_file/<run>/checkpoints/last.pt output=surrogate.pt
  polymix summarize outputs/moe_sign/multirun/<timestamp>
  polymix train --help                            # every config group and option

options:
  -h, --help     show this message
  --version      print the polymix version
"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = "\n".join(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items())
    return USAGE.format(commands=lines)


def _version(with_hydra: bool) -> str:
    """``polymix X.Y.Z``; for the Hydra apps (whose ``--version`` Hydra would answer with
    its own version alone), ``polymix X.Y.Z (Hydra A.B.C)``. Imports neither torch nor Hydra."""
    from polymix_cli import __version__

    if not with_hydra:
        return f"polymix {__version__}"
    from importlib.metadata import PackageNotFoundError, version

    try:
        hydra = version("hydra-core")
    except PackageNotFoundError:
        return f"polymix {__version__}"
    return f"polymix {__version__} (Hydra {hydra})"


def _use_noninteractive_backend() -> None:
    """Have matplotlib draw the plots with Agg (files only, no window), in this process and
    in the ones it starts (launcher workers), unless the user chose a backend in
    ``MPLBACKEND``. Set before matplotlib is imported, which reads it then; importing
    polymix never changes the backend."""
    if not os.environ.get("MPLBACKEND"):
        os.environ["MPLBACKEND"] = "Agg"


# 128 + SIGPIPE: the status of a Unix tool whose reader went away (`polymix ... | head -1`)
BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # stdout's reader closed it (`| head`): not an error to report; exit quietly, as
        # a Unix tool killed by SIGPIPE does, and keep Python's final flush from failing
        _silence_stdout()
        return BROKEN_PIPE


def _silence_stdout() -> None:
    """Point the file descriptor of stdout at /dev/null (Python's advice for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is no file (e.g. captured)
        pass


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] == "--version" or (args[0] in HYDRA_APPS and "--version" in args[1:]):
        print(_version(with_hydra=args[0] != "--version"))
        return 0
    if args[0] in COMPLETION_FLAGS:
        return _shell_completion(args[1:])
    command = args[0]
    if command not in COMMANDS:
        print(
            f"polymix: unknown command {command!r}; commands: {', '.join(COMMANDS)} (see polymix --help)",
            file=sys.stderr,
        )
        return 2
    _use_noninteractive_backend()
    if command == "summarize":
        from polymix_cli.cli.summarize import summarize_command

        return summarize_command(args[1:])
    if any(a.replace(" ", "") == "hydra/launcher=ray" for a in args[1:]) and not _has_ray():
        errors.fail(
            "hydra/launcher=ray needs the extra ray (hydra-ray-launcher and ray), which is not "
            "installed: pip install 'polymix-cli[ray]'",
            errors.USAGE,
        )
    refused = _callable_override(args[1:])
    if refused:
        errors.fail(
            f"override {refused!r} is refused: polymix never imports or calls a callable named "
            f"in a config or on the command line",
            errors.USAGE,
        )
    if argv is None:  # the polymix process itself (not a call from Python, such as a test)
        allocator.tune_malloc()
    return _run_app(command, args[1:])


def _has_ray() -> bool:
    """Whether hydra-ray-launcher (and so ray) is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None
    except ImportError:
        return False


COMPLETION_FLAGS = ("-sc", "--shell-completion")
HYDRA_APPS = ("train", "evaluate", "predict", "design", "suggest", "inspect", "export")


def _shell_completion(args: list[str]) -> int:
    """``polymix -sc install=SHELL|uninstall=SHELL|query=SHELL``: the script that
    ``polymix train -sc install=bash`` prints (Hydra's own, registered for ``polymix``)
    asks ``polymix -sc query=bash`` for the candidates of ``COMP_LINE``. The first word
    after ``polymix`` completes to a command; the words after a Hydra app's name are
    completed by that app (its config groups, options and keys)."""
    action = args[0] if args else ""
    what, _, shell = action.partition("=")
    if what not in ("install", "uninstall", "query") or not shell:
        errors.fail(
            "shell completion takes one of install=SHELL, uninstall=SHELL, query=SHELL "
            '(e.g. eval "$(polymix -sc install=bash)")',
            errors.USAGE,
        )
    if what != "query":
        return _run_app("train", ["--shell-completion", action])
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    completing_command = len(words) < 2 or (len(words) == 2 and not line.endswith(" "))
    if completing_command:
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(name for name in COMMANDS if name.startswith(prefix)))
        return 0
    command = words[1]
    if command not in HYDRA_APPS:
        print()  # summarize's arguments: the shell's default (file names)
        return 0
    # the line as the app sees it: its name first, then its own arguments
    os.environ["COMP_LINE"] = line.lstrip()[len(words[0]) :].lstrip()
    return _run_app(command, ["--shell-completion", action])


def _callable_override(args: list[str]) -> str | None:
    """The first override that names a callable for Hydra to instantiate: a ``_target_``
    (or friend) key, in the key or in a dict value, or a ``hydra.callbacks`` entry. Checked
    before Hydra starts; the resolved config is checked again by the task."""
    keys = "|".join(CALLABLE_KEYS)
    in_value = re.compile(rf"[{{,]\s*['\"]?({keys})['\"]?\s*:")
    for arg in args:
        key, _, value = arg.partition("=")
        parts = key.lstrip("+~").split("@")[0].split(".")
        if (
            any(p in CALLABLE_KEYS for p in parts)
            or parts[:2] == ["hydra", "callbacks"]
            or in_value.search(value)
        ):
            return arg
    return None


def _run_app(command: str, args: list[str]) -> int:
    """Run the Hydra app of ``command``. Hydra's own errors (an unknown config option or
    key, a malformed override, a run dir that cannot be created) are re-raised by Hydra
    (``HYDRA_FULL_ERROR``) and reported here as one line with exit status 2."""
    from polymix_cli.cli import apps

    completion = any(a in COMPLETION_FLAGS for a in args)
    # Hydra's completion script registers itself for the program named by argv[0], and
    # asks it for candidates: that is `polymix` (see _shell_completion), not `train`
    sys.argv = ["polymix" if completion else f"polymix {command}", *args]
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        apps.APPS[command]()
    except KeyboardInterrupt:
        if errors.debug():
            raise
        errors.leave("interrupted", 130)
    except BrokenPipeError:
        raise  # stdout closed by its reader: see main
    except Exception as err:  # errors of the task itself never get here (see apps)
        if errors.debug():
            raise
        status, kind, message = errors.describe_hydra_error(err)
        errors.fail(message, status, kind)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
    return 0


if __name__ == "__main__":
    sys.exit(main())
