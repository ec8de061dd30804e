"""Robustness and safety in process: bad input, refused ``_target_`` keys, interrupt and
resume, numerical faults.

The bad-input cases call the real entry point, ``polymix_cli.cli.main.main``, in this
process (same code as the ``polymix`` command, without paying torch's import per case);
the cases about processes (exit status of the real command, signals, files that must not
appear) run ``python -m polymix_cli`` in a subprocess, in e2e/test_robustness_cli.py, and
the pure functions are in unit/test_robustness.py.
"""

from __future__ import annotations

import os
import re
import signal

import pytest
import torch
from helpers import TINY, assert_one_line, compose_train

from polymix_cli.config.validation import ConfigError, validate_train_config
from polymix_cli.runs.checkpoint import load_checkpoint
from polymix_cli.runs.prepare import prepare
from polymix_cli.runs.train import RunInterrupted, resume_config, train
from polymix_cli.training.loop import (
    NonFiniteLoss,
    Trainer,
    TrainSettings,
    build_optimizer,
    build_scheduler,
)

# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args,needles",
    [
        (
            ["experiment=nope"],
            [
                "experiment=nope is not an option",
                "moe_sign",
                "moe_sign_nll",
                "nn_sincos",
                "pce_file",
                "pce_sine",
            ],
        ),
        (["model=foo"], ["model=foo is not an option", "allowed: moe, nn, pce"]),
        (["model.gate.widht=3"], ["unknown option model.gate.widht", "width, depth, activation"]),
        (["model.gate.width=[1"], ["invalid override 'model.gate.width=[1'"]),
        (["model.gate.width=abc"], ["width must be an integer", "'abc'"]),
        (["model.gate=3"], ["model.gate must be a mapping", "got 3"]),
        (["model.expert.degree=-1"], ["degree must be >= 0", "-1"]),
        (["model.gate.width=0"], ["width must be >= 1", "got 0"]),
        (["model.gate.depth=0"], ["depth must be >= 1", "got 0"]),
        (["model=nn", "model.width=0"], ["width must be >= 1"]),
        (["model=nn", "model.depth=0"], ["depth must be >= 1"]),
        (["model.num_experts=0"], ["model.num_experts must be an integer >= 1", "got 0"]),
        (["trainer.epochs=0"], ["trainer.epochs must be >= 1", "got 0"]),
        (["trainer.num_samples=0"], ["trainer.num_samples must be >= 1"]),
        (
            ["trainer.loss=huber"],
            ["trainer.loss must be one of ['mse_sum', 'gaussian_nll'], got 'huber'"],
        ),
        (
            ["trainer.gradients=manual"],
            ["trainer.gradients must be one of ['auto', 'autograd'], got 'manual'"],
        ),
        (
            ["experiment=moe_sign_nll", "trainer.noise.prior=gamma"],
            [
                "trainer.noise.prior must be one of ['none', 'log_normal', 'half_cauchy'], got 'gamma'"
            ],
        ),
        (
            ["trainer.noise.init_std=0"],
            ["trainer.noise.init_std must be a number in (0.0, inf), got 0"],
        ),
        (
            ["trainer.noise.sigma=1"],
            ["unknown option trainer.noise.sigma", "init_std, prior, prior_scale, prior_log_std"],
        ),
        (["eval.num_samples=0"], ["eval.num_samples must be >= 2"]),
        (["optimizer.lr=0"], ["optimizer.lr must be a number in (0.0, inf)", "got 0"]),
        (["optimizer.lr=-1"], ["optimizer.lr must be", "got -1"]),
        (["eval.band=1.0"], ["eval.band must be a number in (0.0, 1.0)"]),
        (["eval.band=0"], ["eval.band must be"]),
        (["eval.levels=[0.5,1.5]"], ["eval.levels.1 must be a number in (0.0, 1.0)", "1.5"]),
        (
            ["eval.sensitivity=yes"],
            ["eval.sensitivity must be one of", "'monte_carlo', 'off'], got 'yes'"],
        ),
        (
            ["eval.sensitivity=pce"],
            ["eval.sensitivity=pce needs model.kind=pce", "got model.kind='moe'"],
        ),
        (
            ["eval.sensitivity_samples=2000"],
            ["eval.sensitivity_samples must be null or an integer in [1, "],
        ),
        (
            ["layout.rules.0.match=nothing*"],
            ["layout.rules[0] ('nothing*') matches no parameter block", "experts.0.coeffs"],
        ),
        (
            ["layout.rules.1.match=experts.0.coeffs"],
            ["layout.rules[1]", "overlaps layout.rules[0]"],
        ),
        (
            ['layout.rules.0.match="experts.*.coeffs[:9]"'],
            ["slice [:9] is out of range for a block of 4 rows"],
        ),
        (["resume=/no/such/last.pt"], ["checkpoint /no/such/last.pt does not exist"]),
        (["resume=3"], ["resume must be the path of a polymix checkpoint"]),
    ],
)
def test_bad_config_exits_2_with_one_line(cli, tmp_path, args, needles):
    status, err = cli("train", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2
    assert_one_line(err, *needles)
    assert not (tmp_path / "run" / "history.csv").exists()


def test_unwritable_output_dir_exits_2(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, err = cli("train", "trainer.epochs=1", f"hydra.run.dir={blocker / 'run'}")
    assert status == 2
    assert_one_line(err, f"{blocker / 'run'}", "hydra.run.dir=PATH")


def test_unwritable_checkpoint_dir_is_found_before_training(cli, tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the checkpoints folder should be")
    status, err = cli("train", *TINY, f"hydra.run.dir={tmp_path}")
    assert status == 2
    assert_one_line(err, "is not writable", f"{tmp_path / 'checkpoints'}", "hydra.run.dir=PATH")
    assert "Epoch" not in (tmp_path / "train.log").read_text()
    assert not (tmp_path / "history.csv").exists()


# ----------------------------------------------------------------------------- checkpoints


def test_target_on_the_command_line_is_refused(cli, tmp_path):
    for override in ("+model._target_=os.system", "+hydra.callbacks.x._target_=os.getcwd"):
        status, err = cli("train", override, f"hydra.run.dir={tmp_path}")
        assert status == 2
        assert_one_line(err, f"override '{override}' is refused")


@pytest.mark.parametrize("where", [("model",), ("layout", "rules", 0), ("data",)])
def test_target_in_a_config_is_refused(where):
    cfg = compose_train()
    node = cfg
    for key in where:
        node = node[key]
    node["_target_"] = "os.system"
    path = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in where).replace(".[", "[")
    with pytest.raises(ConfigError, match=re.escape(f"{path}._target_='os.system' is refused")):
        prepare(cfg)


# ----------------------------------------------------------------------------- interrupt and resume


class _SignalAt:
    """A UI whose progress hook sends ``signum`` to this process at ``epoch``."""

    def __init__(self, signum: int, epoch: int):
        self.signum, self.epoch = signum, epoch

    def groups(self, specs, num_params):
        pass

    def training(self, trainer):
        def hook(tr):
            if tr.epoch == self.epoch:
                os.kill(os.getpid(), self.signum)

        return hook

    def finished(self):
        pass

    def summary(self, metrics, run_dir):
        pass


def test_sigint_saves_the_current_epoch_and_restores_handlers(tmp_path):
    cfg = compose_train([*TINY, "trainer.epochs=50"])
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterrupted) as exc:
        train(cfg, tmp_path, "{}", _SignalAt(signal.SIGINT, 7))
    assert exc.value.exit_status == 130 and exc.value.epoch == 7
    assert signal.getsignal(signal.SIGINT) is before
    assert load_checkpoint(exc.value.checkpoint)["epoch"] == 7
    assert f"resume with: polymix train resume={tmp_path / 'checkpoints' / 'last.pt'}" in str(
        exc.value
    )


def test_resume_keeps_the_checkpoint_config():
    stored = compose_train(["scheduler=onecycle"])
    requested = compose_train(["model.gate.width=8", "trainer.progress=bar", f"resume={'ck.pt'}"])
    cfg = resume_config(stored, requested, ["resume", "trainer.progress"], epoch=5)
    assert cfg["trainer"]["progress"] == "bar" and cfg["resume"] == "ck.pt"
    assert cfg["model"] == stored["model"]  # not overridden on the command line: the checkpoint's
    with pytest.raises(ConfigError, match="model.gate.width cannot be changed on resume"):
        resume_config(stored, requested, ["model.gate.width"], epoch=5)
    with pytest.raises(ConfigError, match="model cannot be changed on resume"):
        resume_config(stored, requested, ["model"], epoch=5)
    longer = compose_train(["trainer.epochs=20000"])
    with pytest.raises(
        ConfigError, match="trainer.epochs=20000 cannot change on resume: the onecycle"
    ):
        resume_config(stored, longer, ["trainer.epochs"], epoch=5)
    constant = compose_train(["scheduler=none"])
    assert (
        resume_config(constant, longer, ["trainer.epochs"], epoch=5)["trainer"]["epochs"] == 20000
    )


# ----------------------------------------------------------------------------- numerical faults


@pytest.mark.parametrize("gradients", ["auto", "autograd"])
def test_non_finite_loss_leaves_the_state_untouched(gradients):
    cfg = compose_train(["trainer.num_samples=4"])
    p = prepare(cfg)
    optimizer = build_optimizer(p.cfg.optimizer, p.model.parameters())
    scheduler = build_scheduler(p.cfg.scheduler, optimizer, 10)
    settings = TrainSettings(10, 4, gradients=gradients)
    trainer = Trainer(p.model, p.data.x_train, p.data.y_train, settings, optimizer, scheduler)
    assert trainer.gradient_path == ("analytic" if gradients == "auto" else "autograd")
    trainer.fit([lambda tr: setattr(tr, "stop_requested", tr.epoch == 3)])
    model = {k: v.clone() for k, v in p.model.state_dict().items()}
    adam = {k: [t.clone() for t in v] for k, v in optimizer.state_dict()["buffers"].items()}
    lr, rng = trainer.current_lr(), torch.get_rng_state()
    trainer.y = torch.full_like(trainer.y, float("nan"))  # a NaN loss and NaN gradients
    trainer.stop_requested = False
    with pytest.raises(NonFiniteLoss, match="non-finite loss at epoch 4"):
        trainer.fit()
    assert all(torch.equal(model[k], v) for k, v in p.model.state_dict().items())
    assert all(
        torch.equal(a, b)
        for k, v in optimizer.state_dict()["buffers"].items()
        for a, b in zip(adam[k], v)
    )
    assert trainer.current_lr() == lr and torch.equal(torch.get_rng_state(), rng)
    assert trainer.epoch == 3 and len(trainer.history.losses) == 3


def test_validation_refuses_before_building():
    cfg = compose_train()
    cfg["model"]["experts"] = [{"kind": "pce"}, 3]
    with pytest.raises(
        ConfigError, match=re.escape("model.experts[1] must be a mapping of options, got 3")
    ):
        validate_train_config(cfg)
