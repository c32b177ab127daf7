"""The SegFormer all-MLP decode head, split into the steps that TFC and keyframe methods reuse.

``project`` maps each encoder level to E channels and 1/4 resolution (x̂^1..x̂^4 in the TFC
paper), ``fuse`` concatenates them in the original order [x̂^4, x̂^3, x̂^2, x̂^1] and mixes them
with a 1x1 conv + BN + ReLU into z, and ``classify`` turns z into 1/4-resolution logits. The
module names match the NVlabs head (``linear_c{i}.proj``, ``linear_fuse.conv``, ``linear_fuse.bn``,
``linear_pred``); the official head's ``conv_seg`` is never used there and is not built here.

Two decoder modes compute the same function (exactly in real arithmetic; float rounding differs,
~1e-6 relative in float32) at different cost, switched for a whole model with
:func:`set_decoder_mode`:

* ``"reference"``: the literal architecture, ``linear_c{l}`` to E channels, bilinear resize to
  1/4, concat, and the 4E -> E fuse conv at 1/4 resolution. Its GMACs are the published ones.
* ``"folded"``: ``linear_c{l}`` (C_l -> E, with bias) composed with the fuse conv's columns W_l
  of level l gives one C_l -> E map A_l = W_l·L_l with bias W_l·b_l, applied at the level's own
  resolution and then resized (bilinear resizing commutes with a 1x1 map, and resizing a
  constant gives the constant, since align_corners=False weights sum to 1 also at the borders).
  The fuse conv's 4E x E per 1/4-resolution point becomes sum_l C_l x E per *native* point:
  for B0 at 480x853, 6.7 GMACs become 0.4. The folded matrices are computed from the current
  parameters at every call (E x E x C_l MACs, negligible), so checkpoints keep the published
  layout, a loaded checkpoint or an optimizer step is always seen, and training works in
  either mode.

Modules are built in ``"reference"`` mode (what the names in a checkpoint describe);
the harness switches every model it builds to the mode of ``--decoder`` (default ``folded``).

The head owns the mode: a method never branches on it. It asks :meth:`SegFormerHead.inputs`
for one frame's :class:`DecoderInputs` and takes from it what it needs: the fused feature z,
one level's share of the fuse conv (``term``), the partial sum of the levels it will reuse
(``partial``), the projected map x̂^l (``projected``), or a further linear map applied after a
level's projection (``through``, e.g. an attention's value projection). Each is computed once
per frame, in the head's current mode, with exactly the operations that mode prescribes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vssbench.errors import OptionError

#: The decoder modes (see the module docstring); ``--decoder`` on ``run`` and ``profile``.
DECODER_MODES: tuple[str, ...] = ("folded", "reference")


def check_decoder_mode(mode: str) -> str:
    """``mode`` itself if it is one of :data:`DECODER_MODES`, else an :class:`OptionError`."""
    if mode not in DECODER_MODES:
        raise OptionError(f"decoder mode must be one of {', '.join(DECODER_MODES)}, got {mode!r}")
    return mode


def set_decoder_mode(module: nn.Module, mode: str) -> int:
    """Switch every submodule of ``module`` that has a ``decoder_mode`` attribute to ``mode``.

    Works for any method alike: SegFormer heads (and any other head exposing ``decoder_mode``)
    are found by walking ``module.modules()``; a model without one is left as it is. Returns the
    number of modules switched. Keyframe methods notice the change at their next step (a state
    cached under the other mode is not reused).
    """
    check_decoder_mode(mode)
    switched = 0
    for sub in module.modules():
        if hasattr(sub, "decoder_mode"):
            sub.decoder_mode = mode
            switched += 1
    return switched


def compose_linear(
    outer_weight: Tensor, inner_weight: Tensor, inner_bias: Tensor | None, outer_bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The affine map outer(inner(x)) as one (weight, bias): (W_o·W_i, W_o·b_i + b_o).

    outer_weight is O x M, inner_weight M x I, biases M and O (None: zero). One matmul
    (O x M x (I + 1) MACs) gives both, so the cost counter sees the folding work too.
    """
    if inner_bias is None:
        inner_bias = inner_weight.new_zeros(inner_weight.shape[0])
    both = outer_weight @ torch.cat([inner_weight, inner_bias[:, None]], dim=1)
    weight, bias = both[:, :-1], both[:, -1]
    if outer_bias is not None:
        bias = bias + outer_bias
    return weight, bias


