"""A seeded fuzz test of the ``polymix`` command (issue 17), in this process.

Each trial runs the real entry point with random input: an override drawn from the config
schemas (a field of a schema class and a value near, at or far outside what it allows, or
of the wrong type), a malformed CSV or NPZ data file, or a crafted checkpoint given to
``evaluate`` or ``predict``. For every trial:

- the exit status is one of 0, 1, 2, 130, 143;
- there is no traceback, and a failure prints exactly one ``polymix: error`` line (one
  per bad option: an option holding a list of sections, ``model.experts=[1,2]``, may
  make one line per item, each naming it);
- every number in the metrics.json of a run that exits 0 is finite (``null`` is allowed:
  R^2 of outputs that do not vary);
- nothing is left beside an output (no hidden temporary file or folder).

``make test`` runs a few dozen trials of each kind (seed 17); ``make test-slow`` runs many
more (marker ``slow``). A failing trial names its seed and arguments: rerun it with
``polymix ARGS``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import typing
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import main_in_process

from polymix_cli.config import schema

pytestmark = pytest.mark.usefixtures("one_thread")

STATUSES = {0, 1, 2, 130, 143}
FAST, SLOW = 24, 300  # trials of the override fuzz; the file and checkpoint fuzz take a third

# tiny settings under every trial (a trial's own override of one of them replaces it)
BASE = {
    "trainer.epochs": "2",
    "trainer.num_samples": "4",
    "eval.num_samples": "8",
    "eval.grid_points": "5",
    "eval.sensitivity_base_samples": "8",
    "data.num_train": "16",
    "data.num_test": "8",
    "trainer.progress": "log",
}
FILE_BASE = ["data=file", "model=pce", "layout=pce_iid", "model.degree=2", "data.outputs=[y]"]

# groups: the config group choice that brings a schema class in, and the layout that fits
GROUP_OF = {
    "data/synthetic": ["data={generator}"],
    "model/pce": ["model=pce", "layout=pce_iid", "model.degree=2"],
    "model/nn": ["model=nn", "layout=all_iid"],
    "model/moe": [],
    "layout/layout": [],
    "optimizer/adamw": ["optimizer=adamw"],
    "optimizer/adam": ["optimizer=adam"],
    "optimizer/sgd": ["optimizer=sgd"],
    "scheduler/onecycle": ["scheduler=onecycle"],
    "scheduler/cosine": ["scheduler=cosine"],
    "scheduler/none": ["scheduler=none"],
    "trainer/trainer": [],
    "eval/eval": [],
    "train": [],
}
PREFIX = {"train": ""} | {key: key.partition("/")[0] for key in GROUP_OF if key != "train"}
# options a fuzz trial leaves alone: they cost time, not coverage (compile: 30 s of tracing)
SKIP = {"trainer.compile", "resume", "trainer.device", "data.generator"}
# options whose valid values make a run longer: only small values are drawn
SMALL = {
    "epochs",
    "num_samples",
    "num_train",
    "num_test",
    "grid_points",
    "degree",
    "width",
    "depth",
    "num_experts",
    "sensitivity_base_samples",
    "batch_size",
    "log_every",
    "sensitivity_samples",
    "checkpoint_every",
    "num_threads",
    "num_diffusion_steps",
}


def _fields(cls: type, prefix: str) -> list[tuple[str, Any, dict]]:
    """``(dotted option, type, metadata)`` of every leaf option of ``cls``."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            out += _fields(type(default), name)
        elif name not in SKIP:
            out.append((name, tp, dict(f.metadata)))
    return out


OPTIONS = [
    (key, *field)
    for key, cls in schema.SCHEMAS.items()
    if key in GROUP_OF
    for field in _fields(cls, PREFIX[key])
    if not (key == "train" and "." in field[0] and field[0].split(".")[0] in PREFIX.values())
]


