"""Synthetic generators with a known noiseless function, a held-out test set and a
validation set.

Every generator draws inputs uniformly within ``bounds`` and adds Gaussian noise of
standard deviation ``noise_std`` to each output. Training, test and validation sets come
from independent ``torch.Generator`` streams seeded with ``seed``, ``test_seed`` and
``val_seed``, so the validation set leaves the training and test sets as they were."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from polymix_cli.data.dataset import Dataset


def _sign_sine(x: Tensor) -> Tensor:
    return torch.sin(math.pi * x[:, :1]) + torch.sign(x[:, :1])


def _sine(x: Tensor) -> Tensor:
    return torch.sin(math.pi * x[:, :1])


def _sincos(x: Tensor) -> Tensor:
    return torch.cat([torch.sin(math.pi * x[:, :1]), torch.cos(math.pi * x[:, :1])], dim=1)


ISHIGAMI_A, ISHIGAMI_B = 7.0, 0.1


def _ishigami(x: Tensor) -> Tensor:
    """Ishigami & Homma (1990): ``sin x1 + a sin^2 x2 + b x3^4 sin x1`` (a = 7, b = 0.1), the
    standard benchmark of sensitivity analysis (inputs uniform on [-pi, pi])."""
    x1, x2, x3 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    sin1 = torch.sin(x1)
    return sin1 + ISHIGAMI_A * torch.sin(x2).square() + ISHIGAMI_B * x3.pow(4) * sin1


@dataclass(frozen=True)
class Generator:
    """A noiseless function and its sizes.

    Args:
        fn: The function, ``(N, num_inputs) -> (N, num_outputs)``.
        num_inputs: Its input dimension.
        num_outputs: Its output dimension.
        description: Its formula, for people.
    """

    fn: Callable[[Tensor], Tensor]
    num_inputs: int
    num_outputs: int
    description: str


GENERATORS: dict[str, Generator] = {
    "sign_sine": Generator(_sign_sine, 1, 1, "y = sin(pi x) + sign(x)"),
    "sine": Generator(_sine, 1, 1, "y = sin(pi x)"),
    "sincos": Generator(_sincos, 1, 2, "y = (sin(pi x), cos(pi x))"),
    "ishigami": Generator(_ishigami, 3, 1, "y = sin x1 + 7 sin^2 x2 + 0.1 x3^4 sin x1"),
}


def ishigami_indices(a: float = ISHIGAMI_A, b: float = ISHIGAMI_B) -> dict[str, object]:
    """Exact mean, variance and Sobol indices of the Ishigami function.

    For inputs uniform on [-pi, pi]: ``sin x1 + a sin^2 x2 + b x3^4 sin x1``.

    Args:
        a: The coefficient of ``sin^2 x2``.
        b: The coefficient of ``x3^4 sin x1``.

    Returns:
        ``{"mean", "variance", "first_order", "total"}``: two floats, then two tuples of
        three floats (one index per input).
    """
    pi = math.pi
    v1 = 0.5 * (1 + b * pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * pi**8 * (1 / 18 - 1 / 50)
    variance = v1 + v2 + v13
    return {
        "mean": a / 2,
        "variance": variance,
        "first_order": (v1 / variance, v2 / variance, 0.0),
        "total": ((v1 + v13) / variance, v2 / variance, v13 / variance),
    }


def _draw(
    gen: Generator, num: int, bounds: Tensor, noise_std: float, seed: int
) -> tuple[Tensor, Tensor]:
    rng = torch.Generator().manual_seed(seed)
    low, high = bounds[:, 0], bounds[:, 1]
    x = low + (high - low) * torch.rand(num, gen.num_inputs, generator=rng)
    y = gen.fn(x)
    return x, y + noise_std * torch.randn(y.shape, generator=rng)


def simulate(generator: str, x: Tensor, noise_std: float, seed: int) -> tuple[Tensor, Tensor]:
    """A generator as a simulation: its noiseless function at given inputs, plus its noise.

    Args:
        generator: The generator's name, a key of :data:`GENERATORS`.
        x: The inputs, shape ``(N, num_inputs)``.
        noise_std: The standard deviation of the Gaussian noise on each output.
        seed: The seed of the noise.

    Returns:
        The inputs (float32) and the noisy outputs ``(N, num_outputs)``.

    Raises:
        ValueError: If ``generator`` is unknown or ``x`` has not one column per input.
    """
    if generator not in GENERATORS:
        raise ValueError(f"data.generator must be one of {sorted(GENERATORS)}, got {generator!r}")
    gen = GENERATORS[generator]
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() != 2 or x.shape[1] != gen.num_inputs:
        raise ValueError(
            f"the generator {generator!r} takes {gen.num_inputs} input(s), got inputs of shape "
            f"{tuple(x.shape)}"
        )
    y = gen.fn(x)
    rng = torch.Generator().manual_seed(seed)
    return x, y + noise_std * torch.randn(y.shape, generator=rng)


def make_dataset(
    generator: str,
    num_train: int,
    num_test: int,
    noise_std: float,
    bounds: list[list[float]],
    seed: int,
    test_seed: int,
    num_val: int = 0,
    val_seed: int = 0,
    train_inputs: Tensor | None = None,
) -> Dataset:
    """Draw a training, a test and a validation set from a named generator (see
    :data:`GENERATORS`).

    Inputs are uniform within ``bounds``; each output gets Gaussian noise of standard
    deviation ``noise_std``. The sets come from independent ``torch.Generator`` streams
    seeded with ``seed``, ``test_seed`` and ``val_seed``.

    Args:
        generator: The generator's name, a key of :data:`GENERATORS`.
        num_train: The number of training points.
        num_test: The number of test points.
        noise_std: The standard deviation of the noise.
        bounds: ``[low, high]`` for each input.
        seed: The seed of the training set.
        test_seed: The seed of the test set.
        num_val: The number of validation points (0: no validation set).
        val_seed: The seed of the validation set.
        train_inputs: The training inputs ``(N, num_inputs)`` to evaluate the generator
            at (see :func:`simulate`) instead of ``num_train`` uniform draws.

    Returns:
        The :class:`~polymix_cli.data.dataset.Dataset` (float32, ``bounds`` shape
        ``(num_inputs, 2)``), with the noiseless function as ``true_fn``.

    Raises:
        ValueError: If ``generator`` is unknown, ``bounds`` do not give ``[low, high]``
            for each of its inputs, or some ``low >= high``.
    """
    if generator not in GENERATORS:
        raise ValueError(f"data.generator must be one of {sorted(GENERATORS)}, got {generator!r}")
    gen = GENERATORS[generator]
    bounds_t = torch.as_tensor(bounds, dtype=torch.float32).reshape(-1, 2)
    if bounds_t.shape[0] != gen.num_inputs:
        raise ValueError(
            f"data.bounds must give [low, high] for {gen.num_inputs} input(s), got {bounds}"
        )
    if not (bounds_t[:, 0] < bounds_t[:, 1]).all():
        raise ValueError(f"data.bounds must have low < high, got {bounds}")
    if train_inputs is None:
        x_train, y_train = _draw(gen, num_train, bounds_t, noise_std, seed)
    else:
        x_train, y_train = simulate(generator, train_inputs, noise_std, seed)
    x_test, y_test = _draw(gen, num_test, bounds_t, noise_std, test_seed)
    x_val, y_val = _draw(gen, num_val, bounds_t, noise_std, val_seed) if num_val else (None, None)
    return Dataset(
        generator, x_train, y_train, x_test, y_test, bounds_t, gen.fn, x_val=x_val, y_val=y_val
    )
