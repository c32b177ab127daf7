"""Shared fixtures: one intra-op thread, a tiny synthetic VSPW tree, a deliberately failing method,
two ranks, a local Slurm."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from torch import nn

from vssbench.data import synthesize
from vssbench.methods import base as methods_base
from vssbench.methods.base import BaseOptions, MethodInfo, VideoSegmenter, register


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny tensors: one intra-op thread is fastest, and immune to oversubscription on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic VSPW tree: 6 videos (3 val) of 18 frames at 32x48 (T > 16: VC16 has windows)."""
    return synthesize(tmp_path_factory.mktemp("vspw") / "mini", videos=6, frames=18, size=(32, 48), seed=0)


class Failing(VideoSegmenter):
    """A method whose every step raises (for sweep and error-row tests)."""

    info = MethodInfo("test_failing", paper="none (test)", type="Image", default_interval=4)
    Options = BaseOptions

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: BaseOptions | None = None
    ) -> None:
        super().__init__(options)
        self.layer = nn.Conv2d(3, 4, 1)

    def segment(self, image: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise RuntimeError("deliberate failure in step")


@pytest.fixture
def failing_method(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the failing method in a private copy of the registry (other tests never see it)."""
    monkeypatch.setattr(methods_base, "_REGISTRY", dict(methods_base._REGISTRY))
    register(Failing)
    return Failing.info.name


@pytest.fixture
def launch_two_ranks() -> Callable[[Sequence[str], float], list[tuple[int, str, str]]]:
    """Run a command as ranks 0 and 1 of a 2-process group (torchrun's environment, a free port).

    Returns ``launch(cmd, timeout)`` -> ``[(returncode, stdout, stderr)]`` per rank.
    """

    def launch(cmd: Sequence[str], timeout: float) -> list[tuple[int, str, str]]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        procs = []
        for rank in range(2):
            env = dict(
                os.environ,
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE="2",
                LOCAL_WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
            procs.append(
                subprocess.Popen(
                    list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
        outputs = [p.communicate(timeout=timeout) for p in procs]
        return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]

    return launch


def _free_port_pair(start: int = 7017) -> int:
    """The first port from ``start`` on such that it and the next one are free on 127.0.0.1."""
    for port in range(start, start + 400, 2):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no two free ports from {start} on")


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A one-node Slurm on this machine for the session (``scripts/local-slurm.sh``): yields its
    ``slurm.conf``, set as ``SLURM_CONF`` meanwhile, and stops it at the end.

    Skipped when slurmctld, slurmd, munged or sbatch are missing or this is not root, unless
    ``VSSBENCH_REQUIRE_SLURM=1`` (CI), where that is a failure.
    """
    missing = [c for c in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(c) is None]
    reason = ""
    if missing:
        reason = f"no local Slurm: {', '.join(missing)} not found (apt-get install slurm-wlm munge)"
    elif os.geteuid() != 0:
        reason = "the local Slurm of scripts/local-slurm.sh runs as root (SlurmUser=root)"
    if reason:
        if os.environ.get("VSSBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"VSSBENCH_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, VSSBENCH_SLURM_DIR=str(folder), VSSBENCH_SLURM_PORT=str(_free_port_pair()))
    script = str(Path(__file__).parent.parent / "scripts" / "local-slurm.sh")
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"scripts/local-slurm.sh start failed: {started.stdout}{started.stderr}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield folder / "slurm.conf"
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)
