"""``polymix``: the command-line entry point. Dispatches to the Hydra apps and to
``summarize`` (plain argparse); ``--help`` and ``--version`` answer without importing
torch or Hydra."""

from __future__ import annotations

import sys

COMMANDS = {
    "train": "train a stochastic surrogate from configs (Hydra app: overrides, -m, --cfg job, --help)",
    "evaluate": "re-evaluate a checkpoint: polymix evaluate ckpt=PATH [overrides]",
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] == "--version":
        from .. import __version__

        print(f"polymix {__version__}")
        return 0
    command = args[0]
    if command not in COMMANDS:
        print(f"polymix: unknown command {command!r}; commands: {', '.join(COMMANDS)} (see polymix --help)",
              file=sys.stderr)
        return 2
    if command == "summarize":
        from .summarize import main as summarize

        return summarize(args[1:])
    from . import apps

    sys.argv = [f"polymix {command}", *args[1:]]
    apps.APPS[command]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
