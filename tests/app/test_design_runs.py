"""polymix design and polymix suggest through the real entry point (in process), at tiny
sizes: the loop design, simulate (data.train_inputs), train, suggest; a design read back
by data=file; and bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TINY, TINY_FILE, assert_one_line, read_csv_array

pytestmark = pytest.mark.usefixtures("one_thread")


def test_design_writes_the_points_in_the_users_names(cli, tmp_path):
    out = tmp_path / "design.csv"
    status, err = cli(
        "design",
        "bounds=[[0,10],[100,200]]",
        "inputs=[length,load]",
        "n=8",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert status == 0, err
    header, x = read_csv_array(out)
    assert header == ["length", "load"] and x.shape == (8, 2)
    for j, (low, high) in enumerate([(0, 10), (100, 200)]):
        slices = np.floor((x[:, j] - low) / (high - low) * 8).astype(int)
        assert sorted(slices.tolist()) == list(range(8))  # a Latin hypercube
    status, err = cli(
        "design",
        "bounds=[[0,1]]",
        "n=4",
        "method=sobol",
        f"output={tmp_path / 'd.npz'}",
        f"hydra.run.dir={tmp_path / 'run2'}",
    )
    assert status == 0, err
    assert sorted(np.load(tmp_path / "d.npz").files) == ["x1"]


def test_a_design_with_outputs_added_trains_with_data_file(cli, tmp_path):
    out = tmp_path / "design.csv"
    status, err = cli(
        "design",
        "bounds=[[0,10],[100,200]]",
        "inputs=[a,b]",
        "n=20",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'd'}",
    )
    assert status == 0, err
    header, x = read_csv_array(out)
    y = np.sin(x[:, 0] / 3) + 0.01 * x[:, 1]  # the "simulation"
    sim = tmp_path / "runs.csv"
    np.savetxt(sim, np.c_[x, y], delimiter=",", header=",".join([*header, "y"]), comments="")
    status, err = cli(
        "train",
        "experiment=pce_file",
        f"data.path={sim}",
        "data.outputs=[y]",
        *TINY_FILE,
        f"hydra.run.dir={tmp_path / 'train'}",
    )
    assert status == 0, err


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    """A tiny pce_sine run on a 6-point design (data.train_inputs: the generator simulates)."""
    import sys

    from polymix_cli.cli.main import main

    tmp = tmp_path_factory.mktemp("loop")
    argv = sys.argv[:]
    try:
        for args in (
            ["design", "bounds=[[-1,1]]", "n=6", f"output={tmp / 'inputs.csv'}"],
            [
                "train",
                "experiment=pce_sine",
                f"data.train_inputs={tmp / 'inputs.csv'}",
                *TINY,
                "trainer.epochs=200",
            ],
        ):
            assert main([*args, f"hydra.run.dir={tmp / args[0]}"]) in (0, None)
    finally:
        sys.argv = argv
    return tmp


def test_train_inputs_are_the_training_inputs(sine_run):
    """The generator is evaluated at the design's rows, and the checkpoint finds them again."""
    from polymix_cli.cli.apps import parse_config
    from polymix_cli.data.sources import dataset_from_config
    from polymix_cli.data.synthetic import GENERATORS
    from polymix_cli.runs.checkpoint import load_trained

    trained = load_trained(sine_run / "train" / "checkpoints" / "last.pt", parse_config)
    assert trained.cfg.data.train_inputs == str(sine_run / "inputs.csv")
    data = dataset_from_config(trained.cfg.data)
    _, design = read_csv_array(sine_run / "inputs.csv")
    assert np.allclose(data.x_train.numpy(), design)
    noise = data.y_train - GENERATORS["sine"].fn(data.x_train)
    assert 0 < float(noise.abs().max()) < 0.5  # the generator's noise, std 0.05


