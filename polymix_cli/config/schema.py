# ruff: noqa: RUF009 - option() builds the dataclass fields (default, doc and what is allowed)
"""The typed schema of every config group: one dataclass per group option.

Each field holds an option's type and default, and in its ``metadata`` a one-line ``doc``
and what is allowed: ``choices`` (a tuple, or a zero-argument callable for a vocabulary
owned by a library module that imports torch), a range (``ge``/``gt``/``le``/``lt``; ``le``
may name a sibling field) or a ``check`` (a function ``(value, option) -> message | None``
for values a type cannot describe, e.g. a list of column names). :mod:`.validation` reads
them to check a config and report every bad option at once; :func:`register` stores the
classes in Hydra's ConfigStore as the schemas of the group YAML files (under
``schema/<group>/<option>``, named first in each file's ``defaults:``), so that Hydra
refuses unknown keys and wrong types while composing.

The YAML files set only what differs from these defaults. Imports neither torch nor Hydra
(``register`` imports Hydra when called).
"""

import dataclasses
import importlib
import importlib.util
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from omegaconf import MISSING

__all__ = [
    "DEVICES",
    "DISTRIBUTION_KINDS",
    "DISTRIBUTION_PARAMETERS",
    "EXPERT_KINDS",
    "EXPORT_FORMATS",
    "GRADIENTS",
    "INPUT_SCALINGS",
    "LOGGERS",
    "LOSSES",
    "MODEL_KINDS",
    "OPTIMIZERS",
    "OUTPUT_SCALINGS",
    "PROGRESS",
    "SCHEDULERS",
    "SENSITIVITY",
    "AdamConfig",
    "AdamWConfig",
    "ConstantScheduleConfig",
    "CosineConfig",
    "CsvLoggerConfig",
    "DataConfig",
    "DesignConfig",
    "EarlyStoppingConfig",
    "EvalConfig",
    "EvaluateConfig",
    "ExpertConfig",
    "ExportConfig",
    "ExportOptions",
    "FileDataConfig",
    "GateConfig",
    "GroupConfig",
    "InputDistributionConfig",
    "InspectConfig",
    "InspectOptions",
    "LayoutConfig",
    "LoggerConfig",
    "MlflowLoggerConfig",
    "ModelConfig",
    "MoeModelConfig",
    "NnModelConfig",
    "NoiseConfig",
    "OneCycleConfig",
    "OptimizerConfig",
    "PceModelConfig",
    "PredictConfig",
    "PredictOptions",
    "PriorConfig",
    "RuleConfig",
    "SGDConfig",
    "SchedulerConfig",
    "SuggestConfig",
    "SuggestOptions",
    "SweepConfig",
    "SyntheticDataConfig",
    "TensorBoardLoggerConfig",
    "TrainConfig",
    "TrainerConfig",
    "option",
    "register",
    "validation_needed",
]

# The vocabularies of the application's options (the library's own, such as the bases or
# the group kinds, are read lazily from the library modules that define them).
DEVICES = ("cpu", "cuda", "auto")
PROGRESS = ("auto", "bar", "log")
SENSITIVITY = ("auto", "pce", "monte_carlo", "off")
INPUT_SCALINGS = ("auto", "none")
OUTPUT_SCALINGS = ("none", "standardize")
MODEL_KINDS = ("pce", "nn", "moe")
EXPERT_KINDS = ("pce", "nn")
OPTIMIZERS = ("adamw", "adam", "sgd")
EXPORT_FORMATS = ("torchscript", "onnx")
SCHEDULERS = ("onecycle", "cosine", "none")
LOSSES = ("mse_sum", "gaussian_nll")
GRADIENTS = ("auto", "autograd")
INSPECT_FORMATS = ("table", "json")
INFERENCES = ("auto", "vi")
REPLICA_SELECTIONS = ("best", "ensemble")
FILE_GENERATOR = "file"


def _lazy(module: str, name: str, transform: Callable[[Any], tuple] = tuple) -> Callable[[], tuple]:
    """The choices ``module.name`` (imported when first asked for)."""
    return lambda: transform(getattr(importlib.import_module(module), name))


_GENERATORS = _lazy("polymix_cli.data.synthetic", "GENERATORS", lambda g: tuple(sorted(g)))
_BASES = _lazy("polymix_cli.surrogate_models.basis", "BASES")
_ACTIVATIONS = _lazy("polymix_cli.surrogate_models.neural", "ACTIVATIONS")
_GROUP_KINDS = _lazy("polymix_cli.layout", "GROUP_KINDS")
_PRIOR_KINDS = _lazy("polymix_cli.layout", "PRIOR_KINDS")
_NOISE_PRIORS = _lazy("polymix_cli.likelihoods", "NOISE_PRIORS", lambda p: ("none", *p))
_METRICS = _lazy("polymix_cli.reporting.sweep", "METRICS")


def option(
    default: Any,
    doc: str,
    *,
    choices: tuple | Callable[[], tuple] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | str | None = None,
    lt: float | None = None,
    check: Callable[[Any, str], str | None] | None = None,
) -> Any:
    """A dataclass field: ``default`` (lists, dicts and dataclasses are copied per
    instance), a one-line ``doc`` and what is allowed (see the module's docstring)."""
    meta = {"doc": doc}
    for key, value in (
        ("choices", choices),
        ("ge", ge),
        ("gt", gt),
        ("le", le),
        ("lt", lt),
        ("check", check),
    ):
        if value is not None:
            meta[key] = value
    if dataclasses.is_dataclass(default):
        return field(default_factory=type(default), metadata=meta)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------- value checks


def _path(what: str, required: bool = True) -> Callable[[Any, str], str | None]:
    """A non-empty path string (``???``, Hydra's missing value, is not one)."""

    def check(value: Any, name: str) -> str | None:
        if value is None and not required:
            return None
        if value == MISSING or (required and value is None):
            return f"{name}= is required: {name} must be the path of {what}, got {value!r}"
        if not isinstance(value, str) or not value:
            return f"{name} must be the path of {what}, got {value!r}"
        return None

    return check


def _names(nullable: bool) -> Callable[[Any, str], str | None]:
    def check(value: Any, name: str) -> str | None:
        if value is None and nullable:
            return None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            null = " or null" if nullable else ""
            return (
                f"{name} must be a non-empty list of column names{null}, e.g. {name}=[a,b], "
                f"got {value!r}"
            )
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            return f"{name} names {', '.join(map(repr, dupes))} more than once"
        return None

    return check


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


_FLOAT32_MAX = 3.4028234663852886e38


