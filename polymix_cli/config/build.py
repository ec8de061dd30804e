"""Building models from plain config mappings (as resolved from Hydra's YAML).

Only components named in polymix's own registries can be built: a config never names a
Python callable, so nothing outside polymix is ever imported or called from a config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polymix_cli import StochasticModel
from polymix_cli.layout import GroupSpec, Rule, resolve_layout
from polymix_cli.likelihoods import (
    NOISE_PRIORS,
    GaussianNoise,
    HalfCauchyNoisePrior,
    LogNormalNoisePrior,
)
from polymix_cli.parameter_groups import (
    DeterministicGroup,
    GaussianGroup,
    IIDGaussianGroup,
    LangevinGroup,
    LowRankGaussianGroup,
    ParameterGroup,
    ScoreNetwork,
)
from polymix_cli.priors import IIDGaussianPrior, LaplacePrior, Prior
from polymix_cli.surrogate_models import (
    GatingNetwork,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
    SurrogateModel,
)

__all__ = [
    "MODEL_KINDS",
    "NOISE_PRIOR_KINDS",
    "build_groups",
    "build_model",
    "build_noise",
    "build_surrogate",
    "layout_groups",
]

MODEL_KINDS = ("pce", "nn", "moe")
NOISE_PRIOR_KINDS = ("none", *NOISE_PRIORS)
EXPERT_KINDS = ("pce", "nn")


def _choice(value: Any, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise ValueError(f"{option} must be one of {list(allowed)}, got {value!r}")
    return value


def _expert(
    spec: Mapping[str, Any], num_inputs: int, num_outputs: int, option: str
) -> SurrogateModel:
    kind = _choice(spec.get("kind"), EXPERT_KINDS, f"{option}.kind")
    try:
        if kind == "pce":
            return PolynomialChaosExpansion(
                num_inputs,
                num_outputs,
                degree=spec.get("degree", 3),
                basis=spec.get("basis", "legendre"),
                q_norm=spec.get("q_norm", 1.0),
            )
        return NeuralNetwork(
            num_inputs,
            num_outputs,
            width=spec.get("width", 16),
            depth=spec.get("depth", 1),
            activation=spec.get("activation", "tanh"),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{option}: {err}") from None


def build_surrogate(spec: Mapping[str, Any], num_inputs: int, num_outputs: int) -> SurrogateModel:
    """A surrogate from the ``model`` config: ``kind`` pce | nn | moe."""
    kind = _choice(spec.get("kind"), MODEL_KINDS, "model.kind")
    if kind != "moe":
        return _expert(spec, num_inputs, num_outputs, "model")
    expert_list = spec.get("experts")
    if expert_list:
        experts = [
            _expert(e, num_inputs, num_outputs, f"model.experts[{m}]")
            for m, e in enumerate(expert_list)
        ]
    else:
        count = spec.get("num_experts", 2)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"model.num_experts must be an integer >= 1, got {count!r}")
        experts = [
            _expert(spec["expert"], num_inputs, num_outputs, "model.expert") for _ in range(count)
        ]
    gate = spec.get("gate", {})
    try:
        gating = GatingNetwork(
            num_inputs,
            len(experts),
            width=gate.get("width", 16),
            depth=gate.get("depth", 1),
            activation=gate.get("activation", "tanh"),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"model.gate: {err}") from None
    return MixtureOfExperts(experts, gating)


def _prior(spec: Mapping[str, Any], where: str) -> Prior:
    spec = dict(spec)
    kind = spec.pop("kind", "iid_gaussian")
    try:
        if kind == "iid_gaussian":
            return IIDGaussianPrior(**{"mean": 0.0, "std": 1.0, **spec})
        if kind == "laplace":
            return LaplacePrior(**{"loc": 0.0, "scale": 1.0, **spec})
    except TypeError as err:
        raise ValueError(f"{where}.prior: {err}") from None
    raise ValueError(f"{where}.prior.kind must be one of ['iid_gaussian', 'laplace'], got {kind!r}")


_GROUP_OPTIONS = {
    "deterministic": set(),
    "iid_gaussian": {"init_log_std"},
    "gaussian": {"init_scale", "jitter"},
    "lowrank_gaussian": {"rank"},
    "langevin": {"num_diffusion_steps", "step_size", "init_std", "width", "depth", "activation"},
}


def _group(spec: GroupSpec) -> ParameterGroup:
    where = f"layout group {spec.name} (rule {spec.rule!r})"
    unknown = set(spec.options) - _GROUP_OPTIONS[spec.kind]
    if unknown:
        raise ValueError(
            f"{where}: unknown option(s) {sorted(unknown)} for kind {spec.kind}; "
            f"allowed: {sorted(_GROUP_OPTIONS[spec.kind]) or 'none'}"
        )
    prior, opts, n = _prior(spec.prior, where), dict(spec.options), spec.size
    if spec.kind == "deterministic":
        return DeterministicGroup(spec.name, n, prior)
    if spec.kind == "iid_gaussian":
        return IIDGaussianGroup(spec.name, n, prior, **opts)
    if spec.kind == "gaussian":
        return GaussianGroup(spec.name, n, prior, **opts)
    if spec.kind == "lowrank_gaussian":
        # the rank is capped at the group's size so that a layout survives smaller models
        return LowRankGaussianGroup(
            spec.name, n, rank=min(int(opts.get("rank", 1)), n), prior=prior
        )
    score = ScoreNetwork(
        n,
        n,
        width=opts.pop("width", 32),
        depth=opts.pop("depth", 2),
        activation=opts.pop("activation", "tanh"),
    )
    return LangevinGroup(spec.name, n, score_model=score, prior=prior, **opts)


def layout_groups(layout: Mapping[str, Any], surrogate: SurrogateModel) -> list[GroupSpec]:
    """Resolve the ``layout`` config (``default`` and ``rules``) over the surrogate's blocks."""
    default = Rule.from_mapping(
        {"match": "*", **(layout.get("default") or {"kind": "deterministic"})}, "layout.default"
    )
    rules = [
        Rule.from_mapping(r, f"layout.rules[{i}]") for i, r in enumerate(layout.get("rules") or [])
    ]
    return resolve_layout(surrogate.param_blocks(), rules, default)


