"""``vssbench new-method``: write the package of a new method, ready to install, run, train and test.

:func:`write_method_package` writes a plugin package (``pyproject.toml`` with the entry point
that registers the method, the adapter, a test running the contract kit, a README) whose method
works as written: a per-frame SegFormer built from the MiT encoder and the SegFormer decoder,
with comments where a temporal method keeps its state. The author then edits the adapter and
keeps ``pytest`` green. The templates are the string constants below (``string.Template``:
``$name`` is the method name, ``$cls`` its class name); docs/adding-a-method.md explains the
contract they follow.

This module imports nothing of vssbench above :mod:`vssbench.errors`: the caller (the CLI)
passes the names already taken.
"""

from __future__ import annotations

import ast
import keyword
import re
import sys
from collections.abc import Collection
from importlib.util import find_spec
from pathlib import Path
from string import Template

from vssbench.errors import OptionError

#: A method name: a lower-case Python identifier starting with a letter (also the package name).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$name"
version = "0.1.0"
description = "The video semantic segmentation method $name, as a vssbench plugin."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["vssbench"]

[project.optional-dependencies]
test = ["pytest>=7"]

# vssbench imports the module named on the right on the first use of its method registry; the
# import registers the method. The name on the left is the method's name.
[project.entry-points."vssbench.methods"]
$name = "$name.adapter"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''')

INIT = Template('''\
"""$name: a vssbench method plugin (the method itself is in :mod:`$name.adapter`)."""
''')

ADAPTER = Template('''\
"""$name: a video semantic segmentation method for vssbench.

Written by ``vssbench new-method``: as it stands, ``$name`` is a per-frame SegFormer (the MiT
encoder, then the SegFormer MLP decoder, on every frame alike). Replace this docstring with what
the method does, and the code with what it computes; the comments marked TEMPORAL show where a
method that carries something from one frame to the next keeps it. The contract, and what the
checks of ``pytest`` look for, are in vssbench's docs/adding-a-method.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from vssbench.data.samplers import ClipSampler, KeyframeClipSampler
from vssbench.methods import BaseOptions, MethodInfo, VideoSegmenter, register
from vssbench.models.decoder import SegFormerHead
from vssbench.models.losses import segmentation_loss
from vssbench.models.mit import MixTransformer


@dataclass(frozen=True)
class ${cls}Options(BaseOptions):
    """Options of $name: each field is a ``--set key=value`` key, coerced by its type hint.

    ``interval`` (the keyframe interval, and the window of GMACs and FPS), ``decoder_dim`` and
    ``drop_path_rate`` come from BaseOptions. ``dropout``: the decoder's Dropout2d rate before
    the classifier (training only).
    """

    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@register
class $cls(VideoSegmenter):
    """$name on MiT ``backbone`` with ``num_classes`` outputs."""

    info = MethodInfo(
        "$name",
        paper="(the paper or idea the method comes from)",
        type="Image",  # Image (per-frame), E (efficiency), S (stability) or E&S
        default_interval=4,
        description="Per-frame MiT encoder + SegFormer MLP decoder (the scaffold as written).",
    )
    Options = ${cls}Options
    options: ${cls}Options

    def __init__(
        self, backbone: str = "b0", num_classes: int = 124, options: ${cls}Options | None = None
    ) -> None:
        super().__init__(options)  # stores self.options (the defaults when None)
        self.num_classes = num_classes
        # SegFormer's attribute names: a SegFormer checkpoint loads into this model as it is.
        self.backbone = MixTransformer(backbone, drop_path_rate=self.options.drop_path_rate)
        self.decode_head = SegFormerHead(
            self.backbone.embed_dims, self.options.decoder_dim, num_classes, dropout=self.options.dropout
        )
        # TEMPORAL: what the method carries from frame to frame starts empty here, e.g.
        #     self._previous: Tensor | None = None

    def reset_state(self) -> None:
        """Forget what is carried between frames (``reset()`` calls this before every video)."""
        # TEMPORAL: self._previous = None

    def state_tensors(self) -> list[Tensor]:
        """Every tensor carried to later frames: the GMAC counter counts the work that made them."""
        # TEMPORAL: return [] if self._previous is None else [self._previous]
        return []

    def segment(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Logits of frame ``self.t`` of the current video, N x 3 x H x W -> N x K x H/4 x W/4.

        Any resolution will do: ``step`` resizes the logits to the input's size.
        """
        logits = self.decode_head(self.backbone(image, 4))
        # TEMPORAL: self.t is the frame's index in its video (0 after reset()); a keyframe method
        # asks `self.t % self.options.interval == 0`. Row i of the batch is video i: combine it
        # with row i of the state only, and keep what the next frame needs, detached (the state
        # must not hold an old frame's graph):
        #     if self._previous is not None:
        #         logits = combine(logits, self._previous)
        #     self._previous = logits.detach()
        return logits, {"keyframe": True}

    def train_losses(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Per-frame cross-entropy of a clip: images N x T x 3 x H x W, labels N x T x H x W.

        Every scalar returned is logged by the trainer; ``"loss"`` is the one back-propagated.
        """
        logits = self.decode_head(self.backbone(images.flatten(0, 1), 4))
        loss = segmentation_loss(logits, labels.flatten(0, 1))
        return {"loss": loss, "loss_seg": loss}

    def parameter_groups(self) -> dict[str, nn.Module]:
        """The encoder trains at the base learning rate, every other group at head_lr_mult times it."""
        return {"encoder": self.backbone, "decoder": self.decode_head}

    def train_sampler(self) -> ClipSampler:
        """The training clips: ``interval`` consecutive frames (what train_losses receives)."""
        return KeyframeClipSampler(self.options.interval)


__all__ = ["$cls", "${cls}Options"]
''')

TEST = Template('''\
"""vssbench's contract checks on $name (the same checks vssbench runs on its built-in methods).

Run ``pytest`` after installing this package (``pip install -e .``): vssbench finds the method
through the package's entry point.
"""

from __future__ import annotations

import pytest
from vssbench.methods import available
from vssbench.testing import CHECKS, check_method


def test_${name}_is_registered() -> None:
    assert "$name" in available(), "install this package (pip install -e .) so that vssbench finds it"


@pytest.mark.parametrize("rule", sorted(CHECKS))
def test_${name}_keeps_the_contract(rule: str) -> None:
    check_method("$name", checks=[rule])
''')

README = Template('''\
# $name

A video semantic segmentation method for vssbench, as a plugin package. Written by
`vssbench new-method $name`: as it stands, `$name` is a per-frame SegFormer;
`src/$name/adapter.py` is the file to make it a method of its own.

```bash
pip install -e .                      # registers "$name" through the entry point in pyproject.toml
vssbench methods                      # lists $name
pytest                                # vssbench's contract checks on $name
vssbench run --method $name --max-videos 1 --max-frames 4
vssbench train --method $name --iters 4 --batch-size 1 --crop 64x64 --val-every 0
```

The contract a method keeps, the video-specific mistakes the checks catch, and how plugins are
found are in vssbench's docs/adding-a-method.md.
''')


def check_method_name(name: str, taken: Collection[str] = ()) -> None:
    """Raise :class:`OptionError` naming ``name`` unless it can name a new method and its package.

    A method name is a lower-case Python identifier starting with a letter (it is also the
    import package's and the distribution's name), no keyword, not the name of a module Python
    already finds (the standard library's or an installed one, which the package would shadow
    or collide with), not in ``taken`` (the registered methods), and not one whose class name
    (``mix_transformer`` -> ``MixTransformer``) is a name the adapter imports.
    """
    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise OptionError(
            f"bad method name {name!r}: use a lower-case Python identifier (letters a-z, digits and "
            "underscores, starting with a letter; not a keyword), e.g. 'my_method'"
        )
    if name in taken:
        raise OptionError(f"method name {name!r} is already registered; choose another name")
    classes = (class_name(name), f"{class_name(name)}Options")
    clashes = sorted(set(classes) & _adapter_imports())
    if clashes:
        raise OptionError(
            f"bad method name {name!r}: its classes {classes[0]} and {classes[1]} would shadow "
            f"{', '.join(clashes)}, imported by the adapter; choose another name"
        )
    if name in sys.stdlib_module_names or find_spec(name) is not None:
        raise OptionError(
            f"bad method name {name!r}: a module of that name is already importable, and the "
            "package would collide with it; choose another name"
        )


def _adapter_imports() -> set[str]:
    """The names the adapter template imports (a method's class must not shadow one)."""
    tree = ast.parse(ADAPTER.substitute(name="x", cls="X"))
    return {
        (alias.asname or alias.name).split(".")[0]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }


def class_name(name: str) -> str:
    """The adapter's class name for method ``name``: ``my_method`` -> ``MyMethod``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def package_files(name: str) -> dict[str, str]:
    """The files of method ``name``'s package: relative path -> text (``name`` is not checked)."""
    values = {"name": name, "cls": class_name(name)}
    return {
        "pyproject.toml": PYPROJECT.substitute(values),
        "README.md": README.substitute(values),
        f"src/{name}/__init__.py": INIT.substitute(values),
        f"src/{name}/adapter.py": ADAPTER.substitute(values),
        f"tests/test_{name}.py": TEST.substitute(values),
    }


def write_method_package(name: str, out: str | Path, *, taken: Collection[str] = ()) -> Path:
    """Write the plugin package of a new method ``name`` into folder ``out``; return ``out``.

    ``out`` must not exist or be an empty folder (nothing is ever overwritten); ``name`` must pass
    :func:`check_method_name` against ``taken``. Both errors are :class:`OptionError` naming what
    is wrong. Once installed (``pip install OUT``), the method runs, trains and passes its tests
    as written.
    """
    check_method_name(name, taken)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OptionError(f"{out} is a file; give a new or empty folder for the package")
    if out.is_dir() and any(out.iterdir()):
        raise OptionError(f"{out} is not empty; give a new or empty folder (nothing is overwritten)")
    for relative, text in package_files(name).items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return out


__all__ = ["check_method_name", "class_name", "package_files", "write_method_package"]