def _values(name: str, tp: Any, meta: dict, rng: random.Random) -> list[str]:
    """Candidate values of an option: valid ones, boundaries and nonsense."""
    args = typing.get_args(tp)
    if type(None) in args:
        tp = next(a for a in args if a is not type(None))
    junk = ["abc", "''", "null", "[1,2]", "{a: 1}", "1e400", "-1"]
    leaf = name.rpartition(".")[2]
    choices = meta.get("choices")
    choices = choices() if callable(choices) else choices
    if choices:
        return [*map(str, choices), "bogus", *junk]
    if tp is bool:
        return ["true", "false", "maybe", "2", *junk]
    if tp is int:
        low = int(meta.get("ge", 0))
        small = [str(low + k) for k in range(3)] + ([] if leaf in SMALL else ["1000"])
        return [*small, str(low - 1), "18446744073709551616", "1.5", *junk]
    if tp is float:
        return ["0.5", "0.0", "-1.0", "1e-300", "1e-40", "1e30", "1e300", "nan", "inf", *junk]
    if typing.get_origin(tp) is list or tp is Any or typing.get_origin(tp) is list:
        return ["[]", "[[0,1]]", "[[1,0]]", "[[-1e39,1e39]]", "[0.5]", "[0.1,0.9]", "[a]", *junk]
    return ["abc", "x_y", "''", *junk]


def _override_trial(rng: random.Random, run_dir: Path) -> list[str]:
    key, name, tp, meta = rng.choice(OPTIONS)
    groups = [g.format(generator=rng.choice(["sine", "sincos", "ishigami"])) for g in GROUP_OF[key]]
    if rng.random() < 0.1:
        value = f"+{name}_extra=1"  # an added key: unknown everywhere
    else:
        value = f"{name}={rng.choice(_values(name, tp, meta, rng))}"
    chosen = value.lstrip("+").partition("=")[0]
    base = [f"{k}={v}" for k, v in BASE.items() if k != chosen]
    if key == "model/pce" or key == "model/nn":
        base = [b for b in base if not b.startswith("model.degree")]
    groups = [g for g in groups if g.partition("=")[0] != chosen]
    return ["train", *groups, *base, value, f"hydra.run.dir={run_dir}"]


# ---------------------------------------------------------------------------- data files


def _csv_text(rng: random.Random) -> str:
    rows = [f"{x:.4f},{2 * x + 0.1 * rng.random():.5f}" for x in np.linspace(0, 1, 16)]
    mutations = [
        lambda r: r.__setitem__(rng.randrange(len(r)), "0.5,1_0"),
        lambda r: r.__setitem__(rng.randrange(len(r)), "0.5,"),
        lambda r: r.__setitem__(rng.randrange(len(r)), "0.5,nan"),
        lambda r: r.__setitem__(rng.randrange(len(r)), "1e308,0.5"),
        lambda r: r.__setitem__(rng.randrange(len(r)), "0.5,1e300"),
        lambda r: r.__setitem__(rng.randrange(len(r)), "0.5,0.1,0.2"),
        lambda r: r.__setitem__(rng.randrange(len(r)), "٣,0.5"),
        lambda r: r.__setitem__(rng.randrange(len(r)), '"0.5",0.5'),
        lambda r: r.__setitem__(rng.randrange(len(r)), "\x00\x01,\xff"),
        lambda r: r.insert(0, "x,y"),
        lambda r: r.__delitem__(slice(2, None)),
        lambda r: r.__setitem__(slice(None), [f"{x:.3f},3.5" for x in np.linspace(0, 1, 8)]),
        lambda r: r.__setitem__(slice(None), ["0.5,0.5"] * 8),
    ]
    for mutate in rng.sample(mutations, rng.randint(0, 2)):
        mutate(rows)
    header = rng.choice(["x,y", "x,y", "x;y", "", "y", "x,x", "\ufeffx,y"])
    return header + "\n" + "\n".join(rows) + ("\n" if rng.random() < 0.8 else "")


