"""What a trained model learned: the posterior of its parameters, group by group and
parameter by parameter, beside the priors, and the learned noise.

:func:`summarize_posterior` is the one place where these figures are computed; ``polymix
inspect`` prints them and ``metrics.json`` records them (``posterior``). Each parameter
gets its posterior mean, standard deviation and central interval (of probability
``level``):

- Gaussian groups (``iid_gaussian``, ``gaussian``, ``lowrank_gaussian``): in closed form
  from the variational distribution's marginals (the interval is ``mean +- z std``);
- ``deterministic`` groups: the point estimate, with standard deviation 0;
- any other group (``langevin``): from ``num_samples`` draws of the group (sample mean,
  standard deviation and quantiles).

Figures are in the model's own units: the coefficients of a model trained with
``data.input_scaling=none`` and ``data.output_scaling=none`` are in the user's units; with
scaling they multiply the model's domain (inputs on [-1, 1], standardised outputs). So is
the noise standard deviation (the application reports it in the user's units).

A parameter is *active* when its central interval excludes 0 (:func:`active`); for a
deterministic parameter, when it is not 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .parameter_groups import (
    DeterministicGroup,
    GaussianGroup,
    IIDGaussianGroup,
    LangevinGroup,
    LowRankGaussianGroup,
    ParameterGroup,
)
from .priors import GaussianPrior, IIDGaussianPrior, LaplacePrior, Prior
from .replicas import ReplicaEnsemble
from .stochastic_model import StochasticModel
from .surrogate_models import ParamBlock, PolynomialChaosExpansion

__all__ = [
    "GroupPosterior",
    "PosteriorSummary",
    "active",
    "group_kind",
    "parameter_names",
    "pce_terms",
    "prior_label",
    "summarize_posterior",
]


def active(low: Tensor, high: Tensor) -> Tensor:
    """Which parameters are active: their central interval excludes 0.

    Args:
        low: The intervals' lower ends, shape ``(n,)``.
        high: Their upper ends, shape ``(n,)``.

    Returns:
        A boolean tensor, shape ``(n,)``.
    """
    return (low > 0) | (high < 0)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def prior_label(prior: Prior) -> str:
    """A short description of a prior, e.g. ``normal(0.12, 0.04)``.

    Args:
        prior: A prior.

    Returns:
        ``normal(mean, std)`` or ``laplace(loc, scale)`` for scalar parameters (``...,
        per entry`` for vectors), ``mvnormal(n)`` for a full-covariance Gaussian, else the
        prior's class name.
    """
    if isinstance(prior, (IIDGaussianPrior, LaplacePrior)):
        kind = "normal" if isinstance(prior, IIDGaussianPrior) else "laplace"
        if prior.loc.dim() == 0 and prior.scale.dim() == 0:
            return f"{kind}({_fmt(float(prior.loc))}, {_fmt(float(prior.scale))})"
        return f"{kind}(per entry)"
    if isinstance(prior, GaussianPrior):
        return f"mvnormal({prior.size})"
    return type(prior).__name__


def _prior_marginals(prior: Prior, size: int) -> tuple[Tensor | None, Tensor | None]:
    """The prior's marginal means and standard deviations, ``(size,)`` each, where the
    prior's distribution has them (``None`` otherwise)."""
    try:
        dist = prior.distribution(size)
        return dist.mean.detach().reshape(size), dist.stddev.detach().reshape(size)
    except (NotImplementedError, AttributeError, RuntimeError, ValueError):
        return None, None


@dataclass
class GroupPosterior:
    """The posterior of one parameter group, entry by entry.

    Args:
        name: The group's name.
        kind: The group's kind (:func:`group_kind`).
        start: The group's first entry in the parameter vector.
        mean: The posterior means, shape ``(n,)``.
        std: The posterior standard deviations, shape ``(n,)``.
        low: The lower ends of the central intervals, shape ``(n,)``.
        high: Their upper ends, shape ``(n,)``.
        prior: The prior's description (:func:`prior_label`).
        prior_mean: The prior's marginal means, ``(n,)``, or ``None``.
        prior_std: The prior's marginal standard deviations, ``(n,)``, or ``None``.
    """

    name: str
    kind: str
    start: int
    mean: Tensor
    std: Tensor
    low: Tensor
    high: Tensor
    prior: str
    prior_mean: Tensor | None
    prior_std: Tensor | None

    @property
    def size(self) -> int:
        """The number of entries."""
        return self.mean.shape[0]

    def figures(self) -> dict[str, Any]:
        """The group's figures: for a group of one entry, that entry's; for more, the
        average mean, the root mean square standard deviation (of the posterior and of
        the prior), the span of the intervals (lowest low, highest high) and the number
        of active entries."""
        rms = lambda t: float(t.square().mean().sqrt())
        return {
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "prior": self.prior,
            "prior_std": None if self.prior_std is None else rms(self.prior_std),
            "mean": float(self.mean.mean()),
            "std": rms(self.std),
            "low": float(self.low.min()),
            "high": float(self.high.max()),
            "active": int(active(self.low, self.high).sum()),
        }