def _bounds(nullable: bool) -> Callable[[Any, str], str | None]:
    def check(value: Any, name: str) -> str | None:
        if value is None and nullable:
            return None

        def pair(p: Any) -> bool:
            return isinstance(p, list) and len(p) == 2 and all(_number(v) for v in p)

        if value == MISSING:
            return (
                f"{name} is required: a list of [low, high] pairs, one per input, e.g. "
                f"'{name}=[[0,10],[100,200]]'"
            )
        if not isinstance(value, list) or not value or not all(pair(p) for p in value):
            null = " (or null: the min and max of the data)" if nullable else ""
            return (
                f"{name} must be a list of [low, high] pairs, one per input{null}, "
                f"e.g. {name}=[[0,10],[100,200]], got {value!r}"
            )
        for i, (low, high) in enumerate(value):
            if not low < high:
                return (
                    f"{name} must have low < high for every input, got {value[i]} for input {i + 1}"
                )
            if max(abs(low), abs(high)) > _FLOAT32_MAX:
                return (
                    f"{name} must lie within float32's range (|bound| <= 3.4e38), got {value[i]} "
                    f"for input {i + 1}"
                )
            if struct.unpack("f", struct.pack("f", low)) == struct.unpack(
                "f", struct.pack("f", high)
            ):
                return (
                    f"{name} must have low < high in float32 for every input, got {value[i]} for "
                    f"input {i + 1}"
                )
        return None

    return check


def _probabilities(what: str, empty: bool) -> Callable[[Any, str], str | None]:
    """A list of numbers in (0, 1), each named by its index when bad."""

    def check(value: Any, name: str) -> str | None:
        if not isinstance(value, list) or (not value and not empty):
            kind = "a list" if empty else "a non-empty list"
            return f"{name} must be {kind} of {what}, got {value!r}"
        for i, v in enumerate(value):
            if not _number(v) or not 0.0 < v < 1.0:
                return f"{name}.{i} must be a number in (0.0, 1.0), got {v!r}"
        if len({float(v) for v in value}) != len(value):
            return f"{name} lists a probability more than once: {value}"
        return None

    return check


def _table_file(what: str) -> Callable[[Any, str], str | None]:
    """A path ending in .csv or .npz (the format is chosen by the extension)."""
    path_check = _path(what)

    def check(value: Any, name: str) -> str | None:
        bad = path_check(value, name)
        if bad is not None:
            return bad
        suffix = "." + value.rpartition(".")[2].lower() if "." in value else ""
        if suffix not in (".csv", ".npz"):
            return (
                f"{name}={value} must end in .csv or .npz (the format is chosen by the extension)"
            )
        return None

    return check


def _degree(value: Any, name: str) -> str | None:
    """A polynomial degree: an integer >= 0 (named as the surrogate's own message names it)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be an integer >= 0, got {value!r}"
    if value < 0:
        section, _, key = name.rpartition(".")
        return f"{section}: {key} must be >= 0, got {value}"
    return None


def _count(value: Any, name: str) -> str | None:
    """A number of things: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"{name} must be an integer >= 1, got {value!r}"
    return None