def build_groups(specs: list[GroupSpec]) -> list[ParameterGroup]:
    """Parameter groups for resolved specs, initialised from the global torch RNG."""
    return [_group(s) for s in specs]


def build_noise(trainer_cfg: Mapping[str, Any] | None, num_outputs: int) -> GaussianNoise | None:
    """The learned noise of ``trainer.loss=gaussian_nll`` from ``trainer.noise``
    (``init_std``, ``prior`` none | half_cauchy | log_normal, ``prior_scale``,
    ``prior_log_std``); ``None`` for any other loss, so those models carry no noise."""
    if not trainer_cfg or trainer_cfg.get("loss") != "gaussian_nll":
        return None
    spec = trainer_cfg.get("noise") or {}
    kind = _choice(spec.get("prior", "none"), NOISE_PRIOR_KINDS, "trainer.noise.prior")
    try:
        prior = None
        if kind == "half_cauchy":
            prior = HalfCauchyNoisePrior(scale=spec.get("prior_scale", 1.0))
        elif kind == "log_normal":
            prior = LogNormalNoisePrior(
                median=spec.get("prior_scale", 1.0), log_std=spec.get("prior_log_std", 1.0)
            )
        return GaussianNoise(num_outputs, init_std=spec.get("init_std", 0.1), prior=prior)
    except (TypeError, ValueError) as err:
        raise ValueError(f"trainer.noise: {err}") from None


def build_model(
    model_cfg: Mapping[str, Any],
    layout_cfg: Mapping[str, Any],
    num_inputs: int,
    num_outputs: int,
    trainer_cfg: Mapping[str, Any] | None = None,
) -> tuple[StochasticModel, list[GroupSpec]]:
    """The stochastic model and its resolved layout; with ``trainer_cfg`` whose ``loss`` is
    ``gaussian_nll``, the model carries a learned noise (see :func:`build_noise`)."""
    surrogate = build_surrogate(model_cfg, num_inputs, num_outputs)
    specs = layout_groups(layout_cfg, surrogate)
    return StochasticModel(
        surrogate, build_groups(specs), noise=build_noise(trainer_cfg, num_outputs)
    ), specs