@dataclass
class PosteriorSummary:
    """The posterior of a model: its groups, the names of its parameters and the noise.

    Args:
        level: The central probability of the intervals.
        groups: The groups, in vector order.
        blocks: The surrogate's parameter blocks (what names the parameters).
        multi_indices: For each PCE coefficient block, the multi-index of each of its
            rows (terms).
        noise_std: The learned noise standard deviation per output, or ``None``.
        noise_prior: The noise prior's description, or ``None``.
    """

    level: float
    groups: list[GroupPosterior]
    blocks: list[ParamBlock]
    multi_indices: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    noise_std: Tensor | None = None
    noise_prior: str | None = None

    @property
    def num_params(self) -> int:
        """The number of parameters."""
        return self.blocks[-1].stop if self.blocks else 0

    @property
    def names(self) -> list[str]:
        """The name of every parameter (:func:`parameter_names`), made when asked for."""
        return _names(self.blocks)

    @property
    def terms(self) -> dict[int, tuple[int, ...]]:
        """The multi-index of every PCE coefficient by parameter index (:func:`pce_terms`)."""
        return _terms(self.blocks, self.multi_indices)

    def parameters(self) -> list[dict[str, Any]]:
        """One record per parameter, in vector order: ``index``, ``name``, ``group``,
        ``term`` (a PCE coefficient's multi-index, else absent), ``mean``, ``std``,
        ``low``, ``high``, ``prior_mean``, ``prior_std`` and ``active``."""
        rows = []
        names, terms = self.names, self.terms
        for g in self.groups:
            on = active(g.low, g.high).tolist()
            values = {key: getattr(g, key).tolist() for key in ("mean", "std", "low", "high")}
            prior_mean = g.prior_mean.tolist() if g.prior_mean is not None else None
            prior_std = g.prior_std.tolist() if g.prior_std is not None else None
            for k in range(g.size):
                index = g.start + k
                row: dict[str, Any] = {"index": index, "name": names[index], "group": g.name}
                if index in terms:
                    row["term"] = list(terms[index])
                row.update({key: values[key][k] for key in values})
                row["prior_mean"] = None if prior_mean is None else prior_mean[k]
                row["prior_std"] = None if prior_std is None else prior_std[k]
                row["active"] = bool(on[k])
                rows.append(row)
        return rows

    def to_json(self, max_params: int) -> dict[str, Any]:
        """The summary as plain data (``metrics.json``'s ``posterior``).

        Args:
            max_params: The largest model whose per-parameter records are included (0:
                never).

        Returns:
            ``level``, ``num_params``, ``groups`` (:meth:`GroupPosterior.figures`),
            ``noise_std`` and ``noise_prior``, and ``parameters`` (:meth:`parameters`)
            when the model has at most ``max_params`` parameters.
        """
        out: dict[str, Any] = {
            "level": self.level,
            "num_params": self.num_params,
            "groups": [g.figures() for g in self.groups],
            "noise_std": None if self.noise_std is None else self.noise_std.tolist(),
            "noise_prior": self.noise_prior,
        }
        if 0 < self.num_params <= max_params:
            out["parameters"] = self.parameters()
        return out


def _names(blocks: list[ParamBlock]) -> list[str]:
    names: list[str] = []
    for block in blocks:
        shape = block.shape or (1,)
        for flat in range(block.size):
            index, rest = [], flat
            for dim in reversed(shape):
                index.append(rest % dim)
                rest //= dim
            names.append(f"{block.name}[{','.join(map(str, reversed(index)))}]")
    return names