def _resume(value: Any, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        return f"{name} must be null or the path of a polymix checkpoint, got {value!r}"
    return None


# --------------------------------------------------------------------------- data


@dataclass
class DataConfig:
    """``data``: where the training and test data come from.

    The key ``generator`` chooses the option, and with it the variant: a synthetic
    generator (:class:`SyntheticDataConfig`) or ``file`` (:class:`FileDataConfig`).
    """

    VARIANT_KEY: ClassVar[str] = "generator"

    generator: str = option(MISSING, "a synthetic generator, or file (the data option)")
    seed: int = option(1234, "seed of the training set (data=file: of the random test split)", ge=0)
    val_seed: int = option(
        5678, "seed of the validation set (data=file: of the random validation split)", ge=0
    )
    input_scaling: str = option(
        "auto",
        "auto: inputs mapped from bounds onto [-1, 1] (standardised for Hermite bases) | none",
        choices=INPUT_SCALINGS,
    )
    output_scaling: str = option(
        "none",
        "standardize: train on outputs of zero mean and unit variance (reported in your units) | none",
        choices=OUTPUT_SCALINGS,
    )

    def has_validation(self) -> bool:
        """Whether these options give a validation set (see the variants)."""
        return False

    @staticmethod
    def variants() -> dict[str, type]:
        synthetic = dict.fromkeys(_GENERATORS(), SyntheticDataConfig)
        return {**synthetic, FILE_GENERATOR: FileDataConfig}


@dataclass
class SyntheticDataConfig(DataConfig):
    """``data=sign_sine|sine|sincos|ishigami``: draws from a synthetic generator."""

    generator: str = option("sign_sine", "the synthetic generator", choices=_GENERATORS)
    num_train: int = option(50, "training points", ge=1)
    num_test: int = option(
        1000, "held-out test points from the same generator (>= 2: R^2 needs a spread)", ge=2
    )
    num_val: int = option(
        200,
        "validation points from the same generator, drawn with val_seed (0: no validation set)",
        ge=0,
    )
    noise_std: float = option(
        0.05, "standard deviation of the Gaussian noise on each output", ge=0.0
    )
    bounds: list[Any] = option(  # Any: integer bounds are numbers too (see _bounds)
        [[-1.0, 1.0]],
        "[low, high] of the uniform input distribution, per input",
        check=_bounds(nullable=False),
    )
    test_seed: int = option(4321, "seed of the test set", ge=0)
    train_inputs: str | None = option(
        None,
        "a CSV or NPZ file with a column per input (x1, x2, ...): the generator is evaluated "
        "there, with its noise, instead of at num_train uniform draws (e.g. a polymix design)",
        check=_path("a CSV or NPZ file of input rows, or null", required=False),
    )

    def has_validation(self) -> bool:
        """Whether these options give a validation set."""
        return self.num_val > 0

    @staticmethod
    def unknown_message(name: str, key: str, section: Mapping[str, Any]) -> str:
        if key in FILE_ONLY_KEYS:
            return (
                f"{name}.{key} applies only to data from a file (data=file); these data come "
                f"from the generator {section['generator']!r}"
            )
        keys = ", ".join(f.name for f in dataclasses.fields(SyntheticDataConfig))
        return f"unknown option {name}.{key}; allowed keys in {name}: {keys}"


@dataclass
class FileDataConfig(DataConfig):
    """``data=file``: your own data from a CSV or NPZ file."""

    generator: str = option(FILE_GENERATOR, "fixed for data=file", choices=(FILE_GENERATOR,))
    path: str | None = option(
        None,
        "the CSV or NPZ file (required); relative paths start from where you run polymix",
        check=_path("a CSV file (with a header row) or an NPZ file, e.g. data.path=data.csv"),
    )
    inputs: list[str] | None = option(
        None,
        "input column names, e.g. [x1, x2]; null: every column that is not an output",
        check=_names(nullable=True),
    )
    outputs: list[str] | None = option(
        None, "output column names (required), e.g. [y]", check=_names(nullable=False)
    )
    test_path: str | None = option(
        None,
        "a test file with the same columns (CSV or NPZ); null: hold out test_fraction of path's rows",
        check=_path("a CSV or NPZ test file with the same columns, or null", required=False),
    )
    test_fraction: float = option(
        0.2, "share of path's rows held out at random as the test set", gt=0.0, lt=1.0
    )
    val_path: str | None = option(
        None,
        "a validation file with the same columns (CSV or NPZ); null: hold out val_fraction "
        "of the training rows",
        check=_path("a CSV or NPZ validation file with the same columns, or null", required=False),
    )
    val_fraction: float = option(
        0.2,
        "share of the training rows (those not in the test set) held out at random as the "
        "validation set; 0: none",
        ge=0.0,
        lt=1.0,
    )
    bounds: list[Any] | None = option(  # Any: see _bounds
        None,
        "[low, high] per input, e.g. [[0, 10], [100, 200]]; null: the min and max of path's inputs",
        check=_bounds(nullable=True),
    )
    output_scaling: str = option(
        "standardize",
        "standardize: train on outputs of zero mean and unit variance (reported in your units) | none",
        choices=OUTPUT_SCALINGS,
    )

    def has_validation(self) -> bool:
        """Whether these options give a validation set."""
        return self.val_path is not None or self.val_fraction > 0

    @staticmethod
    def unknown_message(name: str, key: str, section: Mapping[str, Any]) -> str:
        options = ", ".join(f.name for f in dataclasses.fields(FileDataConfig)[1:])
        return (
            f"{name}.{key} does not apply to data from a file (data.generator=file); "
            f"its options: {options}"
        )


FILE_ONLY_KEYS = tuple(
    f.name
    for f in dataclasses.fields(FileDataConfig)
    if f.name not in {g.name for g in dataclasses.fields(SyntheticDataConfig)}
)


# -------------------------------------------------------------------------- model


@dataclass
class PceOptions:
    """The options of a polynomial chaos expansion."""

    degree: int = option(3, "pce: total polynomial degree (>= 0)", check=_degree)
    basis: str = option(
        "legendre",
        "pce: legendre (inputs on [-1, 1]) | hermite (standard normal inputs)",
        choices=_BASES,
    )
    q_norm: float = option(
        1.0, "pce: 1 = total order, (0, 1) = hyperbolic truncation", gt=0.0, le=1.0
    )


@dataclass
class NetworkOptions:
    """The options of a fully connected network (a network surrogate, or the gate)."""

    width: int = option(16, "hidden units per layer", ge=1)
    depth: int = option(1, "hidden layers", ge=1)
    activation: str = option(
        "tanh", "tanh | relu | gelu | silu | elu | sigmoid | softplus", choices=_ACTIVATIONS
    )


@dataclass
class TermLimit:
    """The limit on the polynomial terms of a model (a PCE, or a mixture's PCE experts)."""

    max_terms: int = option(
        100_000,
        "the most polynomial terms (of all PCE experts together), counted from degree, inputs "
        "and q_norm before anything is built: evaluation holds eval.num_samples draws of every "
        "coefficient at once (1000 x 100000 float32 = 400 MB per output) and training a basis "
        "of rows x terms; raise it on a machine with the memory",
        ge=1,
    )


@dataclass
class ModelConfig:
    """``model``: the surrogate.

    The key ``kind`` chooses the option, and with it the variant:
    :class:`PceModelConfig`, :class:`NnModelConfig` or :class:`MoeModelConfig`.
    """

    VARIANT_KEY: ClassVar[str] = "kind"

    kind: str = option(MISSING, "pce | nn | moe (the model option)")

    @staticmethod
    def variants() -> dict[str, type]:
        return {"pce": PceModelConfig, "nn": NnModelConfig, "moe": MoeModelConfig}


@dataclass
class PceModelConfig(TermLimit, PceOptions, ModelConfig):
    """``model=pce``: a single polynomial chaos expansion."""

    kind: str = option("pce", "the surrogate", choices=MODEL_KINDS)


@dataclass
class NnModelConfig(NetworkOptions, ModelConfig):
    """``model=nn``: a fully connected network."""

    kind: str = option("nn", "the surrogate", choices=MODEL_KINDS)


@dataclass
class _ExpertKind:
    kind: str = option("pce", "pce | nn", choices=EXPERT_KINDS)


@dataclass
class ExpertConfig(NetworkOptions, PceOptions, _ExpertKind):
    """One expert of a mixture: a PCE (``kind: pce``) or a network (``kind: nn``).

    It holds the options of both kinds; those of the other kind are ignored.
    """


@dataclass
class GateConfig(NetworkOptions):
    """The gating network of a mixture."""


@dataclass
class MoeModelConfig(TermLimit, ModelConfig):
    """``model=moe``: ``num_experts`` copies of ``expert`` blended by a softmax gate."""

    kind: str = option("moe", "the surrogate", choices=MODEL_KINDS)
    num_experts: int = option(2, "number of experts (>= 1)", check=_count)
    expert: ExpertConfig = option(ExpertConfig(), "the shared spec of every expert")
    experts: list[ExpertConfig] | None = option(
        None, "optional list of expert specs (each as `expert`) for a heterogeneous mixture"
    )
    gate: GateConfig = option(GateConfig(), "the gating network")


# ------------------------------------------------------------------------- layout


@dataclass
class PriorConfig:
    """The prior of a parameter group."""

    kind: str = option(
        "iid_gaussian",
        "iid_gaussian (mean, std) | laplace (loc, scale) | ard (penalty) | horseshoe "
        "(global_scale, slab_scale); ard and horseshoe: iid_gaussian or gaussian groups",
        choices=_PRIOR_KINDS,
    )
    mean: float = option(0.0, "iid_gaussian: mean")
    std: float = option(1.0, "iid_gaussian: standard deviation", gt=0.0)
    loc: float = option(0.0, "laplace: location")
    scale: float = option(1.0, "laplace: scale", gt=0.0)
    penalty: float | None = option(
        None,
        "ard, closed-form fit: log prior odds against a term, nats per active term "
        "(null: 0.5 log N, the BIC's; 0: plain type-II maximum likelihood)",
        ge=0.0,
    )
    global_scale: float = option(0.1, "horseshoe: the global scale tau", gt=0.0)
    slab_scale: float = option(5.0, "horseshoe: the slab scale c (caps a term's std)", gt=0.0)

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of this kind's prior."""
        if self.kind == "laplace":
            return {"loc": self.loc, "scale": self.scale}
        if self.kind == "ard":
            return {"penalty": self.penalty}
        if self.kind == "horseshoe":
            return {"global_scale": self.global_scale, "slab_scale": self.slab_scale}
        return {"mean": self.mean, "std": self.std}


@dataclass
class GroupConfig:
    """How the parameters a rule (or the default) claims are treated."""

    kind: str = option(
        "deterministic",
        "deterministic | iid_gaussian | gaussian | lowrank_gaussian | langevin",
        choices=_GROUP_KINDS,
    )
    prior: PriorConfig = option(PriorConfig(), "the prior of the group")
    options: dict[str, Any] = option(
        {},
        "kind-specific: iid_gaussian init_log_std; gaussian init_scale, jitter; lowrank_gaussian "
        "rank; langevin num_diffusion_steps, step_size, init_std, width, depth, activation",
    )


@dataclass
class RuleConfig(GroupConfig):
    """A layout rule: the parameter blocks it matches, and their group kind and prior."""

    kind: str = option(
        MISSING,
        "deterministic | iid_gaussian | gaussian | lowrank_gaussian | langevin",
        choices=_GROUP_KINDS,
    )
    match: str = option(
        "*", "glob over block names with an optional [a:b] slice over the block's first axis"
    )

    @staticmethod
    def unknown_message(name: str, key: str, section: Mapping[str, Any]) -> str:
        allowed = sorted(f.name for f in dataclasses.fields(RuleConfig))
        return f"{name}: unknown key(s) {[key]}; allowed: {allowed}"


@dataclass
class LayoutConfig:
    """``layout``: which parameter blocks are stochastic, and how."""

    default: GroupConfig = option(GroupConfig(), "everything no rule claims")
    rules: list[RuleConfig] = option([], "rules over the surrogate's named parameter blocks")


# ----------------------------------------------------------------------- optimizer


@dataclass
class OptimizerConfig:
    """``optimizer``: the optimizer and its learning rate.

    The key ``name`` chooses the option, and with it the variant: :class:`AdamWConfig`,
    :class:`AdamConfig` or :class:`SGDConfig`.
    """

    VARIANT_KEY: ClassVar[str] = "name"

    name: str = option(MISSING, "adamw | adam | sgd (the optimizer option)")
    lr: float = option(0.01, "learning rate", gt=0.0)
    weight_decay: float = option(0.0, "weight decay (>= 0)", ge=0.0)

    @staticmethod
    def variants() -> dict[str, type]:
        return {"adamw": AdamWConfig, "adam": AdamConfig, "sgd": SGDConfig}


@dataclass
class AdamWConfig(OptimizerConfig):
    """``optimizer=adamw``: Adam with decoupled weight decay."""

    name: str = option("adamw", "adamw | adam | sgd", choices=OPTIMIZERS)
    weight_decay: float = option(0.0001, "decoupled weight decay", ge=0.0)


@dataclass
class AdamConfig(OptimizerConfig):
    """``optimizer=adam``: Adam with an L2 penalty."""

    name: str = option("adam", "adamw | adam | sgd", choices=OPTIMIZERS)


@dataclass
class SGDConfig(OptimizerConfig):
    """``optimizer=sgd``: stochastic gradient descent with momentum."""

    name: str = option("sgd", "adamw | adam | sgd", choices=OPTIMIZERS)
    lr: float = option(0.001, "learning rate", gt=0.0)
    momentum: float = option(0.9, "momentum", ge=0.0, lt=1.0)


# ----------------------------------------------------------------------- scheduler


@dataclass
class SchedulerConfig:
    """``scheduler``: the learning rate over the epochs.

    The key ``name`` chooses the option, and with it the variant: :class:`OneCycleConfig`,
    :class:`CosineConfig` or :class:`ConstantScheduleConfig`.
    """

    VARIANT_KEY: ClassVar[str] = "name"

    name: str = option(MISSING, "onecycle | cosine | none (the scheduler option)")

    @staticmethod
    def variants() -> dict[str, type]:
        return {"onecycle": OneCycleConfig, "cosine": CosineConfig, "none": ConstantScheduleConfig}


@dataclass
class OneCycleConfig(SchedulerConfig):
    """``scheduler=onecycle``: warm up to max_lr_factor x lr, then anneal to about 0."""

    name: str = option("onecycle", "onecycle | cosine | none", choices=SCHEDULERS)
    max_lr_factor: float = option(10.0, "peak learning rate as a multiple of optimizer.lr", gt=0.0)
    pct_start: float = option(0.3, "fraction of the epochs spent warming up", gt=0.0, lt=1.0)


@dataclass
class CosineConfig(SchedulerConfig):
    """``scheduler=cosine``: cosine annealing to min_lr_factor x lr over all epochs."""

    name: str = option("cosine", "onecycle | cosine | none", choices=SCHEDULERS)
    min_lr_factor: float = option(0.0, "final learning rate as a multiple of optimizer.lr", ge=0.0)


@dataclass
class ConstantScheduleConfig(SchedulerConfig):
    """``scheduler=none``: a constant learning rate."""

    name: str = option("none", "onecycle | cosine | none", choices=SCHEDULERS)


# ------------------------------------------------------------------------- trainer


@dataclass
class NoiseConfig:
    """The learned Gaussian noise of ``trainer.loss=gaussian_nll`` (not built for mse_sum)."""

    init_std: float = option(
        0.1, "initial noise std of every output, in the model's output units", gt=0.0
    )
    prior: str = option(
        "none",
        "prior on the noise std, added to the distribution loss: none | half_cauchy | log_normal",
        choices=_NOISE_PRIORS,
    )
    prior_scale: float = option(1.0, "half_cauchy: its scale; log_normal: its median", gt=0.0)
    prior_log_std: float = option(1.0, "log_normal: the std of log(noise std)", gt=0.0)


@dataclass
class EarlyStoppingConfig:
    """``trainer.early_stopping``: stop when the validation objective stops improving.

    The validation objective is the negative log predictive density of the validation
    set (``val.nll`` of metrics.json), estimated from ``num_samples`` parameter draws
    that are the same at every check. Off while ``patience`` is null.
    """

    patience: int | None = option(
        None,
        "stop after this many epochs without an improvement of the validation objective "
        "(null: no early stopping)",
        ge=1,
    )
    min_delta: float = option(
        0.0, "the least decrease of the validation objective that counts as an improvement", ge=0.0
    )
    every: int = option(50, "check the validation objective every this many epochs", ge=1)
    num_samples: int = option(
        200, "parameter draws of each check (the same draws at every check)", ge=2
    )


@dataclass
class TrainerConfig:
    """``trainer``: the training loop.

    Also the settings of the :class:`~polymix_cli.training.loop.Trainer`.
    """

    epochs: int = option(10000, "optimisation steps, each over all training points", ge=1)
    num_samples: int = option(100, "parameter draws per step", ge=1)
    weight_factor: float | None = option(
        None,
        "weight of the distribution loss (KL to the prior) in the total; null: 1 for "
        "gaussian_nll (the ELBO), 0.1 for mse_sum",
        ge=0.0,
    )
    loss: str = option(
        "mse_sum",
        "mse_sum: sum of squared errors / draws | gaussian_nll: -log N(y | y_hat, noise^2) "
        "with a learned noise std per output",
        choices=LOSSES,
    )
    batch_size: int | None = option(
        None, "points per optimisation step (null: all); the data term is scaled by N / batch", ge=1
    )
    compile: bool = option(False, "torch.compile the loss (about 30 s to compile)")
    gradients: str = option(
        "auto",
        "auto: hand-derived gradients where the model allows, autograd elsewhere | autograd",
        choices=GRADIENTS,
    )
    noise: NoiseConfig = option(NoiseConfig(), "the learned noise of loss=gaussian_nll")
    replicas: int = option(
        1,
        "independent initialisations trained together in one vectorised run (a batch "
        "dimension of the parameters; mean-field layouts only)",
        ge=1,
    )
    replica_selection: str = option(
        "best",
        (
            "with replicas > 1: best (the replica with the lowest validation NLL when there "
            "is a validation split, else the lowest final training objective) | ensemble "
            "(the equal-weight mixture of the replicas' posteriors; loss=mse_sum only)"
        ),
        choices=REPLICA_SELECTIONS,
    )
    early_stopping: EarlyStoppingConfig = option(
        EarlyStoppingConfig(),
        "stop on the validation objective; checkpoints/best.pt keeps the best state",
    )
    log_every: int = option(1000, "a log line every this many epochs", ge=1)
    checkpoint_every: int = option(
        0, "also keep checkpoints/epoch_<N>.pt every this many epochs (0: only last.pt)", ge=0
    )
    num_threads: int | None = option(
        None,
        "torch intra-op threads; null: 1 for small steps, else torch's default or the launcher's share",
        ge=1,
        le=4096,
    )
    device: str = option("cpu", "cpu | cuda | auto (cuda when available)", choices=DEVICES)
    progress: str = option(
        "auto", "auto (a bar on a terminal, log lines otherwise) | bar | log", choices=PROGRESS
    )
    # last: the fields before it are also passed by position (TrainSettings)
    inference: str = option(
        "auto",
        "auto: the closed-form sparse Bayesian fit where the model allows (a pce, an ard "
        "prior on its coefficients, loss gaussian_nll, full batches), stochastic VI "
        "otherwise | vi: always stochastic VI",
        choices=INFERENCES,
    )

    def kl_weight(self) -> float:
        """``weight_factor``, or its default for the loss when null (1 for gaussian_nll)."""
        if self.weight_factor is not None:
            return float(self.weight_factor)
        return 1.0 if self.loss == "gaussian_nll" else 0.1

    def problems(self) -> list[str]:
        """Options of this section that contradict each other."""
        found = []
        if self.replicas > 1 and self.replica_selection == "ensemble" and self.loss != "mse_sum":
            found.append(
                f"trainer.replica_selection=ensemble needs trainer.loss=mse_sum (each replica "
                f"learns its own noise level), got trainer.loss={self.loss!r}; use best"
            )
        if self.replicas > 1 and self.early_stopping.patience is not None:
            found.append(
                f"trainer.early_stopping.patience={self.early_stopping.patience} cannot be "
                f"combined with trainer.replicas={self.replicas} (each replica would stop at "
                f"its own epoch); with a validation split, replica_selection=best already keeps "
                f"the replica with the lowest validation NLL"
            )
        return found


# ---------------------------------------------------------------------------- eval

# the parameters of each kind of input distribution (eval.input_distributions)
DISTRIBUTION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"),
    "normal": ("mean", "std"),
    "lognormal": ("log_mean", "log_std"),
    "truncated_normal": ("mean", "std", "low", "high"),
    "beta": ("a", "b", "low", "high"),
    "triangular": ("low", "mode", "high"),
}
DISTRIBUTION_KINDS = tuple(DISTRIBUTION_PARAMETERS)


