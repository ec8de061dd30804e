"""Chunks of points are sized by what a surrogate holds per point: the draws' widest
intermediate or, if wider, the one they share (a PCE's basis row, ``shared_width``). Every
place that evaluates draws at many points (evaluation, predict, suggest, the replicas'
validation metrics) sizes its chunks with :func:`point_elements`, so a wide expansion
streams in bounded memory (issue 17)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from polymix_cli import StochasticModel
from polymix_cli.parameter_groups import IIDGaussianGroup
from polymix_cli.reporting.metrics import chunk_points, point_elements
from polymix_cli.surrogate_models import PolynomialChaosExpansion

# 3 inputs, degree 3: 20 terms, one output; two draws hold 2 x 1 values per point
TERMS = 20


def _wide_model() -> StochasticModel:
    torch.manual_seed(0)
    pce = PolynomialChaosExpansion(3, 1, degree=3)
    assert pce.shared_width() == TERMS
    return StochasticModel(pce, [IIDGaussianGroup("coeffs", TERMS)])


def _counting(model: StochasticModel, monkeypatch) -> list[int]:
    """The number of points of each ``model.predict`` call."""
    sizes: list[int] = []
    predict = model.predict

    def spy(x, params):
        sizes.append(x.shape[0])
        return predict(x, params)

    monkeypatch.setattr(model, "predict", spy)
    return sizes


def test_point_elements_is_the_draws_width_or_the_shared_row_if_wider():
    pce = PolynomialChaosExpansion(3, 2, degree=3)
    assert point_elements(pce, 4) == TERMS  # 4 draws x 2 outputs < a basis row of 20
    assert point_elements(pce, 100) == 200
    narrow = SimpleNamespace(work_width=lambda: 1, shared_width=lambda: 0)
    assert point_elements(narrow, 0) == 1


def test_suggest_draws_in_chunks_sized_by_the_basis_row(monkeypatch):
    from polymix_cli.runs.design import surrogate_draws

    model = _wide_model()
    params = model.sample_parameters(2)
    x = torch.rand(50, 3) * 2 - 1
    whole = model.predict(x, params)
    # 100 values per chunk: 2 x 2 x 1 per point would allow 25 points, a basis row of 20
    # values allows 5
    monkeypatch.setattr("polymix_cli.reporting.metrics._CHUNK_ELEMENTS", 100)
    sizes = _counting(model, monkeypatch)
    draws = surrogate_draws(SimpleNamespace(model=model), params, x)
    assert sizes == [5] * 10
    torch.testing.assert_close(draws, whole)


@pytest.mark.parametrize(("num_samples", "chunk"), [(2, 5), (50, 2)])
def test_the_replicas_validation_metrics_chunk_by_the_basis_row(monkeypatch, num_samples, chunk):
    """Two draws: the basis row decides (5 points of 20 values); fifty: the draws do."""
    from polymix_cli.runs.replicas import _val_metrics

    model = _wide_model()
    x = torch.rand(30, 3) * 2 - 1
    y = torch.randn(30, 1)
    eval_cfg = SimpleNamespace(num_samples=num_samples, levels=[0.5, 0.9], band=0.9)
    p = SimpleNamespace(
        cfg=SimpleNamespace(eval=eval_cfg, seed=3), maps=None, data=SimpleNamespace(true_fn=None)
    )
    whole = _val_metrics(model, p, x, y)
    monkeypatch.setattr("polymix_cli.reporting.metrics._CHUNK_ELEMENTS", 100)
    assert chunk_points(point_elements(model.surrogate_model, num_samples), 30) == chunk
    sizes = _counting(model, monkeypatch)
    chunked = _val_metrics(model, p, x, y)
    assert sizes == [chunk] * (30 // chunk)
    assert chunked.keys() == whole.keys()
    for key in ("rmse", "nll", "crps"):
        assert chunked[key] == pytest.approx(whole[key], rel=1e-6)