def test_suggest_picks_spread_out_points_away_from_the_training_inputs(cli, sine_run, tmp_path):
    out = tmp_path / "next.csv"
    status, err = cli(
        "suggest",
        f"ckpt={sine_run / 'train' / 'checkpoints' / 'last.pt'}",
        "n=3",
        f"output={out}",
        "suggest.num_samples=50",
        "suggest.candidates=512",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert status == 0, err
    header, x = read_csv_array(out)
    assert header == ["x1"] and x.shape == (3, 1)
    assert ((x >= -1) & (x <= 1)).all()
    _, train_x = read_csv_array(sine_run / "inputs.csv")
    radius = 0.5 * 9 ** (-1.0)  # in the unit box; the box is 2 wide
    points = np.concatenate([train_x[:, 0], x[:, 0]]) / 2
    gaps = np.abs(points[:, None] - points[None, :])[np.triu_indices(9, 1)]
    assert gaps.min() >= radius - 1e-12
    # the same seed gives the same suggestion
    status, _ = cli(
        "suggest",
        f"ckpt={sine_run / 'train' / 'checkpoints' / 'last.pt'}",
        "n=3",
        f"output={tmp_path / 'again.csv'}",
        "suggest.num_samples=50",
        "suggest.candidates=512",
        f"hydra.run.dir={tmp_path / 'run2'}",
    )
    assert status == 0
    assert np.array_equal(read_csv_array(tmp_path / "again.csv")[1], x)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["design", "bounds=[[0,1]]", "n=0"], "n must be >= 1, got 0"),
        (["design", "n=3"], "bounds is required: a list of [low, high] pairs"),
        (["design", "bounds=[[1,0]]", "n=3"], "bounds must have low < high"),
        (
            ["design", "bounds=[[0,1]]", "inputs=[a,b]", "n=3"],
            "inputs names 2 input(s) but bounds gives 1 pair(s)",
        ),
        (["design", "bounds=[[0,1]]", "n=3", "method=random"], "method must be one of"),
        (["suggest", "ckpt=missing.pt", "n=3"], "checkpoint missing.pt does not exist"),
        (["suggest", "ckpt=CKPT", "n=0"], "n must be >= 1, got 0"),
        (
            ["suggest", "ckpt=CKPT", "n=2", "suggest.bounds=[[0,1],[0,1]]"],
            "suggest.bounds must give [low, high] for each of the model's 1 input(s) (x1), got 2",
        ),
        (
            ["suggest", "ckpt=CKPT", "n=2", "suggest.bounds=[[0,2]]"],
            "suggest.bounds [0, 2] of input 'x1' reach outside its training bounds [-1, 1]",
        ),
        (["suggest", "ckpt=FOREIGN", "n=2"], "cannot be unpickled"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(cli, sine_run, tmp_path, args, needle):
    foreign = tmp_path / "foreign.pt"
    foreign.write_text("x1,y\n0,1\n")
    ckpt = str(sine_run / "train" / "checkpoints" / "last.pt")
    args = [a.replace("CKPT", ckpt).replace("FOREIGN", str(foreign)) for a in args]
    out = tmp_path / "out.csv"
    status, err = cli(*args, f"output={out}", f"hydra.run.dir={tmp_path / 'run'}")
    assert status == 2, err
    assert_one_line(err, needle)
    assert not out.exists()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("missing.csv", "missing.csv does not exist"),
        ("OUTSIDE", "1 row(s) lie outside data.bounds [[-1.0, 1.0]] (data rows 2)"),
        ("WRONG", "that data.train_inputs="),
    ],
)
def test_bad_train_inputs_are_one_line_exit_2(cli, tmp_path, value, needle):
    outside = tmp_path / "outside.csv"
    outside.write_text("x1\n0.5\n3\n")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a\n0.5\n")
    value = value.replace("OUTSIDE", str(outside)).replace("WRONG", str(wrong))
    run = tmp_path / "run"
    status, err = cli(
        "train", "experiment=pce_sine", f"data.train_inputs={value}", *TINY, f"hydra.run.dir={run}"
    )
    assert status == 2
    assert_one_line(err, needle)
    assert not (run / "checkpoints").exists()


def test_train_inputs_do_not_apply_to_data_files(cli, tmp_path):
    status, err = cli(
        "train",
        "data=file",
        "data.path=x.csv",
        "data.outputs=[y]",
        "data.train_inputs=d.csv",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert status == 2
    assert_one_line(err, "data.train_inputs does not apply to data from a file")


def test_suggest_works_for_a_mixture_with_integrated_variance(cli, tiny_run, tmp_path):
    out = tmp_path / "next.npz"
    status, err = cli(
        "suggest",
        f"ckpt={tiny_run / 'checkpoints' / 'last.pt'}",
        "n=4",
        f"output={out}",
        "suggest.acquisition=integrated_variance",
        "suggest.num_samples=20",
        "suggest.candidates=256",
        "'suggest.bounds=[[0,1]]'".strip("'"),
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert status == 0, err
    x = np.load(out)["x1"]
    assert x.shape == (4,) and ((x >= 0) & (x <= 1)).all()
    assert len(set(x.tolist())) == 4


@pytest.mark.parametrize("acquisition", ["integrated_variance", "epistemic_std"])
def test_suggest_goes_to_the_gap_between_the_training_inputs(cli, tmp_path, acquisition):
    """Training inputs crowd both ends of [-1, 1]. The mean-field posterior's own spread is
    largest at the ends whatever the design (each coefficient's spread times its Legendre
    polynomial); conditioned on the training inputs it is largest in the empty middle,
    where the suggestion must go."""
    inputs = tmp_path / "inputs.csv"
    x = np.array([-1.0, -0.95, -0.9, -0.85, 0.85, 0.9, 0.95, 1.0])
    np.savetxt(inputs, x[:, None], header="x1", comments="", delimiter=",")
    run = tmp_path / "train"
    status, err = cli(
        "train",
        "experiment=pce_sine",
        f"data.train_inputs={inputs}",
        *TINY,
        "trainer.epochs=300",
        f"hydra.run.dir={run}",
    )
    assert status == 0, err
    out = tmp_path / "next.csv"
    status, err = cli(
        "suggest",
        f"ckpt={run / 'checkpoints' / 'last.pt'}",
        "n=1",
        f"output={out}",
        f"suggest.acquisition={acquisition}",
        "suggest.num_samples=100",
        "suggest.candidates=512",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert status == 0, err
    assert abs(float(read_csv_array(out)[1][0, 0])) < 0.5