@dataclass
class InputDistributionConfig:
    """One entry of ``eval.input_distributions``: an input's distribution, in your units.

    ``kind`` names the distribution and with it the parameters it takes (all required,
    no others): uniform (low, high), normal (mean, std), lognormal (log_mean, log_std:
    the mean and std of log X), truncated_normal (mean, std, low, high: a normal cut to
    [low, high]), beta (a, b, low, high: Beta(a, b) stretched onto [low, high]),
    triangular (low, mode, high).
    """

    kind: str = option(
        MISSING,
        "uniform | normal | lognormal | truncated_normal | beta | triangular",
        choices=DISTRIBUTION_KINDS,
    )
    low: float | None = option(None, "uniform, truncated_normal, beta, triangular: lower end")
    high: float | None = option(None, "uniform, truncated_normal, beta, triangular: upper end")
    mean: float | None = option(None, "normal, truncated_normal: mean (before truncation)")
    std: float | None = option(
        None, "normal, truncated_normal: standard deviation (before truncation)", gt=0.0
    )
    log_mean: float | None = option(None, "lognormal: mean of log X")
    log_std: float | None = option(None, "lognormal: standard deviation of log X", gt=0.0)
    a: float | None = option(None, "beta: first shape parameter", gt=0.0)
    b: float | None = option(None, "beta: second shape parameter", gt=0.0)
    mode: float | None = option(None, "triangular: the mode, in [low, high]")

    def parameters(self) -> dict[str, float]:
        """The parameters of this kind, by name."""
        return {k: getattr(self, k) for k in DISTRIBUTION_PARAMETERS[self.kind]}

    def invalid(self, name: str) -> list[str]:
        """What is wrong with this entry as a whole (its fields are checked one by one
        first): a missing parameter of its kind, one of another kind, an empty range."""
        takes = DISTRIBUTION_PARAMETERS[self.kind]
        found = []
        others = ("low", "high", "mean", "std", "log_mean", "log_std", "a", "b", "mode")
        for key in takes + tuple(k for k in others if k not in takes):
            value = getattr(self, key)
            if key in takes and value is None:
                found.append(f"{name}.{key} is missing: kind {self.kind} takes {', '.join(takes)}")
            elif key not in takes and value is not None:
                found.append(
                    f"{name}.{key} is not a parameter of kind {self.kind}; it takes "
                    f"{', '.join(takes)}"
                )
        if found or "low" not in takes:
            return found
        if not self.low < self.high:
            found.append(f"{name}.high must be > {name}.low ({self.low}), got {self.high}")
        elif self.kind == "triangular" and not self.low <= self.mode <= self.high:
            found.append(
                f"{name}.mode must be in [low, high] = [{self.low}, {self.high}], got {self.mode}"
            )
        return found