def _npz_file(rng: random.Random, path: Path) -> None:
    x = np.linspace(0, 1, 16)
    arrays: dict[str, Any] = {"x": x, "y": 2 * x}
    kind = rng.choice(["ok", "2d", "text", "short", "nan", "junk", "truncated", "notzip", "ints"])
    if kind == "2d":
        arrays["x"] = np.stack([x, x], 1)
    elif kind == "text":
        arrays["y"] = np.array(["a"] * 16)
    elif kind == "short":
        arrays["y"] = arrays["y"][:5]
    elif kind == "nan":
        arrays["y"] = np.where(x > 0.5, np.nan, x)
    elif kind == "ints":
        arrays = {"x": np.arange(16), "y": np.arange(16) * 3}
    if kind == "notzip":
        path.write_text("x,y\n1,2\n")
        return
    np.savez(path, **arrays)
    if kind == "junk":
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("x2", bytes(rng.randrange(256) for _ in range(40)))
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: rng.randrange(len(data))])


def _file_trial(rng: random.Random, folder: Path, run_dir: Path) -> list[str]:
    if rng.random() < 0.6:
        path = folder / "data.csv"
        path.write_text(_csv_text(rng), encoding="utf-8", errors="surrogateescape")
    else:
        path = folder / "data.npz"
        _npz_file(rng, path)
    extra = rng.choice(
        [[], [], ["data.inputs=[x,x2]"], ["data.test_fraction=0.5"], ["data.bounds=[[0,2]]"]]
    )
    tiny = ["trainer.epochs=2", "trainer.num_samples=4", "eval.num_samples=8", "eval.grid_points=5"]
    return ["train", *FILE_BASE, *tiny, f"data.path={path}", *extra, f"hydra.run.dir={run_dir}"]


# ------------------------------------------------------------------------------ checkpoints


