"""Distributed training pieces: the DDP entry module and synchronized BatchNorm on any device.

DistributedDataParallel only synchronizes gradients of work done through its ``forward``, so the
adapter's ``forward_train`` is called through :class:`TrainStep`, a module whose ``forward`` is
it. BatchNorm becomes synchronized BatchNorm (the paper trains one clip per GPU): torch's
``SyncBatchNorm`` on CUDA, and on CPU (gloo), where torch's refuses to run, :class:`GlooSyncBatchNorm`,
which all-reduces the per-channel sums with a differentiable all-reduce.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class TrainStep(nn.Module):
    """``forward(images, labels, iteration)`` = ``adapter.forward_train(images, labels)`` (what DDP
    wraps), after setting the adapter's ``train_iteration`` to ``iteration`` (0-based) when given."""

    def __init__(self, adapter: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self, images: Tensor, labels: Tensor, iteration: int | None = None) -> dict[str, Tensor]:
        if iteration is not None:
            self.adapter.train_iteration = iteration  # before forward_train: a resume continues from it
        return self.adapter.forward_train(images, labels)


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the whole distributed batch, on any device.

    Per channel the local sum, sum of squares and count are all-reduced with
    ``torch.distributed.nn.functional.all_reduce`` (its backward all-reduces the gradient), so
    forward and backward equal BatchNorm over the concatenated batch of all ranks up to float
    rounding. Running statistics use the unbiased variance like BatchNorm. In eval mode, or
    without an initialized process group, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N x C x ...), got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, input.dim()))
        x = input.float()
        count = x.new_tensor([x.numel() / x.shape[1]])
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[2 * c]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp(min=0.0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                )
                unbiased = var * (n / (n - 1).clamp(min=1.0))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
        shape = [1, c] + [1] * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` synchronized across ranks: torch's on CUDA,
    :class:`GlooSyncBatchNorm` else."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlooSyncBatchNorm):
        out = GlooSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        if module.track_running_stats:
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


__all__ = ["GlooSyncBatchNorm", "TrainStep", "convert_sync_batchnorm"]