@dataclass
class EvalConfig:
    """``eval``: metrics on the train and test sets, plots and Sobol indices."""

    num_samples: int = option(1000, "parameter draws (>= 2: a spread needs two)", ge=2)
    band: float = option(0.8, "central probability of the plotted band", gt=0.0, lt=1.0)
    levels: list[float] = option(
        [0.5, 0.8, 0.9, 0.95],
        "central levels reported as coverage and interval_width, in (0, 1)",
        check=_probabilities("numbers in (0, 1)", empty=False),
    )
    grid_points: int = option(200, "points of the plotting grid over the input range", ge=2)
    sensitivity: str = option(
        "auto",
        "auto (closed form for a PCE, Monte Carlo otherwise) | pce (model.kind=pce only) | "
        "monte_carlo | off",
        choices=SENSITIVITY,
    )
    sensitivity_samples: int | None = option(
        None,
        "parameter draws for the indices: the first this many of num_samples (null: all, or "
        "for Monte Carlo on a model of many inputs as many as its work budget allows, logged)",
        ge=1,
        le="num_samples",
    )
    sensitivity_base_samples: int = option(
        2048,
        "Monte Carlo: quasi-random input points in each base sample A and B (best a power of "
        "2; halved for a model of many inputs whose design's basis would not fit, logged)",
        ge=2,
    )
    input_distributions: list[InputDistributionConfig] | None = option(
        None,
        "one entry per input, e.g. [{kind: lognormal, log_mean: 0, log_std: 0.25}, {kind: uniform, "
        "low: 0, high: 1}]: the inputs' distributions for the indices and the output's moments "
        "(null: uniform over the training bounds, or the Hermite basis's normal)",
    )
    posterior_level: float = option(
        0.9,
        "central probability of the posterior intervals in metrics.json's posterior section",
        gt=0.0,
        lt=1.0,
    )
    posterior_params: int = option(
        100,
        "metrics.json lists every parameter's posterior for models of at most this many "
        "parameters (0: groups only)",
        ge=0,
    )


