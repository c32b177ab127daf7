"""The correlation flow estimator and warping used by TFC's flow-guided ablation."""

from __future__ import annotations

import torch

from vssbench.models.flow import CorrelationFlow, FlowEstimator, resize_flow, warp


def test_warp_integer_shift_and_border() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    flow = torch.zeros(1, 2, 3, 4)
    flow[:, 0] = 1.0  # read one pixel to the right
    out = warp(x, flow)
    torch.testing.assert_close(out[..., :3], x[..., 1:], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[..., 3], x[..., 3], rtol=0, atol=1e-5)  # border padding
    flow = torch.zeros(1, 2, 3, 4)
    flow[:, 1] = -0.5  # half a pixel up: mean of the row and the one above
    out = warp(x, flow)
    torch.testing.assert_close(out[:, :, 1:], (x[:, :, 1:] + x[:, :, :-1]) / 2, rtol=0, atol=1e-5)
    torch.testing.assert_close(warp(x, torch.zeros(1, 2, 3, 4)), x, rtol=0, atol=1e-5)


def test_resize_flow_scales_units() -> None:
    flow = torch.ones(1, 2, 4, 6)
    flow[:, 1] = 2.0
    big = resize_flow(flow, (8, 18))
    assert big.shape == (1, 2, 8, 18)
    torch.testing.assert_close(big[:, 0], torch.full((1, 8, 18), 3.0))
    torch.testing.assert_close(big[:, 1], torch.full((1, 8, 18), 4.0))


def test_correlation_flow_recovers_a_translation() -> None:
    torch.manual_seed(0)
    key = torch.randn(1, 64, 16, 20)
    # The current frame is the keyframe moved 2 px right and 1 px down: cur(p) = key(p - (2, 1)).
    cur = torch.zeros_like(key)
    cur[:, :, 1:, 2:] = key[:, :, :-1, :-2]
    est = CorrelationFlow(64, radius=3, temperature=0.05)
    assert isinstance(est, FlowEstimator)
    flow = est(key, cur)
    assert flow.shape == (1, 2, 16, 20)
    inner = (slice(None), slice(4, -4), slice(4, -4))
    torch.testing.assert_close(flow[:, 0][inner], torch.full_like(flow[:, 0][inner], -2.0), rtol=0, atol=1e-3)
    torch.testing.assert_close(flow[:, 1][inner], torch.full_like(flow[:, 1][inner], -1.0), rtol=0, atol=1e-3)
    aligned = warp(key, flow)
    torch.testing.assert_close(aligned[:, :, 4:-4, 4:-4], cur[:, :, 4:-4, 4:-4], rtol=0, atol=1e-2)


def test_correlation_flow_is_trainable() -> None:
    torch.manual_seed(1)
    est = CorrelationFlow(8, radius=2)
    key, cur = torch.randn(2, 8, 6, 7), torch.randn(2, 8, 6, 7, requires_grad=True)
    est(key, cur).square().sum().backward()
    assert cur.grad is not None and cur.grad.abs().sum() > 0
    assert est.refine.weight.grad.abs().sum() > 0 and est.log_temperature.grad is not None
