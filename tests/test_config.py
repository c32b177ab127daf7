"""RunConfig: JSON round trip, stable hashes, validation."""

from __future__ import annotations

import pytest

from vssbench.config import RunConfig
from vssbench.errors import OptionError


def test_json_round_trip_is_exact() -> None:
    cfg = RunConfig(
        method="tfc", backbone="b1", options={"threshold": 0.5, "interp": "hard"}, resolution=(240, 427)
    )
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.resolution == (240, 427)
    assert again.config_hash == cfg.config_hash


def test_hash_is_stable_and_order_independent() -> None:
    a = RunConfig(options={"a": 1, "b": 2})
    b = RunConfig(options={"b": 2, "a": 1})
    assert a.config_hash == b.config_hash
    assert len(a.config_hash) == 12
    assert RunConfig(split="train").config_hash != a.config_hash


def test_conditions_hash_ignores_the_subject_only() -> None:
    base = RunConfig(method="tfc")
    assert RunConfig(method="segformer", backbone="b1").conditions_hash == base.conditions_hash
    assert RunConfig(method="tfc", resolution=(240, 427)).conditions_hash != base.conditions_hash
    assert RunConfig(method="tfc", threads=2).conditions_hash != base.conditions_hash


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"resolution": (0, 10)}, "resolution"), ({"interval": 0}, "interval"), ({"dtype": "int8"}, "dtype")],
)
def test_bad_values_raise_clear_errors(kwargs: dict, fragment: str) -> None:
    with pytest.raises(OptionError, match=fragment):
        RunConfig(**kwargs)


def test_unknown_key_in_json_is_named() -> None:
    with pytest.raises(OptionError, match="bogus"):
        RunConfig.from_dict({"method": "tfc", "bogus": 1})
