"""Parameter-group layouts: rules over a surrogate's named parameter blocks.

A rule ``match`` is a glob over block names with an optional slice over the block's
first axis, e.g. ``experts.*.coeffs[:2]`` (the first two rows of every expert's
coefficient matrix) or ``gate.output.*``. Each rule gives a group ``kind``, a ``prior``
and kind-specific ``options``; whatever no rule claims gets the layout's default.

Resolution walks the parameter vector in order: each maximal run of one block claimed
by one rule (or by the default) becomes one group. Because rules name blocks rather
than offsets, a layout keeps working when width, depth, degree or the number of experts
change.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .surrogate_models import ParamBlock

__all__ = [
    "GROUP_KINDS",
    "PRIOR_KINDS",
    "SCALE_MIXTURE_GROUPS",
    "SCALE_MIXTURE_PRIORS",
    "GroupSpec",
    "Rule",
    "resolve_layout",
]

GROUP_KINDS = ("deterministic", "iid_gaussian", "gaussian", "lowrank_gaussian", "langevin")
PRIOR_KINDS = ("iid_gaussian", "laplace", "ard", "horseshoe")
# the sparsity priors: hierarchical scales fitted to a Gaussian variational group
SCALE_MIXTURE_PRIORS = ("ard", "horseshoe")
SCALE_MIXTURE_GROUPS = ("iid_gaussian", "gaussian")
_RULE_KEYS = {"match", "kind", "prior", "options"}
_PATTERN = re.compile(r"^(?P<glob>[^\[\]]+?)(?:\[(?P<slice>[^\[\]]*)\])?$")


@dataclass(frozen=True)
class Rule:
    """One layout rule: which blocks (and rows), which group kind, which prior.

    Args:
        match: A glob over block names with an optional slice over the block's first
            axis, e.g. ``experts.*.coeffs[:2]``.
        kind: The group kind, one of :data:`GROUP_KINDS`.
        prior: The prior's settings, with ``kind`` one of :data:`PRIOR_KINDS` (default
            ``{"kind": "iid_gaussian"}``).
        options: Kind-specific options of the group.
    """

    match: str
    kind: str
    prior: dict[str, Any] = field(default_factory=lambda: {"kind": "iid_gaussian"})
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any], where: str) -> Rule:
        """Build a rule from a config mapping, checking its keys and kinds.

        Args:
            spec: A mapping with keys among ``match`` (default ``"*"``), ``kind``,
                ``prior`` and ``options``.
            where: Where the rule is, for the messages (e.g. ``"layout.rules[0]"``).

        Returns:
            The rule.

        Raises:
            ValueError: If ``spec`` has an unknown key, or its ``kind`` or prior kind is
                not allowed.
        """
        unknown = set(spec) - _RULE_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}"
            )
        kind = spec.get("kind")
        if kind not in GROUP_KINDS:
            raise ValueError(f"{where}.kind must be one of {list(GROUP_KINDS)}, got {kind!r}")
        prior = dict(spec.get("prior") or {"kind": "iid_gaussian"})
        if prior.get("kind", "iid_gaussian") not in PRIOR_KINDS:
            raise ValueError(
                f"{where}.prior.kind must be one of {list(PRIOR_KINDS)}, got {prior.get('kind')!r}"
            )
        if prior.get("kind") in SCALE_MIXTURE_PRIORS and kind not in SCALE_MIXTURE_GROUPS:
            raise ValueError(
                f"{where}.prior.kind={prior['kind']} needs a Gaussian variational group: "
                f"{where}.kind must be one of {list(SCALE_MIXTURE_GROUPS)}, got {kind!r}"
            )
        return cls(str(spec.get("match", "*")), kind, prior, dict(spec.get("options") or {}))


@dataclass
class GroupSpec:
    """A resolved group: the flat range ``[start, stop)`` it covers, inside one block.

    Args:
        name: The group's name: the block's name, with a ``[a:b]`` row range when the
            group covers part of the block.
        kind: The group kind, one of :data:`GROUP_KINDS`.
        start: The group's first entry in the parameter vector.
        stop: One past its last entry.
        block: The name of the block it lies in.
        prior: The prior's settings.
        options: Kind-specific options.
        rule: The ``match`` of the rule that claimed it, or ``"default"``.
    """

    name: str
    kind: str
    start: int
    stop: int
    block: str
    prior: dict[str, Any]
    options: dict[str, Any]
    rule: str

    @property
    def size(self) -> int:
        """The number of entries, ``stop - start``."""
        return self.stop - self.start


def _parse_slice(text: str | None, rows: int, where: str) -> tuple[int, int]:
    """Row range ``[a, b)`` of a ``[a:b]`` / ``[i]`` slice over a block of ``rows`` rows."""
    if text is None:
        return 0, rows
    try:
        if ":" in text:
            lo, _, hi = text.partition(":")
            a = int(lo) if lo.strip() else 0
            b = int(hi) if hi.strip() else rows
        else:
            a = int(text)
            b = a + 1 if a != -1 else rows
    except ValueError:
        raise ValueError(f"{where}: slice [{text}] must be [a:b] or [i] with integers") from None
    a, b = (a + rows if a < 0 else a), (b + rows if b < 0 else b)
    if not 0 <= a < b <= rows:
        raise ValueError(f"{where}: slice [{text}] is out of range for a block of {rows} rows")
    return a, b


def resolve_layout(
    blocks: Sequence[ParamBlock], rules: Sequence[Rule], default: Rule
) -> list[GroupSpec]:
    """Resolve rules over ``blocks`` into groups covering the whole vector, in order.

    Each maximal run of one block claimed by one rule (or by the default) becomes one
    group.

    Args:
        blocks: The surrogate's parameter blocks, in vector order (``param_blocks()``).
        rules: The rules.
        default: The rule for whatever no rule claims.

    Returns:
        The groups, in vector order, covering ``[0, blocks[-1].stop)`` exactly.

    Raises:
        ValueError: If a rule's match is malformed or matches no block, a slice is out of
            range, or two rules claim the same entries.

    Example:
        ```python
        from polymix_cli.layout import Rule, resolve_layout
        from polymix_cli.surrogate_models import PolynomialChaosExpansion

        pce = PolynomialChaosExpansion(1, 1, degree=3)  # one block "coeffs" (4, 1)
        groups = resolve_layout(
            pce.param_blocks(), [Rule("coeffs[:2]", "iid_gaussian")], Rule("*", "deterministic")
        )
        [(g.name, g.kind, g.start, g.stop) for g in groups]
        # [('coeffs[0:2]', 'iid_gaussian', 0, 2), ('coeffs[2:4]', 'deterministic', 2, 4)]
        ```
    """
    total = blocks[-1].stop if blocks else 0
    owner: list[int] = [-1] * total
    for r, rule in enumerate(rules):
        where = f"layout.rules[{r}] ({rule.match!r})"
        parsed = _PATTERN.match(rule.match.strip())
        if parsed is None:
            raise ValueError(f"{where}: match must be a glob with an optional [a:b] slice")
        hits = [b for b in blocks if fnmatch.fnmatchcase(b.name, parsed["glob"])]
        if not hits:
            names = ", ".join(b.name for b in blocks)
            raise ValueError(f"{where} matches no parameter block; blocks are: {names}")
        for block in hits:
            rows = block.shape[0] if block.shape else 1
            row_size = block.size // rows
            a, b = _parse_slice(parsed["slice"], rows, f"{where} on {block.name}")
            for i in range(block.start + a * row_size, block.start + b * row_size):
                if owner[i] != -1:
                    other = rules[owner[i]].match
                    raise ValueError(
                        f"{where} overlaps layout.rules[{owner[i]}] ({other!r}) on {block.name}"
                    )
                owner[i] = r
    groups: list[GroupSpec] = []
    for block in blocks:
        start = block.start
        while start < block.stop:
            stop = start
            while stop < block.stop and owner[stop] == owner[start]:
                stop += 1
            rule = default if owner[start] == -1 else rules[owner[start]]
            name = block.name
            if (start, stop) != (block.start, block.stop):
                row_size = block.size // (block.shape[0] if block.shape else 1)
                name += f"[{(start - block.start) // row_size}:{(stop - block.start) // row_size}]"
            groups.append(
                GroupSpec(
                    name,
                    rule.kind,
                    start,
                    stop,
                    block.name,
                    rule.prior,
                    rule.options,
                    rule.match if owner[start] != -1 else "default",
                )
            )
            start = stop
    return groups
