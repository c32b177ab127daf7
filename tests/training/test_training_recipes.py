"""Training recipes: lr schedule by hand, parameter groups by rule, presets and config comparison."""

from __future__ import annotations

import pytest

from vssbench.errors import OptionError
from vssbench.methods import create
from vssbench.training.recipes import (
    PRESETS,
    TrainConfig,
    build_config,
    build_optimizer,
    build_scheduler,
    config_differences,
    lr_factor,
    mmcv_multipliers,
    no_decay_names,
    parameter_groups,
)


def test_lr_factor_hand_worked() -> None:
    # warm-up 10 of 100 iterations, ratio 1e-6: i=0 -> 1e-6 * poly(0) = 1e-6
    assert lr_factor(0, 100, 10, 1e-6) == pytest.approx(1e-6)
    # i=5: poly = 0.95, warm-up = 1 - 0.5 * (1 - 1e-6) = 0.5000005
    assert lr_factor(5, 100, 10, 1e-6) == pytest.approx(0.95 * 0.5000005)
    # after warm-up: pure poly, power 1
    assert lr_factor(10, 100, 10) == pytest.approx(0.9)
    assert lr_factor(99, 100, 10) == pytest.approx(0.01)
    assert lr_factor(100, 100, 10) == 0.0
    assert lr_factor(50, 100, 0, power=2.0) == pytest.approx(0.25)


def test_scheduler_follows_lr_factor_for_every_group() -> None:
    model = create("segformer", num_classes=5)
    config = TrainConfig(method="segformer", iters=20, warmup_iters=4, lr=1e-3)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    for i in range(8):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(1e-3 * group["lr_mult"] * lr_factor(i, 20, 4))
        optimizer.step()
        scheduler.step()


