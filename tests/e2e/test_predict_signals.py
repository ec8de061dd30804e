"""SIGTERM and SIGINT during ``polymix predict`` (issue 17): both remove the temporary
output beside the file asked for and print one line; the exit status is 128 + signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY

from polymix_cli.cli.main import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("sig") / "run"
    try:
        main(["train", *TINY, "trainer.epochs=2", "eval.sensitivity=off", f"hydra.run.dir={run}"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return run / "checkpoints" / "last.pt"


@pytest.mark.parametrize(
    ("sig", "suffix", "extra"),
    [
        (signal.SIGTERM, ".csv", []),
        (signal.SIGINT, ".csv", []),
        (signal.SIGTERM, ".npz", ["predict.save_draws=true"]),
    ],
)
def test_a_signal_during_predict_leaves_nothing(checkpoint, tmp_path, sig, suffix, extra):
    rows = np.random.default_rng(0).uniform(-1, 1, 400_000)
    (tmp_path / "in.csv").write_text("x1\n" + "\n".join(f"{v:.6f}" for v in rows) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("POLYMIX_DEBUG", None)
    args = [sys.executable, "-m", "polymix_cli", "predict", f"ckpt={checkpoint}"]
    args += [f"input={tmp_path / 'in.csv'}", f"output={out / ('o' + suffix)}"]
    args += ["predict.num_samples=200", *extra]
    # a job started in the background by a non-interactive shell (as CI runners may start
    # the tests) inherits SIGINT ignored, and polymix rightly keeps it ignored (as under
    # nohup): give the child the default disposition a terminal's foreground job has
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    proc = subprocess.Popen(
        args,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # noqa: PLW1509 - it only resets one signal's handler
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(out.iterdir()) and proc.poll() is None:
        time.sleep(0.05)  # until the temporary output exists: it is being written
    assert proc.poll() is None, "prediction ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polymix: "), err
    assert "Traceback" not in err
    assert list(out.iterdir()) == []