def _terms(
    blocks: list[ParamBlock], multi_indices: dict[str, list[tuple[int, ...]]]
) -> dict[int, tuple[int, ...]]:
    terms: dict[int, tuple[int, ...]] = {}
    for block in blocks:
        rows = multi_indices.get(block.name)
        if rows:
            per_row = block.size // len(rows)
            for flat in range(block.size):
                terms[block.start + flat] = rows[flat // per_row]
    return terms


def _pce_multi_indices(model: StochasticModel) -> dict[str, list[tuple[int, ...]]]:
    """For each PCE coefficient block (``coeffs``, ``experts.<m>.coeffs``), the
    multi-index of each of its rows."""
    surrogate = model.surrogate_model
    found: dict[str, list[tuple[int, ...]]] = {}
    for block in surrogate.param_blocks():
        owner_path, _, leaf = block.name.rpartition(".")
        if leaf != "coeffs":
            continue
        try:
            owner = surrogate.get_submodule(owner_path) if owner_path else surrogate
        except AttributeError:
            continue
        if isinstance(owner, PolynomialChaosExpansion):
            found[block.name] = [tuple(row) for row in owner.multi_indices.tolist()]
    return found


def parameter_names(model: StochasticModel) -> list[str]:
    """The name of every parameter: its block's name and its index in the block's shape.

    Args:
        model: The model.

    Returns:
        ``P`` names in vector order, e.g. ``coeffs[2,0]`` or ``gate.output.bias[1]``.
    """
    return _names(model.surrogate_model.param_blocks())


def pce_terms(model: StochasticModel) -> dict[int, tuple[int, ...]]:
    """The multi-index of every parameter that is a PCE coefficient.

    A polynomial chaos expansion's block ``coeffs`` ``(T, O)`` (also an expert's,
    ``experts.<m>.coeffs``) holds the coefficient of term ``t`` for output ``o`` at row
    ``t``; its multi-index is row ``t`` of the expansion's ``multi_indices``.

    Args:
        model: The model.

    Returns:
        ``{parameter index: multi-index}`` for the PCE coefficients.
    """
    return _terms(model.surrogate_model.param_blocks(), _pce_multi_indices(model))


def group_kind(group: ParameterGroup) -> str:
    """A group's kind, as layouts name it (``iid_gaussian``, ...), or its class name."""
    names = {
        DeterministicGroup: "deterministic",
        IIDGaussianGroup: "iid_gaussian",
        GaussianGroup: "gaussian",
        LowRankGaussianGroup: "lowrank_gaussian",
        LangevinGroup: "langevin",
    }
    return names.get(type(group), type(group).__name__)


def _closed_form(group: ParameterGroup) -> tuple[Tensor, Tensor] | None:
    """The posterior marginal means and standard deviations of a Gaussian group."""
    if isinstance(group, DeterministicGroup):
        value = group.value.detach()
        return value, torch.zeros_like(value)
    variational = getattr(group, "variational", None)
    if variational is None:
        return None
    dist = variational()
    return dist.mean.detach().reshape(-1), dist.stddev.detach().reshape(-1)


@torch.no_grad()
def summarize_posterior(
    model: StochasticModel | ReplicaEnsemble,
    level: float = 0.9,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
) -> PosteriorSummary:
    """The posterior of every parameter of a model, group by group.

    An ensemble of replicas (``trainer.replica_selection=ensemble``) is a mixture of the
    replicas' posteriors: each group is then summarised from ``num_samples`` draws of the
    mixture (its kind reads ``... (ensemble)``).

    Args:
        model: The trained model, or an ensemble of replicas.
        level: The central probability of the intervals, in (0, 1).
        num_samples: The draws of a group without closed-form marginals (``langevin``)
            and of an ensemble.
        generator: The generator of those draws (``None``: torch's global one).

    Returns:
        The :class:`PosteriorSummary`.

    Raises:
        ValueError: If ``level`` is not in (0, 1) or ``num_samples`` is below 2.

    Example:
        ```python
        from polymix_cli import StochasticModel
        from polymix_cli.parameter_groups import IIDGaussianGroup
        from polymix_cli.posterior import summarize_posterior
        from polymix_cli.surrogate_models import PolynomialChaosExpansion

        model = StochasticModel(PolynomialChaosExpansion(1, 1, 1), [IIDGaussianGroup("c", 2)])
        summary = summarize_posterior(model, level=0.9)
        summary.to_json(max_params=100)["parameters"][1]["term"]  # [1]
        ```
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    z = math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(level, dtype=torch.float64)))
    probs = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    # an ensemble of replicas is a mixture: every group from its draws (the template's groups)
    mixture = model if isinstance(model, ReplicaEnsemble) else None
    if mixture is not None:
        model = mixture.replicas.model
        all_draws = mixture.sample_parameters(num_samples, generator=generator).double().cpu()
    groups: list[GroupPosterior] = []
    start = 0
    for group in model.parameter_groups:
        n = group.num_params()
        found = _closed_form(group) if mixture is None else None
        if mixture is not None:
            draws = all_draws[:, start : start + n]
            mean, std = draws.mean(0), draws.std(0)
            low, high = torch.quantile(draws, probs, dim=0)
        elif found is not None:
            mean, std = (t.double().cpu() for t in found)
            low, high = mean - z * std, mean + z * std
        else:
            draws = group.sample(num_samples, generator=generator).detach().double().cpu()
            mean, std = draws.mean(0), draws.std(0)
            low, high = torch.quantile(draws, probs, dim=0)
        prior_mean, prior_std = _prior_marginals(group.prior, n)
        groups.append(
            GroupPosterior(
                group.name,
                group_kind(group) + (" (ensemble)" if mixture is not None else ""),
                start,
                mean,
                std,
                low,
                high,
                prior_label(group.prior),
                None if prior_mean is None else prior_mean.double().cpu(),
                None if prior_std is None else prior_std.double().cpu(),
            )
        )
        start += n
    noise_std = noise_prior = None
    if mixture is None and model.noise is not None:
        noise_std = model.noise.std.detach().double().cpu()
        noise_prior = None if model.noise.prior is None else repr(model.noise.prior)
    return PosteriorSummary(
        float(level),
        groups,
        model.surrogate_model.param_blocks(),
        _pce_multi_indices(model),
        noise_std,
        noise_prior,
    )