# ------------------------------------------------------------------------- logger


def _dir_or_null(value: Any, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value or value == MISSING):
        return f"{name} must be null or a folder, got {value!r}"
    return None


def _uri(value: Any, name: str) -> str | None:
    if not isinstance(value, str) or not value or value == MISSING:
        return (
            f"{name} must be an MLflow tracking URI, e.g. sqlite:///outputs/mlflow.db, "
            f"http://host:5000 or a folder, got {value!r}"
        )
    return None


@dataclass
class CsvLoggerConfig:
    """``logger=csv``: the config, losses and metrics as CSV files (no extra package)."""

    log_dir: str | None = option(
        None,
        "folder of params.csv and metrics.csv; null: <run dir>/csv",
        check=_dir_or_null,
    )


@dataclass
class TensorBoardLoggerConfig:
    """``logger=tensorboard``: TensorBoard event files (the extra ``tracking``)."""

    log_dir: str | None = option(
        None,
        "null: <run dir>/tensorboard (a sweep's jobs lie under its sweep dir); a folder: "
        "<log_dir>/<name>/<run>",
        check=_dir_or_null,
    )


@dataclass
class MlflowLoggerConfig:
    """``logger=mlflow``: an MLflow run per job (the extra ``tracking``)."""

    tracking_uri: str = option(
        "sqlite:///outputs/mlflow.db",
        "where runs are stored: a local SQLite file (relative to where you run polymix), "
        "a folder, or a tracking server (http://host:5000)",
        check=_uri,
    )
    experiment: str | None = option(None, "the MLflow experiment; null: the run's name (the study)")


LOGGERS = ("csv", "tensorboard", "mlflow")


@dataclass
class LoggerConfig:
    """``logger``: experiment trackers fed during training, none by default.

    Pick one or several: ``logger=tensorboard``, ``logger=[tensorboard,mlflow]``. Each
    logs the resolved config, the losses and learning rate every ``trainer.log_every``
    epochs and the final metrics; a tracker that fails warns once and the run goes on.
    """

    csv: CsvLoggerConfig | None = option(None, "CSV files (logger=csv)")
    tensorboard: TensorBoardLoggerConfig | None = option(
        None, "TensorBoard event files (logger=tensorboard)"
    )
    mlflow: MlflowLoggerConfig | None = option(None, "an MLflow run (logger=mlflow)")

    def enabled(self) -> list[str]:
        """The names of the loggers that are on, in :data:`LOGGERS` order."""
        return [name for name in LOGGERS if getattr(self, name) is not None]


# the Python package each logger needs (the extra ``tracking``), checked before a run
LOGGER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


# ---------------------------------------------------------------------- top level


@dataclass
class SweepConfig:
    """``sweep``: how the jobs of a multirun are ranked and what they return."""

    sort_by: str = option(
        "val.crps",
        "rank the jobs of the summary by this metric (a val. metric: the test set stays unseen)",
        choices=_METRICS,
    )
    objective: str = option(
        "val.crps",
        "the value each job returns to the sweeper (a val. metric: the test set stays unseen)",
        choices=_METRICS,
    )


@dataclass
class TrainConfig:
    """``polymix train``: the primary config."""

    data: DataConfig = option(MISSING, "the data (data=sign_sine|sine|sincos|ishigami|file)")
    model: ModelConfig = option(MISSING, "the surrogate (model=pce|nn|moe)")
    layout: LayoutConfig = option(MISSING, "which parameter blocks are stochastic, and how")
    optimizer: OptimizerConfig = option(MISSING, "the optimizer (optimizer=adamw|adam|sgd)")
    scheduler: SchedulerConfig = option(
        MISSING, "the learning rate schedule (scheduler=onecycle|cosine|none)"
    )
    trainer: TrainerConfig = option(TrainerConfig(), "the training loop")
    eval: EvalConfig = option(EvalConfig(), "evaluation")
    name: str = option("polymix", "name of the study: the run dir is outputs/<name>/<timestamp>")
    seed: int = option(1234, "seed of model initialisation and parameter draws", ge=0)
    # Any, not str: resume=3 is reported as not a path rather than read as the file "3"
    resume: Any = option(
        None, "a checkpoint to continue training from (null: a fresh run)", check=_resume
    )
    sweep: SweepConfig = option(SweepConfig(), "sweeps")
    logger: LoggerConfig = option(
        LoggerConfig(), "experiment trackers (logger=none|csv|tensorboard|mlflow, or a list)"
    )

    def problems(self) -> list[str]:
        """What no single option says: options that contradict each other, and a logger
        whose package is not installed."""
        found = self.trainer.problems()
        if self.trainer.early_stopping.patience is not None and not self.data.has_validation():
            found.append(
                f"trainer.early_stopping.patience={self.trainer.early_stopping.patience} needs a "
                f"validation set: {_VALIDATION_HINT[type(self.data) is FileDataConfig]}"
            )
        for name in self.logger.enabled():
            package = LOGGER_PACKAGES.get(name)
            if package is not None and importlib.util.find_spec(package) is None:
                found.append(
                    f"logger={name} needs the {package} package, which is not installed: "
                    f"pip install 'polymix-cli[tracking]'"
                )
        if self.eval.sensitivity == "pce" and self.model.kind != "pce":
            found.append(
                f"eval.sensitivity=pce needs model.kind=pce (the closed form reads a PCE's "
                f"coefficients), got model.kind={self.model.kind!r}; use auto or monte_carlo"
            )
        return found