def _crafted(state: dict, rng: random.Random) -> dict:
    state = {**state, "extra": json.loads(json.dumps(state.get("extra") or {}))}
    maps = state["extra"].get("data_maps") or {}
    inf, nan = float("inf"), float("nan")
    changes = [
        lambda: maps["outputs"].__setitem__("scale", [rng.choice([inf, 0.0, -1.0, nan, 1e-300])]),
        lambda: maps["inputs"].__setitem__("shift", [rng.choice([inf, nan])]),
        lambda: maps.__setitem__("bounds", [rng.choice([[1.0, -1.0], [-inf, inf], [0.0, 0.0]])]),
        lambda: maps.__setitem__("bounds", "abc"),
        lambda: state.__setitem__(
            "config", rng.choice(["{", "[1, 2]", "seed: ${oc.env:HOME}", ""])
        ),
        lambda: state.__setitem__(
            "config", state["config"].replace("seed: 1234", "seed: ${oc.env:HOME}", 1)
        ),
        lambda: state.__setitem__("format_version", rng.choice([99, "x", None, True])),
        lambda: state.__setitem__("epoch", rng.choice([-1, "x", None])),
        lambda: state.__setitem__(
            "model",
            {
                k: torch.full_like(v, nan) if v.is_floating_point() else v
                for k, v in state["model"].items()
            },
        ),
        lambda: state.__setitem__(
            "model", {k: v[:1] if v.dim() else v for k, v in state["model"].items()}
        ),
        lambda: state.pop(rng.choice(["model", "config", "history"])),
    ]
    rng.choice(changes)()
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny trained checkpoint (trained in this process)."""
    run = tmp_path_factory.mktemp("fuzz") / "run"
    assert main_in_process(
        ["train", *(f"{k}={v}" for k, v in BASE.items()), f"hydra.run.dir={run}"]
    ) in (0, None)
    return run / "checkpoints" / "last.pt"


def _checkpoint_trial(rng: random.Random, ckpt: Path, folder: Path, run_dir: Path) -> list[str]:
    state = torch.load(ckpt, weights_only=True)
    crafted = folder / "crafted.pt"
    torch.save(_crafted(state, rng) if rng.random() < 0.9 else state, crafted)
    if rng.random() < 0.5:
        return ["evaluate", f"ckpt={crafted}", "eval.num_samples=8", f"hydra.run.dir={run_dir}"]
    values = rng.choice(["0.1\n0.2", "0.1\n1e308", "abc", "0.5\n\n-0.5", ""])
    (folder / "in.csv").write_text(f"x1\n{values}\n")
    out = folder / "out"
    out.mkdir(exist_ok=True)
    suffix = rng.choice([".csv", ".npz"])
    options = rng.sample(
        [
            "predict.allow_extrapolation=true",
            "predict.save_draws=true",
            "predict.num_samples=4",
            "predict.quantiles=[0.5]",
            "seed=3",
        ],
        rng.randint(0, 3),
    )
    return [
        "predict",
        f"ckpt={crafted}",
        f"input={folder / 'in.csv'}",
        f"output={out / ('o' + suffix)}",
        *options,
    ]


# ------------------------------------------------------------------------------- assertions


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return []


def _left_behind(folder: Path) -> list[str]:
    return [
        str(p)
        for p in folder.rglob("*")
        if p.name.startswith(".")
        and p.name != ".hydra"  # Hydra's record of the run's config
        and (p.name.endswith(".tmp") or p.is_dir() or "polymix" in p.name)
    ]


def check_trial(
    cli, args: list[str], watched: list[Path], label: str, option: str | None = None
) -> int:
    status, err = cli(*args)
    where = f"{label}: polymix {' '.join(args)}\n{err}"
    assert status in STATUSES, where
    assert "Traceback" not in err, where
    error_lines = [line for line in err.splitlines() if line.startswith("polymix: error")]
    if status == 0:
        assert not error_lines, where
        for folder in watched:
            for metrics in folder.rglob("metrics.json"):
                numbers = _numbers(json.loads(metrics.read_text()))
                assert all(math.isfinite(n) for n in numbers), where
    elif status == 2 and option is not None and len(error_lines) > 1:
        # one line per bad option: an option that holds a list of sections may be several
        # (model.experts=[1,2]: model.experts[0] and model.experts[1])
        assert all(option in line for line in error_lines), where
    elif status in (1, 2):
        assert len(error_lines) == 1, where
    for folder in watched:
        assert not _left_behind(folder), (where, _left_behind(folder))
    return status


def _run(cli, tmp_path: Path, trials: int, seed: int, checkpoint: Path | None = None) -> dict:
    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    for i in range(trials):
        folder = tmp_path / f"t{i}"
        folder.mkdir()
        run_dir = folder / "run"
        kind = i % 3 if checkpoint is not None else 0
        option = None
        if kind == 0:
            args = _override_trial(rng, run_dir)
            option = args[-2].lstrip("+").partition("=")[0]
        elif kind == 1:
            args = _file_trial(rng, folder, run_dir)
        else:
            args = _checkpoint_trial(rng, checkpoint, folder, run_dir)
        status = check_trial(cli, args, [folder], f"seed {seed}, trial {i}", option)
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def test_options_are_drawn_from_every_schema_class():
    keys = {name.split(".")[0] for _, name, _, _ in OPTIONS}
    assert {"data", "model", "layout", "optimizer", "scheduler", "trainer", "eval", "seed"} <= keys


def test_fuzz(cli, tmp_path, checkpoint):
    statuses = _run(cli, tmp_path, FAST + FAST // 2, seed=17, checkpoint=checkpoint)
    assert statuses.get(0) and statuses.get(2), statuses  # both outcomes were reached


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_long(cli, tmp_path, checkpoint, seed):
    _run(cli, tmp_path, SLOW, seed=seed, checkpoint=checkpoint)
