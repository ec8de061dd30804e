"""Layout rules over named parameter blocks."""

from __future__ import annotations

import itertools

import pytest
import torch

from polymix_cli.config import build
from polymix_cli.config.schema import LayoutConfig, ModelConfig
from polymix_cli.config.validation import parse_section
from polymix_cli.layout import Rule, resolve_layout
from polymix_cli.surrogate_models import ParamBlock


def build_model(model, layout, num_inputs, num_outputs):
    """build.build_model from the sections as dicts (each turned into its typed config)."""
    return build.build_model(
        parse_section(ModelConfig, model, "model"),
        parse_section(LayoutConfig, layout, "layout"),
        num_inputs,
        num_outputs,
    )


def build_surrogate(model, num_inputs, num_outputs):
    return build.build_surrogate(
        parse_section(ModelConfig, model, "model"), num_inputs, num_outputs
    )


def layout_groups(layout, surrogate):
    return build.layout_groups(parse_section(LayoutConfig, layout, "layout"), surrogate)


SEED_LAYOUT = {
    "default": {"kind": "deterministic"},
    "rules": [
        {"match": "experts.*.coeffs[:2]", "kind": "iid_gaussian"},
        {"match": "gate.output.*", "kind": "iid_gaussian"},
    ],
}


def moe(num_experts=2, degree=3, width=16, depth=1):
    return {
        "kind": "moe",
        "num_experts": num_experts,
        "expert": {"kind": "pce", "degree": degree, "basis": "legendre"},
        "gate": {"width": width, "depth": depth, "activation": "tanh"},
    }


def test_seed_layout_gives_the_seed_groups():
    model, specs = build_model(moe(), SEED_LAYOUT, 1, 1)
    assert model.num_params() == 74
    assert [(s.name, s.kind, s.size) for s in specs] == [
        ("experts.0.coeffs[0:2]", "iid_gaussian", 2),
        ("experts.0.coeffs[2:4]", "deterministic", 2),
        ("experts.1.coeffs[0:2]", "iid_gaussian", 2),
        ("experts.1.coeffs[2:4]", "deterministic", 2),
        ("gate.hidden.0.weight", "deterministic", 16),
        ("gate.hidden.0.bias", "deterministic", 16),
        ("gate.output.weight", "iid_gaussian", 32),
        ("gate.output.bias", "iid_gaussian", 2),
    ]


@pytest.mark.parametrize(
    "num_experts,degree,width,depth", [(2, 2, 8, 1), (3, 5, 32, 2), (4, 1, 4, 3)]
)
def test_layout_survives_architecture_changes(num_experts, degree, width, depth):
    model, specs = build_model(moe(num_experts, degree, width, depth), SEED_LAYOUT, 1, 1)
    # groups tile the vector exactly, in order
    assert specs[0].start == 0 and specs[-1].stop == model.num_params()
    assert all(a.stop == b.start for a, b in itertools.pairwise(specs))
    stochastic = {s.name for s in specs if s.kind == "iid_gaussian"}
    expected = {f"experts.{m}.coeffs[0:2]" for m in range(num_experts)} | {
        "gate.output.weight",
        "gate.output.bias",
    }
    if degree == 1:  # two terms: the rule covers the whole block
        expected = {f"experts.{m}.coeffs" for m in range(num_experts)} | {
            "gate.output.weight",
            "gate.output.bias",
        }
    assert stochastic == expected
    hidden = [s for s in specs if s.block.startswith("gate.hidden.")]
    assert len(hidden) == 2 * depth and all(s.kind == "deterministic" for s in hidden)
    sizes = {s.name: s.size for s in specs}
    assert sizes["gate.output.weight"] == width * num_experts


def test_slice_over_rows_of_a_multi_output_block():
    surrogate = build_surrogate({"kind": "pce", "degree": 2}, 1, 2)  # coeffs (3, 2)
    specs = layout_groups({"rules": [{"match": "coeffs[1:]", "kind": "gaussian"}]}, surrogate)
    assert [(s.name, s.kind, s.start, s.stop) for s in specs] == [
        ("coeffs[0:1]", "deterministic", 0, 2),
        ("coeffs[1:3]", "gaussian", 2, 6),
    ]


def test_negative_and_single_index_slices():
    blocks = [ParamBlock("w", (5,), 0)]
    specs = resolve_layout(
        blocks,
        [Rule("w[-1]", "iid_gaussian"), Rule("w[1]", "gaussian")],
        Rule("*", "deterministic"),
    )
    assert [(s.start, s.stop, s.kind) for s in specs] == [
        (0, 1, "deterministic"),
        (1, 2, "gaussian"),
        (2, 4, "deterministic"),
        (4, 5, "iid_gaussian"),
    ]


@pytest.mark.parametrize(
    "rules,message",
    [
        ([{"match": "gate.nothing.*", "kind": "iid_gaussian"}], "matches no parameter block"),
        ([{"match": "experts.*.coeffs[:9]", "kind": "iid_gaussian"}], "out of range"),
        ([{"match": "experts.*.coeffs[3:1]", "kind": "iid_gaussian"}], "out of range"),
        (
            [
                {"match": "experts.*.coeffs[:2]", "kind": "iid_gaussian"},
                {"match": "experts.0.*", "kind": "gaussian"},
            ],
            "overlaps",
        ),
        ([{"match": "gate.*", "kind": "bayesian"}], "kind must be one of"),
        (
            [{"match": "gate.*", "kind": "iid_gaussian", "prior": {"kind": "cauchy"}}],
            "prior.kind must be one of",
        ),
        ([{"match": "gate.*", "kind": "iid_gaussian", "typo": 1}], "unknown key"),
        ([{"match": "gate.*", "kind": "iid_gaussian", "options": {"rank": 2}}], "unknown option"),
    ],
)
def test_bad_rules_are_refused(rules, message):
    with pytest.raises(ValueError, match=message):
        build_model(moe(), {"default": {"kind": "deterministic"}, "rules": rules}, 1, 1)


@pytest.mark.parametrize(
    "kind,options",
    [
        ("gaussian", {"init_scale": 0.2}),
        ("lowrank_gaussian", {"rank": 50}),  # capped at the group size
        ("langevin", {"num_diffusion_steps": 3, "width": 8, "depth": 1}),
    ],
)
def test_every_group_kind_builds_and_samples(kind, options):
    layout = {
        "default": {"kind": "deterministic"},
        "rules": [{"match": "gate.output.bias", "kind": kind, "options": options}],
    }
    model, specs = build_model(moe(), layout, 1, 1)
    assert [s.kind for s in specs].count(kind) == 1
    assert model.sample_parameters(4).shape == (4, 74)


def test_heterogeneous_expert_list_from_config():
    spec = {
        **moe(),
        "experts": [{"kind": "pce", "degree": 2}, {"kind": "nn", "width": 4, "depth": 1}],
    }
    model, specs = build_model(spec, SEED_LAYOUT, 1, 1)
    names = [b.name for b in model.surrogate_model.param_blocks()]
    assert names[:5] == [
        "experts.0.coeffs",
        "experts.1.hidden.0.weight",
        "experts.1.hidden.0.bias",
        "experts.1.output.weight",
        "experts.1.output.bias",
    ]
    # the seed rule still applies to the PCE expert only; the network expert stays deterministic
    assert next(s.name for s in specs if s.kind == "iid_gaussian") == "experts.0.coeffs[0:2]"
    assert model(torch.rand(5, 1), num_samples=3).shape == (3, 5, 1)