# how to get a validation set, for messages: [synthetic data, data=file]
_VALIDATION_HINT = (
    "set data.num_val > 0",
    "set data.val_fraction > 0 or data.val_path",
)


def validation_needed(
    cfg: TrainConfig, keys: tuple[str, ...] = ("objective", "sort_by")
) -> str | None:
    """Why a sweep of ``cfg`` cannot rank its jobs: a ``val.`` metric in ``sweep.<key>``
    without a validation set (one line naming the options), else ``None``."""
    if cfg.data.has_validation():
        return None
    for key in keys:
        value = getattr(cfg.sweep, key)
        if value.startswith("val."):
            return (
                f"sweep.{key}={value} needs a validation set: "
                f"{_VALIDATION_HINT[type(cfg.data) is FileDataConfig]}, or rank by another "
                f"metric (e.g. sweep.{key}=losses.total; a test. metric selects on the test set)"
            )
    return None


def _or_null(check: Callable[[Any, str], str | None]) -> Callable[[Any, str], str | None]:
    return lambda value, name: None if value is None else check(value, name)


def _overrides(
    name: str,
    classes: tuple[type, ...],
    keys: tuple[str, ...],
    doc: str,
    null: str = "the checkpoint's",
) -> type:
    """A dataclass of nullable copies of the options ``keys`` of ``classes`` (the first
    that defines each), default null (which means ``null``): values that replace a
    checkpoint's own."""
    found = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            found.setdefault(f.name, f)
    fields = []
    for key in keys:
        f = found[key]
        meta = {k: v for k, v in f.metadata.items() if k != "le"}
        meta["doc"] = f"{meta['doc']} (null: {null})"
        if "check" in meta:
            meta["check"] = _or_null(meta["check"])
        fields.append((key, Optional[f.type], field(default=None, metadata=meta)))  # noqa: UP045
    return dataclasses.make_dataclass(name, fields, namespace={"__doc__": doc})


DataOverrides = _overrides(
    "DataOverrides",
    (SyntheticDataConfig, FileDataConfig),
    (
        "num_train",
        "num_test",
        "num_val",
        "noise_std",
        "seed",
        "test_seed",
        "val_seed",
        "path",
        "test_path",
        "test_fraction",
        "val_path",
        "val_fraction",
    ),
    "``data`` of polymix evaluate: data settings that replace the checkpoint's.",
)
EvalOverrides = _overrides(
    "EvalOverrides",
    (EvalConfig,),
    (
        "num_samples",
        "band",
        "grid_points",
        "sensitivity",
        "sensitivity_samples",
        "sensitivity_base_samples",
        "input_distributions",
        "posterior_level",
        "posterior_params",
    ),
    "``eval`` of polymix evaluate: evaluation settings that replace the checkpoint's.",
)
DeviceOverride = _overrides(
    "DeviceOverride",
    (TrainerConfig,),
    ("device",),
    "``trainer`` of polymix evaluate and predict: the device (null: cpu).",
    null="cpu",
)


def _checkpoint_option() -> Any:
    """``ckpt`` of the commands that read a checkpoint."""
    return option(
        MISSING,
        "path to a polymix checkpoint",
        check=_path("a polymix checkpoint, e.g. ckpt=outputs/<name>/<run>/checkpoints/last.pt"),
    )


def _draw_seed_option() -> Any:
    """``seed`` of the commands that draw from a checkpoint's model."""
    return option(None, "seed of the parameter draws (null: the training run's seed)", ge=0)


def _quantiles_option(what: str) -> Any:
    """The quantiles of predict and export."""
    return option(
        [0.05, 0.5, 0.95],
        f"probabilities in (0, 1) of {what} (may be [])",
        check=_probabilities("probabilities in (0, 1) (may be empty)", empty=True),
    )


def _include_noise_option() -> Any:
    """Whether predict and export add the learned noise."""
    return option(
        True,
        "models with a learned noise: true = the distribution of a new observation; "
        "false = the surrogate's spread only",
    )


@dataclass
class EvaluateConfig:
    """``polymix evaluate``: re-evaluate a checkpoint; non-null values replace its own."""

    ckpt: str = option(
        MISSING,
        "path to a polymix checkpoint (e.g. outputs/.../checkpoints/last.pt)",
        check=_path("a polymix checkpoint"),
    )
    name: str = option("evaluate", "run dir: outputs/<name>/<timestamp>")
    seed: int | None = _draw_seed_option()
    data: DataOverrides = option(DataOverrides(), "override the data settings")  # type: ignore[valid-type]
    eval: EvalOverrides = option(EvalOverrides(), "override the evaluation settings")  # type: ignore[valid-type]
    trainer: DeviceOverride = option(DeviceOverride(), "the device")  # type: ignore[valid-type]


@dataclass
class PredictOptions:
    """``predict``: draws, quantiles and what is written."""

    num_samples: int = option(1000, "parameter draws per row", ge=2)
    quantiles: list[float] = _quantiles_option("the quantile columns <output>_q<p>")
    allow_extrapolation: bool = option(
        False, "true: also predict rows outside the training bounds (with a warning)"
    )
    save_draws: bool = option(
        False,
        "true (.npz output only): also write the raw draws, <output>_draws (rows, num_samples)",
    )
    include_noise: bool = _include_noise_option()


@dataclass
class PredictConfig:
    """``polymix predict``: a trained model's predictive distribution at new inputs."""

    ckpt: str = _checkpoint_option()
    input: str = option(
        MISSING,
        "CSV or NPZ file with a column for each of the model's inputs",
        check=_table_file("a CSV or NPZ file of input rows, e.g. input=new.csv"),
    )
    output: str = option(
        MISSING,
        "file to write, .csv or .npz (by its extension)",
        check=_table_file("the CSV or NPZ file to write, e.g. output=predictions.csv"),
    )
    name: str = option("predict", "run dir: outputs/<name>/<timestamp>")
    seed: int | None = _draw_seed_option()
    predict: PredictOptions = option(PredictOptions(), "draws, quantiles and outputs")
    trainer: DeviceOverride = option(DeviceOverride(), "the device")  # type: ignore[valid-type]

    def problems(self) -> list[str]:
        if self.predict.save_draws and not self.output.lower().endswith(".npz"):
            message = (
                f"predict.save_draws=true needs an .npz output (the draws are an array per "
                f"output), got output={self.output}"
            )
            return [message]
        return []


# ----------------------------------------------------------------- design, suggest

DESIGN_METHODS = ("lhs", "sobol")
ACQUISITIONS = ("epistemic_std", "integrated_variance")


