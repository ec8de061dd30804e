"""The Hydra apps behind ``polymix train``, ``evaluate``, ``predict``, ``design`` and
``suggest``.

Errors become one line on stderr and an exit status: 2 for configuration and usage
errors, 1 for failures while running, 130/143 for a run stopped by SIGINT/SIGTERM (after
saving its checkpoint). ``POLYMIX_DEBUG=1`` shows the full traceback. Hydra's own errors,
raised before the task runs, are reported by :mod:`polymix_cli.cli.main`. torch is
imported only once the task runs, so that a mistyped option fails at once.

In a multirun (``-m``) a failing job instead records its reason in ``status.json`` and
returns the worst objective, ``inf``, so the sweep goes on and an optuna study steers
away from it. Every job writes ``status.json`` (ok or failed, the reason, seconds).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from polymix_cli.cli import errors
from polymix_cli.config import schema
from polymix_cli.reporting.sweep import metric_value, ranking_score, write_status
from polymix_cli.runs.threads import threads_per_job

# the typed schemas that the YAML files name in their defaults lists (schema/<group>/<name>)
schema.register()


def _register_slurm_launcher() -> None:
    """Make ``hydra/launcher=slurm`` (polymix's launcher, hydra_plugins/polymix_slurm_launcher)
    known to Hydra. Hydra finds plugins by listing the folders of the ``hydra_plugins``
    namespace package, which sees an installed wheel's copy but not an editable install's
    (setuptools' import hook cannot be listed); registering the class works for both."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.polymix_slurm_launcher import SlurmLauncher

    Plugins.instance().register(SlurmLauncher)


_register_slurm_launcher()


def _register_ray_launcher() -> None:
    """``hydra/launcher=ray`` (hydra_plugins/polymix_ray_launcher), registered as the Slurm
    launcher is; only with the extra ``ray`` installed (main.py says so without it)."""
    from hydra.core.plugins import Plugins

    from hydra_plugins import polymix_ray_launcher

    launcher = getattr(polymix_ray_launcher, "RayLauncher", None)
    if launcher is not None:
        Plugins.instance().register(launcher)


_register_ray_launcher()

# configs/hydra/launcher/{joblib,submitit_local,ray}.yaml restate the plugins' configs of
# the same name, with polymix's defaults and comments; Hydra validates them against those
# schemas and warns that matching by name is deprecated. The match is intended: silence
# only that warning, only for these files (also in launcher workers, which import this).
warnings.filterwarnings(
    "ignore",
    category=UserWarning,
    message=r"\s*'hydra/launcher/(joblib|submitit_local|ray)' is validated against ConfigStore schema",
)

# The configs/ folder at the top of the repository, installed as the package
# polymix_cli.configs (pyproject.toml): read from the wheel, or from the checkout itself
# with an editable install. `--config-dir DIR` adds a folder of the user's own configs.
CONFIG_PATH = "pkg://polymix_cli.configs"

# What a failed job (or one without its objective) returns to the sweeper: the worst value.
FAILED_OBJECTIVE = float("inf")


def _run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _launch_dir() -> str:
    """The folder polymix was started in: relative paths on the command line and in the
    configs start from it, also when ``hydra.job.chdir=true`` made the run dir current."""
    return HydraConfig.get().runtime.cwd


def _from_launch_dir(path: str | None) -> str | None:
    """``path`` as given when the launch dir is current (messages then name it as the
    user wrote it); made absolute from the launch dir under ``hydra.job.chdir=true``."""
    import os

    from polymix_cli.data.files import absolute_path

    if not isinstance(path, str) or not path:
        return None
    if os.path.realpath(os.getcwd()) == os.path.realpath(_launch_dir()):
        return path
    return absolute_path(path, _launch_dir())


def _multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def _overridden_keys() -> list[str]:
    """The config keys (or group names) the user set on the command line for this job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = list(HydraConfig.get().overrides.task)
    return [o.key_or_group for o in OverridesParser.create().parse_overrides(task)]


def _guarded(
    body: Callable[[], Any], job: dict[str, Any] | None = None, status: bool = True
) -> Any:
    """Run ``body`` and record ``status.json``; turn expected errors into a one-line
    message and an exit status (single run), or into a failed status and the worst
    objective (multirun). ``job`` collects what ``body`` learns for the status file;
    ``status=False``: no status file (a command that writes nothing)."""
    from polymix_cli.config.validation import ConfigError
    from polymix_cli.runs.checkpoint import CheckpointError
    from polymix_cli.runs.predict import PredictInterrupted
    from polymix_cli.runs.train import RunDiverged, RunInterrupted

    job = {} if job is None else job
    job.setdefault("status", status)
    start = time.perf_counter()
    try:
        result = body()
    except (RunInterrupted, PredictInterrupted) as err:  # stopped: end the program, sweep or not
        _record(err, err.exit_status, start, job)
        _leave(err, err.exit_status, label="")
    except RunDiverged as err:
        return _fail(err, errors.RUNTIME, start, job, label="error")
    except (ConfigError, CheckpointError, OmegaConfBaseException) as err:
        return _fail(err, errors.USAGE, start, job, label="error")
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        return _fail(err, errors.RUNTIME, start, job, label=f"error ({type(err).__name__})")
    if status:
        write_status(_run_dir(), "ok", time.perf_counter() - start, threads=job.get("threads"))
    return result


def _messages(err: BaseException) -> list[str]:
    """An error's one-line messages: one per bad option of a config error, else its first line."""
    messages = getattr(err, "messages", None)
    if isinstance(messages, list) and messages:
        return [errors.first_line(m) for m in messages]
    line = errors.first_line(err) or type(err).__name__
    key = getattr(err, "full_key", None)  # OmegaConf's errors know the option they are about
    if isinstance(err, OmegaConfBaseException) and key and str(key) not in line:
        line = f"{key}: {line}"
    return [line]


def _record(err: BaseException, status: int, start: float, job: dict[str, Any]) -> None:
    """Write the failed ``status.json`` of this job (best effort)."""
    if not job.get("status", True):
        return
    message = "; ".join(_messages(err))
    reason = message if status == errors.USAGE else f"{type(err).__name__}: {message}"
    try:
        write_status(
            _run_dir(),
            "failed",
            time.perf_counter() - start,
            reason=reason,
            error=type(err).__name__,
            exit_status=status,
            threads=job.get("threads"),
        )
    except OSError:
        pass  # the one-line message still says what went wrong


def _fail(err: BaseException, status: int, start: float, job: dict[str, Any], label: str) -> float:
    if errors.debug():
        raise err
    _record(err, status, start, job)
    if _multirun():  # into the job's log (and the terminal) instead of ending the sweep
        message = "; ".join(_messages(err))
        logging.getLogger("polymix").error(
            f"polymix: {label}: {message} (job {HydraConfig.get().job.num} failed; the sweep goes on)"
        )
        return FAILED_OBJECTIVE
    _leave(err, status, label)
    return FAILED_OBJECTIVE  # not reached


def _leave(err: BaseException, status: int, label: str) -> None:
    if errors.debug():
        raise err
    lines = [f"{label}: {m}" if label else m for m in _messages(err)]
    errors.leave("\n".join(lines), status)


def _launcher_threads(trainer: Any) -> int | None:
    """``trainer.num_threads``, or this job's share of the cores under a parallel launcher."""
    requested = trainer["num_threads"] if isinstance(trainer, dict) else None
    if requested is not None and (
        isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
    ):
        return None  # validation reports it
    launcher = OmegaConf.select(HydraConfig.get(), "launcher")
    launcher = OmegaConf.to_container(launcher, resolve=False) if launcher is not None else {}
    return threads_per_job(requested, launcher)  # type: ignore[arg-type]


def _run_info(name: str) -> Any:
    """The run and, in a multirun, its sweep dir and job number, for the loggers."""
    from polymix_cli.reporting.loggers import RunInfo

    hydra_cfg = HydraConfig.get()
    sweep = _multirun()
    return RunInfo(
        _run_dir(),
        name,
        Path(_launch_dir()),
        Path(hydra_cfg.sweep.dir).absolute() if sweep else None,
        hydra_cfg.job.num if sweep else None,
    )


def parse_config(text: str) -> dict[str, Any]:
    """The stored YAML of a checkpoint's config as a plain dict. A stored config is data:
    an interpolation in it (``${...}``) is never resolved, it stays a string (which the
    option's check then refuses)."""
    return OmegaConf.to_container(OmegaConf.create(text), resolve=False)  # type: ignore[return-value]


def _train_config(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run's config as a plain dict and, with ``resume=PATH``, the loaded checkpoint
    (whose config, brought up to the current schema, the run keeps)."""
    from polymix_cli.config.validation import ConfigError, refuse_callables
    from polymix_cli.runs.checkpoint import checkpoint_config, load_checkpoint
    from polymix_cli.runs.train import resume_config

    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    refuse_callables(plain)
    resume = plain["resume"]
    if resume is None:
        return plain, None
    if not isinstance(resume, str) or not resume:
        raise ConfigError(f"resume must be the path of a polymix checkpoint, got {resume!r}")
    resume = _from_launch_dir(resume)
    state = load_checkpoint(resume)
    data = plain.get("data")
    if isinstance(data, dict) and data.get("generator") == "file":
        # as the stored config names them: absolutely (see train_app)
        from polymix_cli.data.files import absolute_path

        for key in ("path", "test_path"):
            if isinstance(data.get(key), str) and data[key]:
                data[key] = absolute_path(data[key], _launch_dir())
    stored = checkpoint_config(state, resume, parse_config)
    return resume_config(stored, plain, _overridden_keys(), state["epoch"]), state


def _config_yaml(config: Any) -> str:
    """The YAML of a config (a schema dataclass), every option present."""
    from polymix_cli.config.validation import config_dict

    return OmegaConf.to_yaml(OmegaConf.create(config_dict(config)))


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float | None:
    """Train one model; return ``sweep.objective`` (lower is better) for sweepers."""
    from polymix_cli.cli.console import ConsoleUI
    from polymix_cli.config.schema import validation_needed
    from polymix_cli.config.validation import ConfigError, parse_train_config
    from polymix_cli.data.files import resolve_data_paths
    from polymix_cli.runs.train import train

    job: dict[str, Any] = {}

    def body() -> float | None:
        plain, state = _train_config(cfg)
        job["threads"] = _launcher_threads(plain.get("trainer"))
        config = parse_train_config(plain)
        why = validation_needed(config) if _multirun() else None
        if why is not None:  # the sweep could not rank this job
            raise ConfigError(why)
        if state is None:
            # the checkpoint's config names the data files absolutely, so that evaluate
            # finds them from any directory (relative paths start from the current one)
            config.data = resolve_data_paths(config.data, _launch_dir())
        ui = ConsoleUI(config.trainer.progress)
        metrics = train(
            config,
            _run_dir(),
            _config_yaml(config),
            ui,
            resume=state,
            max_threads=job["threads"],
            run_info=_run_info(config.name),
        )
        objective = config.sweep.objective
        value = ranking_score(objective, metric_value(metrics, objective))
        return FAILED_OBJECTIVE if value is None else value

    return _guarded(body, job)


@hydra.main(config_path=CONFIG_PATH, config_name="evaluate", version_base="1.3")
def evaluate_app(cfg: DictConfig) -> None:
    from polymix_cli.cli.console import ConsoleUI
    from polymix_cli.config.schema import EvaluateConfig
    from polymix_cli.config.validation import config_dict, parse_section, refuse_callables
    from polymix_cli.runs.evaluate import evaluate_checkpoint

    def body() -> None:
        plain = OmegaConf.to_container(cfg, resolve=True)
        refuse_callables(plain)
        config = parse_section(EvaluateConfig, plain)
        overrides = {
            "data": config_dict(config.data),
            "eval": config_dict(config.eval),
            "trainer": config_dict(config.trainer),
            "seed": config.seed,
        }
        ckpt = Path(_from_launch_dir(config.ckpt) or config.ckpt)
        evaluate_checkpoint(ckpt, overrides, _run_dir(), ConsoleUI("log"), parse_config)

    _guarded(body)


@hydra.main(config_path=CONFIG_PATH, config_name="predict", version_base="1.3")
def predict_app(cfg: DictConfig) -> None:
    from polymix_cli.config.validation import parse_predict_config
    from polymix_cli.runs.checkpoint import load_trained
    from polymix_cli.runs.predict import PredictSettings, predict_file, terminate_cleanly

    def body() -> None:
        plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        config = parse_predict_config(plain)
        for key in ("ckpt", "input", "output"):  # from the launch dir, as data.path
            setattr(config, key, _from_launch_dir(getattr(config, key)) or getattr(config, key))
        trained = load_trained(config.ckpt, parse_config, config.trainer.device)
        settings = PredictSettings.from_config(config.predict, config.seed)
        result = predict_file(trained, config.input, config.output, settings)
        quantiles = ", ".join(f"{q:g}" for q in settings.quantiles) or "none"
        logging.getLogger("polymix").info(
            f"wrote {result.output}: {result.rows} row(s); mean, std and quantiles ({quantiles}) of "
            f"{', '.join(trained.output_names)} from {settings.num_samples} draws (seed {result.seed})"
            + (f"; {result.extrapolated} row(s) extrapolated" if result.extrapolated else "")
        )

    with terminate_cleanly():
        _guarded(body)


@hydra.main(config_path=CONFIG_PATH, config_name="design", version_base="1.3")
def design_app(cfg: DictConfig) -> None:
    from polymix_cli.config.schema import DesignConfig
    from polymix_cli.config.validation import parse_section, refuse_callables
    from polymix_cli.runs.design import design_file

    def body() -> None:
        plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        refuse_callables(plain)
        config = parse_section(DesignConfig, plain)
        config.output = _from_launch_dir(config.output) or config.output
        path, points, names = design_file(config)
        logging.getLogger("polymix").info(
            f"wrote {path}: {points.shape[0]} point(s) of {', '.join(names)} "
            f"({config.method}, seed {config.seed}); add the outputs and train with data=file"
        )

    _guarded(body)


@hydra.main(config_path=CONFIG_PATH, config_name="suggest", version_base="1.3")
def suggest_app(cfg: DictConfig) -> None:
    from polymix_cli.config.schema import SuggestConfig
    from polymix_cli.config.validation import ConfigError, parse_section, refuse_callables
    from polymix_cli.data.sources import dataset_from_config
    from polymix_cli.runs.checkpoint import load_trained
    from polymix_cli.runs.design import suggest_file

    def body() -> None:
        plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        refuse_callables(plain)
        config = parse_section(SuggestConfig, plain)
        for key in ("ckpt", "output"):  # from the launch dir, as data.path
            setattr(config, key, _from_launch_dir(getattr(config, key)) or getattr(config, key))
        trained = load_trained(config.ckpt, parse_config, config.trainer.device)
        try:  # the training inputs, which suggestions keep away from
            data = dataset_from_config(trained.cfg.data)
        except ValueError as err:
            raise ConfigError(f"the training data of {config.ckpt}: {err}") from None
        seed = trained.cfg.seed if config.seed is None else config.seed
        path, found = suggest_file(
            trained, data.x_train, config.n, config.output, config.suggest, seed
        )
        logging.getLogger("polymix").info(
            f"wrote {path}: {config.n} point(s) of {', '.join(trained.input_names)} where the "
            f"model is least sure (epistemic std {found.spread.min():.4g} to "
            f"{found.spread.max():.4g}, largest over the box {found.max_spread:.4g}), at least "
            f"{found.used:.3g} apart and from the {data.x_train.shape[0]} training inputs "
            f"(unit box; seed {seed})"
        )

    _guarded(body)


def _with_checkpoint(cfg: DictConfig, section: type) -> tuple[Any, str, Any]:
    """A checkpoint command's config (``section``, parsed), its ``ckpt`` (from the launch
    dir) and the trained model it holds."""
    from polymix_cli.config.validation import parse_section, refuse_callables
    from polymix_cli.runs.checkpoint import load_trained

    plain = OmegaConf.to_container(cfg, resolve=True)
    refuse_callables(plain)
    config = parse_section(section, plain)
    ckpt = _from_launch_dir(config.ckpt) or config.ckpt
    return config, ckpt, load_trained(ckpt, parse_config)


@hydra.main(config_path=CONFIG_PATH, config_name="inspect", version_base="1.3")
def inspect_app(cfg: DictConfig) -> None:
    """Print the posterior of a checkpoint's parameters; writes nothing."""
    from polymix_cli.cli.inspect import inspect_json, print_posterior
    from polymix_cli.config.schema import InspectConfig
    from polymix_cli.reporting.evaluation import model_posterior

    def body() -> None:
        config, ckpt, trained = _with_checkpoint(cfg, InspectConfig)
        seed = trained.cfg.seed if config.seed is None else config.seed
        options = config.inspect
        summary = model_posterior(
            trained.model, trained.maps, options.level, options.num_samples, seed
        )
        if options.format == "json":
            print(inspect_json(trained, summary, ckpt))
        else:
            print_posterior(trained, summary, ckpt)

    _guarded(body, status=False)


# how `polymix export` names what it wrote (export.format)
FORMAT_NAMES = {"torchscript": "TorchScript", "onnx": "ONNX"}


@hydra.main(config_path=CONFIG_PATH, config_name="export", version_base="1.3")
def export_app(cfg: DictConfig) -> None:
    """Write a TorchScript module (or an ONNX model) of a checkpoint's model."""
    from polymix_cli.config.schema import ExportConfig
    from polymix_cli.runs.export import ExportSettings, export_trained

    def body() -> None:
        config, _, trained = _with_checkpoint(cfg, ExportConfig)
        output = _from_launch_dir(config.output) or config.output
        settings = ExportSettings.from_config(config.export, config.seed)
        result = export_trained(trained, output, settings)
        quantiles = ", ".join(f"{q:g}" for q in settings.quantiles) or "none"
        noise = " (with the learned noise)" if result.with_noise else ""
        logging.getLogger("polymix").info(
            f"wrote {result.output}: {FORMAT_NAMES[result.format]}, inputs "
            f"({', '.join(trained.input_names)}) -> "
            f"mean, std and quantiles ({quantiles}) of {', '.join(trained.output_names)} from "
            f"{settings.num_samples} draws (seed {result.seed}){noise}; checked against "
            f"polymix (largest relative difference {result.max_difference:.2g})"
        )

    _guarded(body)


def _check_before_run(name: str) -> None:
    """Compose and validate a single run's config before Hydra makes its run dir, so that
    a bad option is reported (every one, each on its line) with nothing written. Sweeps
    (checked per job and by the sweep callback), resumed runs (which keep their
    checkpoint's config) and Hydra's own flags (--cfg, --help, ...) are left to the app.
    Raises :class:`~polymix_cli.config.validation.ConfigError`."""
    from hydra._internal.utils import get_args_parser

    from polymix_cli.config.compose import SCHEMA_OF, compose
    from polymix_cli.config.schema import EvaluateConfig, ExportConfig, InspectConfig
    from polymix_cli.config.validation import (
        ConfigError,
        parse_predict_config,
        parse_section,
        parse_train_config,
        refuse_callables,
    )

    SECTIONS = {"inspect": InspectConfig, "export": ExportConfig}
    args = get_args_parser().parse_args(sys.argv[1:])
    flags = (args.multirun, args.cfg, args.help, args.hydra_help, args.info)
    if any(flags) or args.shell_completion or args.config_name or args.config_path:
        return
    try:
        job = compose(name, args.overrides, CONFIG_PATH, config_dir=args.config_dir)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - not about an option's value: the app reports it
        return
    if name == "train" and job.get("resume") is None:
        _check_terms(parse_train_config(job))
    elif name == "evaluate":
        refuse_callables(job)
        parse_section(EvaluateConfig, job)
    elif name == "predict":
        parse_predict_config(job)
    elif name in ("design", "suggest"):
        refuse_callables(job)
        parse_section(SCHEMA_OF[name], job)
    elif name in SECTIONS:
        refuse_callables(job)
        config = parse_section(SECTIONS[name], job)
        if name == "export" and config.export.format == "onnx":
            from polymix_cli.runs.export_onnx import require_onnx

            require_onnx()  # the extra, before the run dir is made


def _check_terms(config: Any) -> None:
    """Refuse too many polynomial terms (``model.max_terms``) before the run dir is made:
    the inputs are counted from the generator or the data file's header (a file that
    cannot be read is left to the app, which says why)."""
    from polymix_cli.config.build import check_terms
    from polymix_cli.config.schema import FileDataConfig
    from polymix_cli.config.validation import ConfigError
    from polymix_cli.data.files import DataFileError, open_table
    from polymix_cli.data.synthetic import GENERATORS

    d = config.data
    if not isinstance(d, FileDataConfig):
        num_inputs = GENERATORS[d.generator].num_inputs
    elif d.inputs is not None:
        num_inputs = len(d.inputs)
    else:
        try:
            columns = open_table(d.path, "data.path").columns
        except (DataFileError, OSError):
            return
        num_inputs = len([c for c in columns if c not in d.outputs])
    try:
        check_terms(config.model, num_inputs)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _explaining(name: str, app: Callable[[], Any]) -> Callable[[], Any]:
    """``app``, after :func:`_check_before_run`; a composition that Hydra refused (a wrong
    type, an unknown key) is reported with every bad option at once (see
    :mod:`polymix_cli.config.compose`)."""

    def run() -> Any:
        from hydra.errors import ConfigCompositionException

        if not errors.debug():
            _check_before_run(name)
        try:
            return app()
        except ConfigCompositionException as err:
            if errors.debug():
                raise
            from hydra._internal.utils import get_args_parser

            from polymix_cli.config.compose import explain_composition

            try:
                args = get_args_parser().parse_args(sys.argv[1:])
                explained = explain_composition(
                    args.config_name or name,
                    args.overrides,
                    CONFIG_PATH,
                    err,
                    config_dir=args.config_dir,
                )
            except Exception:  # noqa: BLE001 - then Hydra's own message says it
                explained = None
            if explained is None:
                raise
            raise explained from err

    return run


APPS = {
    "train": _explaining("train", train_app),
    "evaluate": _explaining("evaluate", evaluate_app),
    "predict": _explaining("predict", predict_app),
    "design": _explaining("design", design_app),
    "suggest": _explaining("suggest", suggest_app),
    "inspect": _explaining("inspect", inspect_app),
    "export": _explaining("export", export_app),
}
