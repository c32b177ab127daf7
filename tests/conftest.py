"""Shared fixtures: one intra-op thread, a tiny synthetic VSPW tree, a deliberately failing method."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Sequence
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