class LinearEmbed(nn.Module):
    """A Linear over channels applied per token (the original ``MLP`` holding ``proj``)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """B x C x H x W -> B x E x H x W."""
        b, _, h, w = x.shape
        y = self.proj(x.flatten(2).transpose(1, 2))
        return y.transpose(1, 2).reshape(b, -1, h, w)


class ConvBNReLU(nn.Module):
    """1x1 conv without bias (mmcv drops it when a norm follows), BatchNorm, ReLU."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_dim)
        self.act = nn.ReLU()
        # mmcv ConvModule init: Kaiming normal (fan_out, ReLU) for the conv, BN weight 1 bias 0.
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def resize_logits(logits: Tensor, size: tuple[int, int] | Sequence[int]) -> Tensor:
    """Bilinear resize (align_corners=False) of B x K x h x w maps to ``size`` = (H, W).

    Returns the input itself when it already has that size.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class SegFormerHead(nn.Module):
    """SegFormer MLP decoder over four encoder levels with ``in_channels`` = (C_1..C_4).

    ``embed_dim`` is the decoder width E (256 in every VSPW config), ``dropout`` the
    Dropout2d rate before ``linear_pred``. Output logits are at the resolution of level 1 (1/4).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        embed_dim: int = 256,
        num_classes: int = 124,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"SegFormerHead needs 4 input levels, got in_channels={list(in_channels)}")
        if embed_dim < 1 or num_classes < 1:
            raise ValueError(f"embed_dim and num_classes must be positive, got {embed_dim}, {num_classes}")
        self.in_channels = tuple(int(c) for c in in_channels)
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        for level, channels in enumerate(self.in_channels, start=1):
            setattr(self, f"linear_c{level}", LinearEmbed(channels, embed_dim))
        self.linear_fuse = ConvBNReLU(4 * embed_dim, embed_dim)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, kernel_size=1)
        self._decoder_mode = "reference"

    @property
    def decoder_mode(self) -> str:
        """``"reference"`` (the literal architecture) or ``"folded"`` (same function, less work)."""
        return self._decoder_mode

    @decoder_mode.setter
    def decoder_mode(self, mode: str) -> None:
        self._decoder_mode = check_decoder_mode(mode)

    @property
    def folded(self) -> bool:
        """Whether the head runs in ``"folded"`` mode."""
        return self._decoder_mode == "folded"

    def fuse_weight(self, level: int) -> Tensor:
        """W_level: the fuse conv's E x E columns that multiply x̂^level (concat order 4, 3, 2, 1)."""
        if not 1 <= level <= 4:
            raise ValueError(f"decoder level must be 1..4, got {level}")
        e = self.embed_dim
        return self.linear_fuse.conv.weight[:, (4 - level) * e : (5 - level) * e, 0, 0]

    def folded_projection(self, level: int) -> tuple[Tensor, Tensor]:
        """(A_l, c_l) = (W_l·L_l, W_l·b_l): ``linear_c{level}`` followed by the fuse's level share,
        E x C_l and E."""
        proj = getattr(self, f"linear_c{level}").proj
        return compose_linear(self.fuse_weight(level), proj.weight, proj.bias)

    def folded_term(self, level: int, x: Tensor, size: tuple[int, int] | Sequence[int]) -> Tensor:
        """W_level·x̂^level computed from the encoder map x (B x C_l x h_l x w_l) -> B x E x size.

        One C_l -> E 1x1 map at the level's own resolution, then a bilinear resize: equal to
        :meth:`fuse_term` of ``linear_c{level}(x)`` in real arithmetic, at C_l/E of its cost
        before the resize (and none of ``linear_c{level}``'s).
        """
        weight, bias = self.folded_projection(level)
        return resize_logits(F.conv2d(x, weight[:, :, None, None], bias), size)

    def folded_terms(
        self, feats: Sequence[Tensor], size: tuple[int, int] | Sequence[int] | None = None
    ) -> list[Tensor]:
        """[W_1·x̂^1 .. W_4·x̂^4] from encoder maps [x^1..x^4] via :meth:`folded_term`."""
        if len(feats) != 4:
            raise ValueError(f"SegFormerHead needs 4 feature maps, got {len(feats)}")
        if size is None:
            size = tuple(feats[0].shape[-2:])
        return [self.folded_term(level, x, size) for level, x in enumerate(feats, start=1)]

    def inputs(
        self,
        maps: Sequence[Tensor] | Mapping[int, Tensor],
        size: tuple[int, int] | Sequence[int] | None = None,
        native: Mapping[int, Tensor] | None = None,
        projected: Mapping[int, Tensor] | None = None,
    ) -> DecoderInputs:
        """One frame's encoder maps as this head sees them (see :class:`DecoderInputs`).

        ``maps`` is [x^1..x^k] or {level: x^level}; ``size`` the 1/4 size (default: level 1's map);
        ``native`` and ``projected`` hold ``linear_c{l}`` outputs (own resolution) and x̂^l maps
        already computed elsewhere, e.g. by the keyframe whose levels a frame reuses.
        """
        return DecoderInputs(self, maps, size, native, projected)

    def fused(self, feats: Sequence[Tensor]) -> Tensor:
        """z (B x E x h x w at level-1 resolution) from encoder maps [x^1..x^4], in the current mode."""
        return self.inputs(feats).fused()

    def fuse_with(self, reused: Tensor, current: DecoderInputs) -> Tensor:
        """z from a cached partial term of reused levels plus the ``current`` frame's own levels.

        ``reused`` is :meth:`DecoderInputs.partial` of an earlier frame (the keyframe's levels
        3-4, possibly warped); the current frame contributes one ``term`` per level it holds.
        Both modes sum the same terms in the same order: reused first, then levels ascending.
        """
        return self.fuse_terms([reused, *(current.term(level) for level in current.levels)])

    def project_level(self, level: int, x: Tensor, size: tuple[int, int] | Sequence[int]) -> Tensor:
        """x̂^level: ``linear_c{level}`` per token, then bilinear resize to ``size`` -> B x E x size.

        ``level`` is 1..4; ``x`` is that level's B x C_level x h x w encoder map.
        """
        if not 1 <= level <= 4:
            raise ValueError(f"decoder level must be 1..4, got {level}")
        return resize_logits(getattr(self, f"linear_c{level}")(x), size)

    def project(
        self, feats: Sequence[Tensor], size: tuple[int, int] | Sequence[int] | None = None
    ) -> list[Tensor]:
        """[x̂^1..x̂^4] for encoder maps ``feats`` = [x^1..x^4]; ``size`` defaults to x^1's size."""
        if len(feats) != 4:
            raise ValueError(f"SegFormerHead needs 4 feature maps, got {len(feats)}")
        if size is None:
            size = tuple(feats[0].shape[-2:])
        return [self.project_level(level, x, size) for level, x in enumerate(feats, start=1)]

    def fuse(self, projected: Sequence[Tensor]) -> Tensor:
        """z = ReLU(BN(conv1x1(concat[x̂^4, x̂^3, x̂^2, x̂^1]))) -> B x E x h x w."""
        if len(projected) != 4:
            raise ValueError(f"fuse needs 4 projected maps, got {len(projected)}")
        return self.linear_fuse(torch.cat(list(projected)[::-1], dim=1))

    def fuse_term(self, level: int, native: Tensor, size: tuple[int, int] | Sequence[int]) -> Tensor:
        """Level ``level``'s share of the fuse conv before BN: W_level · x̂^level -> B x E x size.

        The fuse is a 1x1 conv over concat[x̂^4, x̂^3, x̂^2, x̂^1], so its pre-BN output is the
        sum of one term per level, W_l · x̂^l with W_l the conv's columns of level l. ``native``
        is ``linear_c{level}`` of the encoder map at the level's own resolution; the term is
        computed there and then resized, which equals W_l · resize(native) exactly in real
        arithmetic (bilinear resizing and a 1x1 conv commute) and costs (h_l·w_l)/(h·w) as much.
        A keyframe method computes the reused levels' terms once per keyframe.
        """
        weight = self.fuse_weight(level)
        return resize_logits(F.conv2d(native, weight[:, :, None, None]), size)

    def fuse_terms(self, terms: Sequence[Tensor]) -> Tensor:
        """z = ReLU(BN(sum of per-level ``fuse_term`` values)) -> B x E x h x w."""
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return self.linear_fuse.act(self.linear_fuse.bn(total))

    def classify(self, z: Tensor) -> Tensor:
        """Logits B x num_classes x h x w from the fused feature z (Dropout2d, then 1x1 conv)."""
        return self.linear_pred(self.dropout(z))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Logits at level-1 resolution (1/4 of the image) from encoder maps [x^1..x^4] (either mode)."""
        return self.classify(self.fused(feats))


class DecoderInputs:
    """One frame's encoder maps as a :class:`SegFormerHead` sees them, each derived value computed once.

    Everything is lazy and cached per instance, and computed with the operations of the head's
    mode at the time of the call:

    * ``native(l)``: ``linear_c{l}(x^l)`` at the level's own resolution, B x E x h_l x w_l;
    * ``projected(l)``: x̂^l, the native map resized to the 1/4 ``size``;
    * ``term(l)``: W_l·x̂^l, level l's share of the fuse conv before BN, B x E x size. Folded: one
      C_l -> E map of x^l (:meth:`SegFormerHead.folded_term`); reference: W_l of the native map,
      resized (:meth:`SegFormerHead.fuse_term`);
    * ``partial(levels)``: the sum of those levels' terms (what a keyframe method caches);
    * ``fused(...)``: z; reference mode uses the literal concat and 4E -> E conv;
    * ``through(levels, linear)``: ``linear`` after each level's ``linear_c`` as tokens
      B x S x out (levels flattened in order): folded composes the two maps (C_l x out MACs per
      position), reference applies ``linear`` to the native tokens.
    """

    def __init__(
        self,
        head: SegFormerHead,
        maps: Sequence[Tensor] | Mapping[int, Tensor],
        size: tuple[int, int] | Sequence[int] | None = None,
        native: Mapping[int, Tensor] | None = None,
        projected: Mapping[int, Tensor] | None = None,
    ) -> None:
        self.head = head
        self.maps = dict(maps) if isinstance(maps, Mapping) else dict(enumerate(maps, start=1))
        for level in self.maps:
            if not 1 <= level <= 4:
                raise ValueError(f"decoder level must be 1..4, got {level}")
        if size is None:
            if 1 not in self.maps:
                raise ValueError("size is needed when level 1 is not among the maps")
            size = self.maps[1].shape[-2:]
        self.size = (int(size[0]), int(size[1]))
        self._native: dict[int, Tensor] = dict(native or {})
        self._projected: dict[int, Tensor] = dict(projected or {})
        self._terms: dict[int, Tensor] = {}

    @property
    def levels(self) -> list[int]:
        """The levels this frame holds, ascending."""
        return sorted(self.maps)

    def native(self, level: int) -> Tensor:
        """``linear_c{level}`` of x^level at the level's own resolution (computed once)."""
        if level not in self._native:
            self._native[level] = getattr(self.head, f"linear_c{level}")(self.maps[level])
        return self._native[level]

    def projected(self, level: int) -> Tensor:
        """x̂^level: the native map resized bilinearly to the 1/4 size (computed once)."""
        if level not in self._projected:
            self._projected[level] = resize_logits(self.native(level), self.size)
        return self._projected[level]

    def cached_native(self) -> dict[int, Tensor]:
        """The native maps computed so far, by level (another view of the same levels can reuse them)."""
        return dict(self._native)

    def cached_projected(self, levels: Sequence[int]) -> dict[int, Tensor]:
        """The x̂ maps of ``levels`` computed so far (a keyframe hands them to the frames that reuse it)."""
        return {level: self._projected[level] for level in levels if level in self._projected}

    def term(self, level: int) -> Tensor:
        """W_level·x̂^level at the 1/4 size, in the head's mode (computed once)."""
        if level not in self._terms:
            if self.head.folded:
                self._terms[level] = self.head.folded_term(level, self.maps[level], self.size)
            else:
                self._terms[level] = self.head.fuse_term(level, self.native(level), self.size)
        return self._terms[level]

    def partial(self, levels: Sequence[int]) -> Tensor:
        """The sum of ``levels``' terms: their share of the fuse conv before BN."""
        total = self.term(levels[0])
        for level in levels[1:]:
            total = total + self.term(level)
        return total

    def fused(
        self, reused: Sequence[int] = (), transform: Callable[[Tensor], Tensor] | None = None
    ) -> Tensor:
        """z from all four levels; ``reused`` levels come from an earlier frame.

        ``transform`` is a linear spatial map of 1/4 maps (e.g. flow warping) applied to the
        reused levels' contribution: to each x̂^l in reference mode, to their summed term when
        folded (it commutes with the 1x1 maps). Reference mode is the literal architecture
        (concat, then the 4E -> E conv); folded sums the per-level terms, reused levels first.
        """
        if self.levels != [1, 2, 3, 4]:
            raise ValueError(f"the fused feature needs levels 1-4, got {self.levels}")
        transform = transform or (lambda x: x)
        if not self.head.folded:
            return self.head.fuse(
                [
                    transform(self.projected(level)) if level in reused else self.projected(level)
                    for level in self.levels
                ]
            )
        own = [self.term(level) for level in self.levels if level not in reused]
        if not reused:
            return self.head.fuse_terms(own)
        return self.head.fuse_terms([transform(self.partial(list(reused))), *own])

    def through(self, levels: Sequence[int], linear: nn.Linear) -> Tensor:
        """``linear`` applied after ``linear_c{l}`` to every position of ``levels``: tokens B x S x out."""
        if self.head.folded:
            parts = []
            for level in levels:
                proj = getattr(self.head, f"linear_c{level}").proj
                weight, bias = compose_linear(linear.weight, proj.weight, proj.bias, linear.bias)
                parts.append(F.linear(self.maps[level].flatten(2).transpose(1, 2), weight, bias))
            return torch.cat(parts, dim=1)
        tokens = torch.cat([self.native(level).flatten(2).transpose(1, 2) for level in levels], dim=1)
        return linear(tokens)