@dataclass
class DesignConfig:
    """``polymix design``: a space-filling design of ``n`` input points over ``bounds``."""

    bounds: list[Any] = option(  # Any: integer bounds are numbers too (see _bounds)
        MISSING,
        "[low, high] per input, e.g. [[0, 10], [100, 200]] (required)",
        check=_bounds(nullable=False),
    )
    inputs: list[str] | None = option(
        None,
        "the input column names, one per pair of bounds (null: x1, x2, ...)",
        check=_names(nullable=True),
    )
    n: int = option(MISSING, "number of points (required)", ge=1)
    method: str = option(
        "lhs",
        "lhs: Latin hypercube (one point in each of n slices of every input) | sobol: "
        "scrambled Sobol' points (best n a power of 2)",
        choices=DESIGN_METHODS,
    )
    output: str = option(
        MISSING,
        "file to write, .csv or .npz (by its extension)",
        check=_table_file("the CSV or NPZ file to write, e.g. output=design.csv"),
    )
    seed: int = option(1234, "seed of the design", ge=0)
    name: str = option("design", "run dir: outputs/<name>/<timestamp>")

    def problems(self) -> list[str]:
        if self.inputs is not None and len(self.inputs) != len(self.bounds):
            message = (
                f"inputs names {len(self.inputs)} input(s) but bounds gives {len(self.bounds)} "
                f"pair(s); give one name per [low, high] pair"
            )
            return [message]
        return []


@dataclass
class SuggestOptions:
    """``suggest``: where the surrogate is least sure, and how a batch is spread out."""

    acquisition: str = option(
        "integrated_variance",
        "integrated_variance: the largest reduction of the surrogate's epistemic variance "
        "(over parameter draws, noise left out) summed over the box | epistemic_std: the "
        "largest spread (std over parameter draws); both from the draws conditioned on the "
        "training inputs",
        choices=ACQUISITIONS,
    )
    num_samples: int = option(200, "parameter draws the spread is estimated from", ge=2)
    candidates: int = option(
        4096, "quasi-random candidate points scored at once (best a power of 2)", ge=1
    )
    min_distance: float | None = option(
        None,
        "smallest distance between a suggestion and any training input or other suggestion "
        "(besides the believer update that spreads a batch), "
        "in the box scaled to [0, 1] per input (null: half the spacing of n_train + n points, "
        "0.5 (n_train + n)^(-1/d))",
        ge=0.0,
    )
    bounds: list[Any] | None = option(  # Any: see _bounds
        None,
        "[low, high] per input to search within, inside the training bounds (null: the "
        "training bounds)",
        check=_bounds(nullable=True),
    )


@dataclass
class SuggestConfig:
    """``polymix suggest``: the next ``n`` inputs to simulate, where a model is least sure."""

    ckpt: str = option(
        MISSING,
        "path to a polymix checkpoint",
        check=_path("a polymix checkpoint, e.g. ckpt=outputs/<name>/<run>/checkpoints/last.pt"),
    )
    n: int = option(MISSING, "number of points to suggest (required)", ge=1)
    output: str = option(
        MISSING,
        "file to write, .csv or .npz (by its extension): the model's input columns",
        check=_table_file("the CSV or NPZ file to write, e.g. output=next.csv"),
    )
    name: str = option("suggest", "run dir: outputs/<name>/<timestamp>")
    seed: int | None = option(
        None, "seed of the parameter draws and candidates (null: the training run's seed)", ge=0
    )
    suggest: SuggestOptions = option(SuggestOptions(), "acquisition, draws, candidates, spacing")
    trainer: DeviceOverride = option(DeviceOverride(), "the device")  # type: ignore[valid-type]


@dataclass
class InspectOptions:
    """``inspect``: the intervals and what is printed."""

    level: float = option(0.9, "central probability of the posterior intervals", gt=0.0, lt=1.0)
    num_samples: int = option(
        1000, "draws of the groups without closed-form marginals (langevin)", ge=2
    )
    format: str = option(
        "table",
        "table: rich tables | json: the posterior as metrics.json records it, every parameter",
        choices=INSPECT_FORMATS,
    )


@dataclass
class InspectConfig:
    """``polymix inspect``: print the posterior of a checkpoint's parameters."""

    ckpt: str = _checkpoint_option()
    seed: int | None = option(
        None, "seed of the draws of sampled groups (null: the training run's seed)", ge=0
    )
    inspect: InspectOptions = option(InspectOptions(), "intervals and output format")


@dataclass
class ExportOptions:
    """``export``: the fixed parameter draws and the quantiles of the exported module."""

    num_samples: int = option(1000, "parameter draws fixed in the module", ge=2)
    quantiles: list[float] = _quantiles_option("the quantiles the module returns")
    include_noise: bool = _include_noise_option()
    format: str = option(
        "torchscript",
        "torchscript: a module for torch.jit.load (torch only); onnx: an ONNX model for "
        "onnxruntime and other ONNX runtimes (needs the extra: pip install "
        "'polymix-cli[onnx]'; no learned noise: set include_noise=false)",
        choices=EXPORT_FORMATS,
    )


@dataclass
class ExportConfig:
    """``polymix export``: a TorchScript module (or an ONNX model) that predicts without
    polymix."""

    ckpt: str = _checkpoint_option()
    output: str = option(
        MISSING,
        "the file to write, e.g. surrogate.pt (export.format=onnx: surrogate.onnx)",
        check=_path("the file to write, e.g. output=surrogate.pt"),
    )
    name: str = option("export", "run dir: outputs/<name>/<timestamp>")
    seed: int | None = _draw_seed_option()
    export: ExportOptions = option(ExportOptions(), "draws, quantiles and noise")


# -------------------------------------------------------------------- ConfigStore

# schema/<group>/<name>: the classes named in the defaults lists of the YAML files
SCHEMAS: dict[str, type] = {
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "predict": PredictConfig,
    "design": DesignConfig,
    "suggest": SuggestConfig,
    "inspect": InspectConfig,
    "export": ExportConfig,
    "data/synthetic": SyntheticDataConfig,
    "data/file": FileDataConfig,
    "model/pce": PceModelConfig,
    "model/nn": NnModelConfig,
    "model/moe": MoeModelConfig,
    "layout/layout": LayoutConfig,
    "optimizer/adamw": AdamWConfig,
    "optimizer/adam": AdamConfig,
    "optimizer/sgd": SGDConfig,
    "scheduler/onecycle": OneCycleConfig,
    "scheduler/cosine": CosineConfig,
    "scheduler/none": ConstantScheduleConfig,
    "trainer/trainer": TrainerConfig,
    "eval/eval": EvalConfig,
    "logger/logger": LoggerConfig,
    "logger/csv": CsvLoggerConfig,
    "logger/tensorboard": TensorBoardLoggerConfig,
    "logger/mlflow": MlflowLoggerConfig,
}


def register() -> None:
    """Store :data:`SCHEMAS` in Hydra's ConfigStore as ``schema/<group>/<name>``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for key, node in SCHEMAS.items():
        group, _, name = key.rpartition("/")
        store.store(group=f"schema/{group}" if group else "schema", name=name, node=node)


def fields_of(cls: type) -> Mapping[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}