def test_parameter_groups_timm_rule() -> None:
    model = create("tfc", num_classes=5)
    groups = {g["name"]: g for g in parameter_groups(model, lr=1.0, weight_decay=0.01, rule="timm")}
    assert set(groups) == {"encoder/decay", "encoder/no_decay", "head/decay", "head/no_decay"}
    assert groups["encoder/decay"]["lr"] == 1.0 and groups["head/decay"]["lr"] == 10.0  # head_lr_mult = 10
    assert groups["encoder/no_decay"]["weight_decay"] == 0.0 and groups["head/decay"]["weight_decay"] == 0.01
    by_id = {id(p): name for name, g in groups.items() for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(by_id) == len(named)  # every trainable parameter exactly once
    # norms, biases, the depthwise (positional) conv of Mix-FFN: no decay; linear weights: decay
    assert by_id[id(named["backbone.block1.0.norm1.weight"])] == "encoder/no_decay"
    assert by_id[id(named["backbone.block1.0.attn.q.bias"])] == "encoder/no_decay"
    assert by_id[id(named["backbone.block1.0.mlp.dwconv.dwconv.weight"])] == "encoder/no_decay"
    assert by_id[id(named["backbone.block1.0.attn.q.weight"])] == "encoder/decay"
    assert by_id[id(named["decode_head.linear_fuse.bn.weight"])] == "head/no_decay"
    assert by_id[id(named["decode_head.linear_pred.weight"])] == "head/decay"
    # the method's own modules (not in "encoder") train at the head rate
    msda = [n for n in named if n.startswith("msda.") and named[n].ndim > 1]
    assert msda and all(by_id[id(named[n])] == "head/decay" for n in msda)
    assert "backbone.block1.0.attn.kv.weight" not in no_decay_names(model)


def _group_of(model, **kwargs) -> dict[str, str]:
    groups = parameter_groups(model, lr=1.0, weight_decay=0.01, **kwargs)
    by_id = {id(p): g["name"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(by_id) == len(named) == sum(len(g["params"]) for g in groups)  # each exactly once
    return {name: by_id[id(p)] for name, p in named.items()}


@pytest.mark.parametrize("method", ["segformer", "cffm", "mrcfa", "tfc", "tdnet"])
def test_parameter_groups_mmcv_rule(method) -> None:
    """The released custom_keys: the head (norms and biases included) lr x10 with decay; in the
    encoder only *norm* parameters are undecayed, its biases and depthwise convs decayed."""
    model = create(method, num_classes=5)
    groups = {g["name"]: g for g in parameter_groups(model, lr=1.0, weight_decay=0.01)}  # mmcv: the default
    assert set(groups) == {"encoder/decay", "encoder/no_decay", "head/decay"}
    assert (groups["encoder/decay"]["lr"], groups["encoder/decay"]["weight_decay"]) == (1.0, 0.01)
    assert (groups["encoder/no_decay"]["lr"], groups["encoder/no_decay"]["weight_decay"]) == (1.0, 0.0)
    assert (groups["head/decay"]["lr"], groups["head/decay"]["weight_decay"]) == (10.0, 0.01)
    group = _group_of(model)
    expected = {
        "backbone.block1.0.norm1.weight": "encoder/no_decay",
        "backbone.block1.0.attn.norm.bias": "encoder/no_decay",
        "backbone.patch_embed1.norm.weight": "encoder/no_decay",
        "backbone.norm4.bias": "encoder/no_decay",
        "backbone.block1.0.attn.q.bias": "encoder/decay",
        "backbone.block1.0.mlp.dwconv.dwconv.weight": "encoder/decay",
        "backbone.block1.0.mlp.dwconv.dwconv.bias": "encoder/decay",
        "backbone.patch_embed1.proj.bias": "encoder/decay",
    }
    for name, want in expected.items():
        assert group[name] == want, name
    head = [n for n in group if not n.startswith("backbone.")]
    assert head and all(group[n] == "head/decay" for n in head)
    norms_in_head = [n for n in head if "norm" in n or ".bn." in n]
    assert norms_in_head  # the head's norms: lr x10 and decayed ("head" is tried before "norm")


def test_parameter_groups_rules_differ_on_named_parameters() -> None:
    model = create("segformer", num_classes=5)
    mmcv, timm = _group_of(model, rule="mmcv"), _group_of(model, rule="timm")
    table = {  # name: (mmcv, timm)
        "backbone.block1.0.norm1.weight": ("encoder/no_decay", "encoder/no_decay"),
        "backbone.block1.0.attn.q.weight": ("encoder/decay", "encoder/decay"),
        "backbone.block1.0.attn.q.bias": ("encoder/decay", "encoder/no_decay"),
        "backbone.block2.1.mlp.dwconv.dwconv.weight": ("encoder/decay", "encoder/no_decay"),
        "decode_head.linear_fuse.bn.weight": ("head/decay", "head/no_decay"),
        "decode_head.linear_c1.proj.bias": ("head/decay", "head/no_decay"),
        "decode_head.linear_pred.weight": ("head/decay", "head/decay"),
    }
    assert {n: (mmcv[n], timm[n]) for n in table} == table
    with pytest.raises(OptionError, match="unknown param_rule 'bogus'"):
        parameter_groups(model, lr=1.0, weight_decay=0.01, rule="bogus")


def test_mmcv_multipliers_hand_worked() -> None:
    """mmcv tries custom keys longest first, ties alphabetically, and applies only the first match."""
    keys = {"head": (None, 1.0), "norm": (1.0, 0.0), "pos_block": (1.0, 0.0)}
    assert mmcv_multipliers("decode_head.norm.weight", keys, 10.0) == (10.0, 1.0)  # head < norm
    assert mmcv_multipliers("backbone.norm1.weight", keys, 10.0) == (1.0, 0.0)
    assert mmcv_multipliers("backbone.pos_block.0.head.weight", keys, 10.0) == (1.0, 0.0)  # longest key
    assert mmcv_multipliers("backbone.block1.0.attn.q.bias", keys, 10.0) == (1.0, 1.0)  # no key
    assert mmcv_multipliers("x.abnorm.y", {"abnorm": (2.0, 0.5), "norm": (1.0, 0.0)}, 10.0) == (2.0, 0.5)
    assert mmcv_multipliers("decode_head.conv.weight", keys, 3.0) == (3.0, 1.0)  # head_lr_mult


def test_param_rule_in_config_and_legacy_resume() -> None:
    assert build_config().param_rule == "mmcv" and build_config(data="/x").param_rule == "mmcv"
    config = build_config(param_rule="timm")
    assert TrainConfig.from_dict(config.to_dict()).param_rule == "timm"
    with pytest.raises(OptionError, match="unknown param_rule 'x'; rules: mmcv, timm"):
        build_config(param_rule="x")
    # a run saved before param_rule existed was trained with the timm-style rule
    legacy = {k: v for k, v in build_config().to_dict().items() if k != "param_rule"}
    assert config_differences(legacy, build_config(param_rule="timm").to_dict()) == []
    assert config_differences(legacy, build_config().to_dict()) == ["param_rule: 'timm' -> 'mmcv'"]


def test_head_lr_mult_override() -> None:
    model = create("segformer", num_classes=5)
    groups = {g["name"]: g for g in parameter_groups(model, lr=2.0, weight_decay=0.0, head_lr_mult=3.0)}
    assert groups["head/decay"]["lr"] == 6.0


def test_presets_and_overrides() -> None:
    assert build_config(data="/x").preset == "paper"
    paper = build_config("paper", method="tfc")
    assert (paper.lr, paper.iters, paper.warmup_iters, paper.crop, paper.batch_size) == (
        6e-5,
        160_000,
        1500,
        (480, 480),
        1,
    )
    assert (paper.weight_decay, paper.betas, paper.warmup_ratio, paper.power) == (
        0.01,
        (0.9, 0.999),
        1e-6,
        1.0,
    )
    synthetic = build_config(method="tfc", iters=7, crop=(32, 40))
    assert synthetic.preset == "synthetic" and synthetic.iters == 7 and synthetic.crop == (32, 40)
    assert synthetic.lr == PRESETS["synthetic"]["lr"]
    assert TrainConfig.from_dict(synthetic.to_dict()) == synthetic
    with pytest.raises(OptionError, match="unknown preset 'fast'"):
        build_config("fast")
    with pytest.raises(OptionError, match="iters must be >= 1"):
        build_config(iters=0)


def test_config_differences_name_the_fields() -> None:
    a = TrainConfig(method="tfc").to_dict()
    b = TrainConfig(method="tfc", lr=1e-3, workers=2, batch_size=2).to_dict()
    diffs = config_differences(a, b)
    assert [d.split(":")[0] for d in diffs] == ["batch_size", "lr"]  # workers may differ
