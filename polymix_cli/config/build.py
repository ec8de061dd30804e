"""Building models from the typed sections of a config (see :mod:`polymix_cli.config.schema`).

Only components named in polymix's own registries can be built: a config never names a
Python callable, so nothing outside polymix is ever imported or called from a config.
"""

from __future__ import annotations

import re

from polymix_cli import StochasticModel
from polymix_cli.config.schema import (
    ExpertConfig,
    GroupConfig,
    LayoutConfig,
    ModelConfig,
    MoeModelConfig,
    NnModelConfig,
    NoiseConfig,
    PceModelConfig,
    TrainerConfig,
)
from polymix_cli.layout import (
    PRIOR_KINDS,
    SCALE_MIXTURE_GROUPS,
    SCALE_MIXTURE_PRIORS,
    GroupSpec,
    Rule,
    resolve_layout,
)
from polymix_cli.likelihoods import (
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
from polymix_cli.priors import ARDPrior, HorseshoePrior, IIDGaussianPrior, LaplacePrior, Prior
from polymix_cli.surrogate_models import (
    GatingNetwork,
    MixtureOfExperts,
    NeuralNetwork,
    PolynomialChaosExpansion,
    SurrogateModel,
)
from polymix_cli.surrogate_models.basis import num_terms

__all__ = [
    "build_groups",
    "build_model",
    "build_noise",
    "build_surrogate",
    "check_terms",
    "layout_groups",
]


def _expert(
    spec: PceModelConfig | NnModelConfig | ExpertConfig,
    num_inputs: int,
    num_outputs: int,
    option: str,
) -> SurrogateModel:
    """A PCE or a network from its section (``kind`` pce | nn)."""
    try:
        if spec.kind == "pce":
            return PolynomialChaosExpansion(
                num_inputs, num_outputs, degree=spec.degree, basis=spec.basis, q_norm=spec.q_norm
            )
        return NeuralNetwork(
            num_inputs, num_outputs, width=spec.width, depth=spec.depth, activation=spec.activation
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{option}: {err}") from None


def _terms(count: int) -> str:
    return f"{count} term" if count == 1 else f"{count} terms"


def check_terms(model: ModelConfig, num_inputs: int) -> None:
    """Refuse a model whose polynomial terms exceed ``model.max_terms``, counted
    (:func:`~polymix_cli.surrogate_models.basis.num_terms`) before anything is built.

    Args:
        model: The ``model`` section.
        num_inputs: The input dimension.

    Raises:
        ValueError: One line naming the options (degree, inputs, q_norm), the count, and
            the largest degree that would fit.
    """
    if isinstance(model, PceModelConfig):
        where, specs = "model", [model]
    elif isinstance(model, MoeModelConfig):
        where = "model.experts" if model.experts else "model.expert"
        specs = list(model.experts) if model.experts else [model.expert] * model.num_experts
        specs = [e for e in specs if e.kind == "pce"]
    else:
        return
    limit = model.max_terms

    def total(lower: int = 0, q_norm: float | None = None) -> int:
        return sum(
            num_terms(num_inputs, max(0, e.degree - lower), e.q_norm if q_norm is None else q_norm)
            for e in specs
        )

    count = total()
    if count <= limit:
        return
    same = len({(e.degree, e.q_norm) for e in specs}) == 1
    if same:
        degree, q_norm = f"{where}.degree", f"{where}.q_norm"
        what = f"{degree}={specs[0].degree} with {num_inputs} inputs ({q_norm}={specs[0].q_norm:g})"
        if len(specs) > 1:
            what += f" and {len(specs)} PCE experts"
    else:
        degree, q_norm = f"each {where}[i].degree", f"{where}[i].q_norm"
        what = (
            f"{where} (degrees {', '.join(str(e.degree) for e in specs)}) with {num_inputs} inputs"
        )
    fits = []
    lower = next((k for k in range(1, max(e.degree for e in specs) + 1) if total(k) <= limit), None)
    if lower is not None and same:
        fits.append(f"{degree}={specs[0].degree - lower} ({_terms(total(lower))})")
    elif lower is not None:
        fits.append(f"{degree} lowered by {lower} ({_terms(total(lower))})")
    q_fit = next((q / 10 for q in range(9, 0, -1) if total(0, q / 10) <= limit), None)
    if q_fit is not None:
        fits.append(f"{q_norm}={q_fit:g} ({_terms(total(0, q_fit))})")
    hint = f"{' or '.join(fits)} would fit, or raise" if fits else "raise"
    raise ValueError(
        f"{what} gives {count} polynomial terms, more than model.max_terms={limit}; {hint} "
        "model.max_terms if the machine has the memory (eval.num_samples draws of every term "
        "are held at once)"
    )


def build_surrogate(model: ModelConfig, num_inputs: int, num_outputs: int) -> SurrogateModel:
    """A surrogate from the ``model`` section: a PCE, a network or a mixture of experts.

    A mixture takes its experts from ``model.experts`` when that list is not empty, else
    ``model.num_experts`` copies of ``model.expert``, and its gate from ``model.gate``.

    Args:
        model: The ``model`` section (``kind`` pce, nn or moe).
        num_inputs: The input dimension.
        num_outputs: The output dimension.

    Returns:
        A :class:`~polymix_cli.surrogate_models.PolynomialChaosExpansion`, a
        :class:`~polymix_cli.surrogate_models.NeuralNetwork` or a
        :class:`~polymix_cli.surrogate_models.MixtureOfExperts`.

    Raises:
        ValueError: If a component refuses its options (the message starts with the
            option, e.g. ``model.experts[1]`` or ``model.gate``), or the polynomial terms
            exceed ``model.max_terms`` (see :func:`check_terms`).
    """
    check_terms(model, num_inputs)
    if not isinstance(model, MoeModelConfig):
        return _expert(model, num_inputs, num_outputs, "model")  # type: ignore[arg-type]
    if model.experts:
        experts = [
            _expert(e, num_inputs, num_outputs, f"model.experts[{m}]")
            for m, e in enumerate(model.experts)
        ]
    else:
        experts = [
            _expert(model.expert, num_inputs, num_outputs, "model.expert")
            for _ in range(model.num_experts)
        ]
    gate = model.gate
    try:
        gating = GatingNetwork(
            num_inputs, len(experts), width=gate.width, depth=gate.depth, activation=gate.activation
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"model.gate: {err}") from None
    return MixtureOfExperts(experts, gating)


def _prior(spec: dict, where: str, size: int, group_kind: str) -> Prior:
    """The prior of a resolved group: ``spec`` holds its ``kind`` and that kind's arguments."""
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind in SCALE_MIXTURE_PRIORS and group_kind not in SCALE_MIXTURE_GROUPS:
        raise ValueError(
            f"{where}: prior {kind} needs a Gaussian variational group (kind "
            f"{' or '.join(SCALE_MIXTURE_GROUPS)}), got kind {group_kind}"
        )
    try:
        if kind == "iid_gaussian":
            return IIDGaussianPrior(**spec)
        if kind == "laplace":
            return LaplacePrior(**spec)
        if kind == "ard":
            return ARDPrior(size, **spec)
        if kind == "horseshoe":
            return HorseshoePrior(size, **spec)
    except (TypeError, ValueError) as err:
        text = str(err)
        extra = re.search(r"unexpected keyword argument '(\w+)'", text)
        if extra:
            raise ValueError(
                f"unknown option {where}.prior.{extra[1]} for prior kind {kind}"
            ) from None
        named = next((k for k in spec if text.startswith(f"{k} ")), None)
        if named is not None:  # "scale must be positive, got -1": name the option
            raise ValueError(f"{where}.prior.{text}") from None
        raise ValueError(f"{where}.prior: {err}") from None
    raise ValueError(f"{where}.prior.kind must be one of {list(PRIOR_KINDS)}, got {kind!r}")


_GROUP_OPTIONS = {
    "deterministic": set(),
    "iid_gaussian": {"init_log_std"},
    "gaussian": {"init_scale", "jitter"},
    "lowrank_gaussian": {"rank"},
    "langevin": {"num_diffusion_steps", "step_size", "init_std", "width", "depth", "activation"},
}


# The most parameters of a group with a full covariance (kind gaussian): it holds an n x n
# factor, and training and the closed-form fit keep several n x n matrices (5000: 100 MB
# each in float32); larger groups take kind iid_gaussian or lowrank_gaussian.
MAX_FULL_COVARIANCE = 5000


def _group(spec: GroupSpec, option: str | None = None) -> ParameterGroup:
    """The group of ``spec``; ``option`` is where its rule sits in the config (e.g.
    ``layout.rules[0]``), which the messages name."""
    where = option or f"layout group {spec.name} (rule {spec.rule!r})"
    if spec.kind == "gaussian" and spec.size > MAX_FULL_COVARIANCE:
        gib = 4 * spec.size**2 / 2**30
        raise ValueError(
            f"{where}: kind gaussian over {spec.size} parameters (group {spec.name}) would "
            f"hold a {spec.size} x {spec.size} covariance ({gib:.1f} GiB), more than the "
            f"{MAX_FULL_COVARIANCE} parameters a full covariance may have; use kind "
            "iid_gaussian or lowrank_gaussian for this rule, or fewer terms (model.degree, "
            "model.q_norm)"
        )
    unknown = set(spec.options) - _GROUP_OPTIONS[spec.kind]
    if unknown:
        raise ValueError(
            f"{where}: unknown option(s) {sorted(unknown)} for kind {spec.kind} (group "
            f"{spec.name}); allowed: {sorted(_GROUP_OPTIONS[spec.kind]) or 'none'}"
        )
    prior = _prior(spec.prior, where, spec.size, spec.kind)
    try:
        return _construct(spec, prior)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{where}.options: {err} (options {dict(spec.options)})") from None


def _construct(spec: GroupSpec, prior: Prior) -> ParameterGroup:
    opts, n = dict(spec.options), spec.size
    if spec.kind == "deterministic":
        return DeterministicGroup(spec.name, n, prior)
    if spec.kind == "iid_gaussian":
        return IIDGaussianGroup(spec.name, n, prior, **opts)
    if spec.kind == "gaussian":
        return GaussianGroup(spec.name, n, prior, **opts)
    if spec.kind == "lowrank_gaussian":
        if "rank" in opts:  # capped at the group's size so that a layout survives smaller models
            opts["rank"] = min(int(opts["rank"]), n)
        return LowRankGaussianGroup(spec.name, n, prior=prior, **opts)
    network = {key: opts.pop(key) for key in ("width", "depth", "activation") if key in opts}
    score = ScoreNetwork(n, n, **network)
    return LangevinGroup(spec.name, n, score_model=score, prior=prior, **opts)


def _rule(group: GroupConfig, match: str) -> Rule:
    prior = {"kind": group.prior.kind, **group.prior.arguments()}
    return Rule(match, group.kind, prior, dict(group.options))


def layout_groups(layout: LayoutConfig, surrogate: SurrogateModel) -> list[GroupSpec]:
    """Resolve the ``layout`` section (``default`` and ``rules``) over the surrogate's blocks.

    Args:
        layout: The ``layout`` section.
        surrogate: The surrogate whose ``param_blocks()`` the rules match.

    Returns:
        The groups, in vector order, covering the whole parameter vector (see
        :func:`~polymix_cli.layout.resolve_layout`).

    Raises:
        ValueError: If a rule's match is malformed or matches no block, a slice is out of
            range, or two rules claim the same entries.
    """
    rules = [_rule(r, r.match) for r in layout.rules]
    return resolve_layout(surrogate.param_blocks(), rules, _rule(layout.default, "*"))


def build_groups(specs: list[GroupSpec]) -> list[ParameterGroup]:
    """Parameter groups for resolved specs, initialised from the global torch RNG.

    A ``lowrank_gaussian`` group's ``rank`` is capped at the group's size, so that a
    layout survives smaller models.

    Args:
        specs: Resolved groups, e.g. from :func:`layout_groups`.

    Returns:
        One :class:`~polymix_cli.parameter_groups.ParameterGroup` per spec, in order.

    Raises:
        ValueError: If a spec has an option its kind does not take, or its prior's kind
            or arguments are bad (the message names the group and its rule).
    """
    return [_group(s) for s in specs]


def _rule_options(layout: LayoutConfig) -> dict[str, str]:
    """Where each rule's match sits in the config: ``layout.rules[i]``, or ``layout.default``."""
    where = {"default": "layout.default", "*": "layout.default"}
    for i, rule in enumerate(layout.rules):
        where[rule.match] = f"layout.rules[{i}]"
    return where


def build_noise(trainer: TrainerConfig | None, num_outputs: int) -> GaussianNoise | None:
    """The learned noise of ``trainer.loss=gaussian_nll``, from ``trainer.noise``.

    Args:
        trainer: The ``trainer`` section, or ``None``.
        num_outputs: The output dimension (one noise scale per output).

    Returns:
        The noise; ``None`` for any other loss (or no ``trainer``), so those models carry
        no noise.

    Raises:
        ValueError: If the noise refuses its options (the message starts with
            ``trainer.noise``).
    """
    if trainer is None or trainer.loss != "gaussian_nll":
        return None
    spec: NoiseConfig = trainer.noise
    try:
        prior = None
        if spec.prior == "half_cauchy":
            prior = HalfCauchyNoisePrior(scale=spec.prior_scale)
        elif spec.prior == "log_normal":
            prior = LogNormalNoisePrior(median=spec.prior_scale, log_std=spec.prior_log_std)
        return GaussianNoise(num_outputs, init_std=spec.init_std, prior=prior)
    except (TypeError, ValueError) as err:
        raise ValueError(f"trainer.noise: {err}") from None


def build_model(
    model: ModelConfig,
    layout: LayoutConfig,
    num_inputs: int,
    num_outputs: int,
    trainer: TrainerConfig | None = None,
) -> tuple[StochasticModel, list[GroupSpec]]:
    """The stochastic model and its resolved layout.

    With a ``trainer`` section whose ``loss`` is ``gaussian_nll``, the model carries a
    learned noise (see :func:`build_noise`).

    Args:
        model: The ``model`` section.
        layout: The ``layout`` section.
        num_inputs: The input dimension.
        num_outputs: The output dimension.
        trainer: The ``trainer`` section, or ``None`` (no noise).

    Returns:
        The :class:`~polymix_cli.StochasticModel` and the resolved groups (see
        :func:`layout_groups`).

    Raises:
        ValueError: If a component refuses its options or the layout does not resolve
            (see :func:`build_surrogate`, :func:`layout_groups`, :func:`build_groups` and
            :func:`build_noise`).
    """
    surrogate = build_surrogate(model, num_inputs, num_outputs)
    try:
        specs = layout_groups(layout, surrogate)
    except ValueError as err:
        if "matches no parameter block" in str(err):
            raise ValueError(f"{err}; {_layout_hint(model)}") from None
        raise
    where = _rule_options(layout)
    groups = [_group(s, where.get(s.rule)) for s in specs]
    return StochasticModel(surrogate, groups, noise=build_noise(trainer, num_outputs)), specs


# the shipped layouts that fit each model kind
_LAYOUTS_FOR = {
    "pce": "layout=pce_iid (or all_iid)",
    "nn": "layout=all_iid",
    "moe": "layout=moe_seed (or all_iid)",
}


def _layout_hint(model: ModelConfig) -> str:
    kind = getattr(model, "kind", None)
    fits = _LAYOUTS_FOR.get(kind)
    if fits is None:
        return "choose a layout whose rules match this model's blocks"
    return (
        f"the layout's rules name another model's blocks (moe_seed is for mixtures, model=moe); "
        f"for model={kind} use {fits}"
    )
