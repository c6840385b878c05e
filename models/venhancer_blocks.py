"""Building blocks of the VEnhancer network (:mod:`.venhancer`): attention, transformers, ResBlocks, resampling.

Layouts as in :mod:`.venhancer`: frames folded into the batch ``[(B F), C, H, W]`` except inside the
temporal layers. Every layer is called as ``layer(x, ctx)`` with a :class:`LayerContext`, which also
carries the attention function (:data:`AttentionFn`; default :func:`default_attention`, torch SDPA), so a
host can route every attention call of the network through its own kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: The layer classes the network is built from (Linear, Conv1d, Conv2d, Conv3d, GroupNorm, LayerNorm): torch.nn by
#: default; :func:`using_operations` swaps in a host's (e.g. ComfyUI's ``comfy.ops`` classes) while a network is built.
_OPS = {"ops": nn}


def ops():
    """The operations namespace layers are built from (torch.nn unless inside :func:`using_operations`)."""
    return _OPS["ops"]


@contextlib.contextmanager
def using_operations(operations):
    """Build layers from ``operations`` (an object with Linear, Conv1d, Conv2d, Conv3d, GroupNorm, LayerNorm) inside the block."""
    previous = _OPS["ops"]
    _OPS["ops"] = nn if operations is None else operations
    try:
        yield
    finally:
        _OPS["ops"] = previous


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [cos(t w_i), sin(t w_i)], w_i = 10000^(-i / (dim/2)); t [N] -> [N, dim] float32."""
    half = dim // 2
    t = t.float().reshape(-1)
    freqs = torch.pow(10000.0, -torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def zero_(module: nn.Module) -> nn.Module:
    """Zero-initialise every parameter of ``module`` (ControlNet zero convs, residual outputs)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


# --------------------------------------------------------------------------- attention


def sdpa_attention(q, k, v):
    """softmax(QK^T / sqrt(d)) V by torch SDPA; q, k, v [N, heads, L, d]."""
    return F.scaled_dot_product_attention(q, k, v)


def naive_attention(q, k, v):
    """softmax(QK^T / sqrt(d)) V materialising the full score matrix (benchmark reference)."""
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return scores.softmax(dim=-1) @ v


#: The attention kernel of the default attention function (benchmarks swap it for naive_attention).
_ATTENTION = {"fn": sdpa_attention}


def attention(q, k, v):
    """Dispatch to the active attention kernel (SDPA by default); q, k, v [N, heads, L, d] -> [N, heads, L, d]."""
    return _ATTENTION["fn"](q, k, v)


def set_attention_kernel(name: str) -> None:
    """Select the kernel of the default attention function: 'sdpa' (default) or 'naive' (for benchmarks)."""
    _ATTENTION["fn"] = {"sdpa": sdpa_attention, "naive": naive_attention}[name]


def default_attention(q, k, v):
    """The network's attention function: :func:`attention`, heads merged; q, k, v [N, heads, L, d] -> [N, L, heads * d].

    Any function with this signature can replace it (``VEnhancerUNet.forward(..., attention=fn)``), e.g. the
    host's optimized attention: ComfyUI's ``optimized_attention(q, k, v, heads, skip_reshape=True)``.
    """
    n, h = q.shape[0], q.shape[1]
    return attention(q, k, v).transpose(1, 2).reshape(n, -1, h * q.shape[-1])


#: ``fn(q, k, v) -> out``: q, k, v ``[N, heads, L, d]`` (k, v may be batch-expanded views), out ``[N, L, heads * d]``.
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Attention(nn.Module):
    """Multi-head (cross-)attention softmax(QK^T / sqrt(d)) V through an attention function (default SDPA).

    x [N, L, dim], context [N, S, context_dim] (None: self-attention) -> [N, L, dim].
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = ops().Linear(dim, inner, bias=False)
        self.to_k = ops().Linear(context_dim or dim, inner, bias=False)
        self.to_v = ops().Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Sequential(ops().Linear(inner, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, attention: AttentionFn = default_attention) -> torch.Tensor:
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        n, h = q.shape[0], self.heads
        q, k, v = (u.reshape(u.shape[0], u.shape[1], h, -1).transpose(1, 2) for u in (q, k, v))
        if k.shape[0] != n:  # one context shared by all rows (expanded, never copied)
            k, v = k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)
        return self.to_out(attention(q, k, v))


class GEGLU(nn.Module):
    """GEGLU(x) = a * gelu(b) with [a, b] = proj(x)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = ops().Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, width x4."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), ops().Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class TransformerBlock(nn.Module):
    """x += attn1(LN x); x += attn2(LN x, context); x += ff(LN x). context None: attn2 is self-attention."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None):
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim)
        self.norm1 = ops().LayerNorm(dim)
        self.norm2 = ops().LayerNorm(dim)
        self.norm3 = ops().LayerNorm(dim)

    def forward(self, x, context=None, attention: AttentionFn = default_attention):
        x = self.attn1(self.norm1(x), attention=attention) + x
        x = self.attn2(self.norm2(x), context, attention) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the H*W tokens with text cross-attention; x [(B F), C, H, W]."""

    def __init__(self, channels: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm = ops().GroupNorm(32, channels, eps=1e-6)
        self.proj_in = ops().Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(channels, channels // head_dim, head_dim, context_dim)])
        self.proj_out = zero_(ops().Linear(channels, channels))

    def forward(self, x, ctx):
        n, c, h, w = x.shape
        y = self.norm(x).reshape(n, c, h * w).transpose(1, 2)
        y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y, ctx.context, ctx.attention)
        y = self.proj_out(y)
        return y.transpose(1, 2).reshape(n, c, h, w) + x


class TemporalTransformer(nn.Module):
    """Self-attention over frames at every pixel (both attentions are self-attention, no positions).

    x [(B F), C, H, W]; GroupNorm statistics span all frames of a clip; Conv1d (k=1) projections.
    """

    def __init__(self, channels: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.norm = ops().GroupNorm(32, channels, eps=1e-6)
        self.proj_in = ops().Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, None)])
        self.proj_out = zero_(ops().Conv1d(inner, channels, 1))

    def forward(self, x, ctx):
        b, f = ctx.batch, ctx.frames
        _, c, h, w = x.shape
        y = self.norm(x.reshape(b, f, c, h, w).transpose(1, 2))  # [B, C, F, H, W]
        y = y.permute(0, 3, 4, 2, 1).reshape(b * h * w, f, c)  # [(B H W), F, C]
        y = self.proj_in(y.transpose(1, 2)).transpose(1, 2)  # Conv1d k=1 over channels (the host's cast applies)
        for block in self.transformer_blocks:
            y = block(y, attention=ctx.attention)
        y = self.proj_out(y.transpose(1, 2)).transpose(1, 2)
        y = y.reshape(b, h, w, f, c).permute(0, 3, 4, 1, 2).reshape(b * f, c, h, w)
        return y + x


# --------------------------------------------------------------------------- convolutions


class TemporalConvBlock(nn.Module):
    """x + conv4(conv3(conv2(conv1(x)))), each (GroupNorm, SiLU, Conv3d (3,1,1)); conv4 zero-initialised."""

    def __init__(self, channels: int):
        super().__init__()

        def stage(dropout: bool):
            conv = ops().Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
            layers = [ops().GroupNorm(32, channels), nn.SiLU()] + ([nn.Dropout(0.1)] if dropout else []) + [conv]
            return nn.Sequential(*layers)

        self.conv1 = stage(False)
        self.conv2 = stage(True)
        self.conv3 = stage(True)
        self.conv4 = stage(True)
        zero_(self.conv4[-1])

    def forward(self, x, ctx):
        _, c, h, w = x.shape
        y = x.reshape(ctx.batch, ctx.frames, c, h, w).transpose(1, 2)
        y = self.conv4(self.conv3(self.conv2(self.conv1(y))))
        return x + y.transpose(1, 2).reshape(x.shape)


class ResBlock(nn.Module):
    """h = out_layers(in_layers(x) + emb_layers(e)) + skip(x), then the temporal conv block."""

    def __init__(self, channels: int, out_channels: int, embed_dim: int):
        super().__init__()
        self.in_layers = nn.Sequential(ops().GroupNorm(32, channels), nn.SiLU(), ops().Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), ops().Linear(embed_dim, out_channels))
        self.out_layers = nn.Sequential(
            ops().GroupNorm(32, out_channels), nn.SiLU(), nn.Dropout(0.1), zero_(ops().Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip_connection = nn.Identity() if channels == out_channels else ops().Conv2d(channels, out_channels, 1)
        self.temopral_conv = TemporalConvBlock(out_channels)  # upstream spelling = checkpoint key

    def forward(self, x, ctx):
        h = self.in_layers(x) + self.emb_layers(ctx.emb).to(x.dtype)[..., None, None]
        h = self.out_layers(h) + self.skip_connection(x)
        return self.temopral_conv(h, ctx)


class Downsample(nn.Module):
    """3x3 stride-2 conv with padding (2, 1) (H grows by one row per level; Upsample crops it back)."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = ops().Conv2d(channels, channels, 3, stride=2, padding=(2, 1))

    def forward(self, x, ctx):
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2, crop one row at the top and bottom, 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = ops().Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, ctx):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")[..., 1:-1, :]
        return self.conv(x)


def Conv(*args, **kwargs) -> nn.Conv2d:  # noqa: N802 (a layer constructor)
    """The input conv (a plain Conv2d of the active operations; :class:`Layers` calls it without ctx)."""
    return ops().Conv2d(*args, **kwargs)


class Layers(nn.ModuleList):
    """A sequence of layers called as layer(x, ctx) (one entry of input_blocks / output_blocks); plain convs as conv(x)."""

    def forward(self, x, ctx):
        for layer in self:
            x = layer(x) if isinstance(layer, nn.Conv2d) else layer(x, ctx)
        return x


@dataclass
class LayerContext:
    """What every layer may read: frame-folded embedding, text context, batch and frame counts, the attention function."""

    emb: torch.Tensor  # [(B F), E]
    context: torch.Tensor  # [(B F) or 1, L, D] (expanded view)
    batch: int
    frames: int
    attention: AttentionFn = default_attention
