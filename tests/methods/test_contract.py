"""The method contract: every registered method keeps every rule of the kit ``vssbench.testing``.

Parametrized over ``vssbench.methods.available()`` (built-in and plugin methods alike) and over the
kit's rules, so a newly registered method, or a new rule, is checked without editing this file.
Inputs are the kit's: MiT-B0 at random init, 5 classes, 64x64 frames and one size that is not a
multiple of 32, a few frames past the method's lead-in. What is particular to one method (its
lead-in length, its options, its caches) is tested in that method's own test file; the kit
itself is tested on adapters broken on purpose in tests/test_testing.py.
"""

from __future__ import annotations

import pytest

from vssbench.methods import available
from vssbench.testing import CHECKS, check_method


@pytest.mark.parametrize("rule", sorted(CHECKS))
@pytest.mark.parametrize("name", available())
def test_method_keeps_the_contract(name: str, rule: str) -> None:
    check_method(name, checks=[rule])
