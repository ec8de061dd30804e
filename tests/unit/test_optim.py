"""polymix's lean optimisers and schedules follow torch.optim's update rules."""

from __future__ import annotations

import pytest
import torch

from polymix_cli.training.optim import SGD, Adam, Constant, Cosine, OneCycle


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(7, generator=gen, dtype=torch.float64)),
        torch.nn.Parameter(torch.randn(3, 2, generator=gen, dtype=torch.float64)),
    ]


def _run(opt, sched, params, steps: int = 60) -> list[float]:
    lrs = []
    for k in range(steps):
        for p in params:
            p.grad = (
                torch.sin(p.detach() * (k + 1)) + 0.1 * p.detach()
            )  # varying, state-dependent gradients
        opt.step()
        if sched is not None:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "none"])
@pytest.mark.parametrize("fused", [True, False])
def test_matches_torch(name, schedule, fused):
    ours_p, ref_p = _params(), _params()
    steps = 60
    if name == "sgd":
        ours = SGD(ours_p, lr=0.05, momentum=0.9, weight_decay=1e-3)
        ref = torch.optim.SGD(ref_p, lr=0.05, momentum=0.9, weight_decay=1e-3)
    else:
        ours = Adam(ours_p, lr=0.01, weight_decay=1e-2, decoupled=name == "adamw")
        if not fused:
            ours._fused = False  # the _foreach path
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        ref = cls(ref_p, lr=0.01, weight_decay=1e-2)
    if schedule == "onecycle":
        ours_s = OneCycle(ours, max_lr=0.1, total_steps=steps)
        ref_s = torch.optim.lr_scheduler.OneCycleLR(ref, max_lr=0.1, total_steps=steps)
    elif schedule == "cosine":
        ours_s = Cosine(ours, steps, min_lr=1e-4)
        ref_s = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=steps, eta_min=1e-4)
    else:
        ours_s, ref_s = Constant(ours, steps), None
    # the last scheduler step of OneCycleLR is the final one it allows
    lrs_ours = _run(ours, ours_s, ours_p, steps - 1)
    lrs_ref = _run(ref, ref_s, ref_p, steps - 1)
    torch.testing.assert_close(torch.tensor(lrs_ours), torch.tensor(lrs_ref), rtol=1e-9, atol=1e-12)
    for a, b in zip(ours_p, ref_p):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_state_dict_round_trip_continues_identically():
    p1, p2 = _params(1), _params(1)
    a, b = Adam(p1, lr=0.01, weight_decay=1e-4), Adam(p2, lr=0.01, weight_decay=1e-4)
    sa, sb = OneCycle(a, 0.1, 40), OneCycle(b, 0.1, 40)
    _run(a, sa, p1, 15)
    _run(b, sb, p2, 15)
    state, sched_state = a.state_dict(), sa.state_dict()
    c = Adam([torch.nn.Parameter(t.detach().clone()) for t in p1], lr=0.5)
    sc = OneCycle(c, 0.1, 40)
    c.load_state_dict(state)
    sc.load_state_dict(sched_state)
    _run(b, sb, p2, 10)
    _run(c, sc, c.params, 10)
    for x, y in zip(c.params, p2):
        assert torch.equal(x, y)


def test_no_trainable_parameters_is_an_error():
    with pytest.raises(ValueError, match="no trainable parameters"):
        Adam([torch.zeros(3)])
