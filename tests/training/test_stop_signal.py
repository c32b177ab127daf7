"""A signal stops a training cleanly: SIGUSR1 (Slurm's warning before a time limit) or SIGTERM
(scancel, a preemption) ends it after the current iteration with last.pth saved, `vssbench train`
exits 75, and --resume ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vssbench.cli import main
from vssbench.training.hooks import STOPPED_EXIT_STATUS, StopSignals, TrainingStopped
from vssbench.training.recipes import build_config
from vssbench.training.run import train
from vssbench.training.trainer import Trainer

TINY = dict(crop=(32, 32), scale=(48, 32), batch_size=2, val_every=0, log_every=1, threads=1)


def _config(root: Path, **fields):
    # SegFormer with drop path 0.1: the torch RNG matters as well as the data order
    return build_config(
        "synthetic", method="segformer", data=str(root), **{**TINY, "iters": 4, "lr": 1e-3, **fields}
    )


def _signal_during(monkeypatch: pytest.MonkeyPatch, iteration: int, signum: int) -> None:
    """Send ``signum`` to this process while iteration ``iteration`` (0-based) runs."""
    step = Trainer.run_step

    def run_step(self: Trainer) -> None:
        if self.iter == iteration:
            os.kill(os.getpid(), signum)
        step(self)

    monkeypatch.setattr(Trainer, "run_step", run_step)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pth", weights_only=True)["state_dict"]


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["SIGUSR1", "SIGTERM"])
def test_a_signal_stops_after_its_iteration_and_resume_is_bit_exact(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    config = _config(data_root, checkpoint_every=100)  # no periodic save: the stop writes last.pth
    train(config, tmp_path / "straight", progress=False)
    before = signal.getsignal(signum)
    with monkeypatch.context() as patch:
        _signal_during(patch, 1, signum)
        with pytest.raises(TrainingStopped) as stopped:
            train(config, tmp_path / "stopped", progress=False)
    assert str(stopped.value) == (
        f"stopped by {signal.Signals(signum).name} at iteration 2; last.pth saved; continue with --resume"
    )
    assert signal.getsignal(signum) is before  # the previous handler is back
    folder = tmp_path / "stopped"
    assert torch.load(folder / "last.pth", weights_only=True)["iteration"] == 2
    assert not (folder / "model.pth").exists()  # stopped, not finished
    assert [json.loads(line)["iter"] for line in (folder / "log.jsonl").read_text().splitlines()] == [1, 2]
    summary = train(config, folder, resume=True, progress=False)
    assert summary["start_iteration"] == 2 and summary["iterations"] == 4
    straight, resumed = _weights(tmp_path / "straight"), _weights(folder)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_train_exits_75_with_one_line_and_resumes(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    args = ["train", "--method", "segformer", "--data", str(data_root), "--iters", "3", "--crop", "32x32"]
    args += ["--batch-size", "1", "--val-every", "0", "--threads", "1", "--quiet", "--out", str(out)]
    with monkeypatch.context() as patch:
        _signal_during(patch, 0, signal.SIGUSR1)
        result = CliRunner().invoke(main, args)
    assert result.exit_code == STOPPED_EXIT_STATUS == 75, result.output
    assert result.stderr.splitlines()[-1] == (
        "train: stopped by SIGUSR1 at iteration 1; last.pth saved; continue with --resume"
    )
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(out / "model.pth", weights_only=True)["iteration"] == 3


def test_a_signal_that_stopped_nothing_is_raised_again_under_the_previous_handler() -> None:
    """A signal after the last iteration is delayed to the end of train(), never swallowed."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        with StopSignals() as signals:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert signals.received == signal.SIGUSR1 and seen == []
        assert seen == [signal.SIGUSR1]
        with StopSignals() as signals:  # consumed by a stop: not raised again
            os.kill(os.getpid(), signal.SIGUSR1)
            signals.consumed = True
        assert seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.slow
def test_every_rank_stops_at_the_same_iteration_when_one_rank_gets_the_signal(
    data_root: Path, tmp_path: Path, launch_two_ranks
) -> None:
    """Under DDP the flag is reduced over the ranks: rank 1 alone is signalled, both stop together."""
    out = tmp_path / "ddp"
    script = f"""
import os, signal, sys
from vssbench.training.trainer import Trainer
step = Trainer.run_step
def run_step(self):
    if self.iter == 1 and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGUSR1)
    step(self)
Trainer.run_step = run_step
from vssbench.cli import main
main(["train", "--method", "segformer", "--data", {str(data_root)!r}, "--iters", "4", "--crop", "32x32",
      "--batch-size", "1", "--val-every", "0", "--threads", "1", "--quiet", "--out", {str(out)!r}])
"""
    results = launch_two_ranks([sys.executable, "-c", script], 300)
    assert [code for code, _, _ in results] == [75, 75], results
    assert results[0][2].splitlines()[-1] == (
        "train: stopped by SIGUSR1 at iteration 2; last.pth saved; continue with --resume"
    )
    assert torch.load(out / "last.pth", weights_only=True)["iteration"] == 2
