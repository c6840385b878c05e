"""VEnhancer network: a 3D (space-time) UNet with a video ControlNet (VEnhancer paper, Sec. 3.2).

The base network is the ModelScope video-to-video UNet: every spatial ResBlock is followed by a
temporal convolution block, every spatial transformer by a temporal transformer (self-attention over
frames at each pixel). The video ControlNet is a trainable copy of the encoder and middle block that
reads noise-augmented key-frame latents and adds its outputs to the base network's skip connections.

Layouts: latents ``[B, C, F, H, W]``; inside the network frames are folded into the batch axis
``[(B F), C, H, W]`` except in the temporal layers. Text context ``[B, L, context_dim]``.

Parameter names follow the official checkpoint keys one to one (including the upstream spelling
``temopral_conv``), so :data:`OFFICIAL_KEY_MAP` is the identity and a state dict of the official
``.pt`` loads with ``load_state_dict(strict=True)``. The default :class:`VEnhancerConfig` is the
official one (2,044,809,796 parameters). Attention runs through ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VEnhancerConfig:
    """Hyper-parameters of the VEnhancer UNet + ControlNet; the defaults build the official network.

    model_channels: base width (320). channel_mult: width multipliers per level ((1, 2, 4, 4)).
    num_res_blocks: ResBlocks per encoder level (2; the decoder has one more).
    attention_levels: number of leading levels with spatial + temporal transformers (3).
    head_dim: attention head size (64); spatial heads = width // head_dim.
    context_dim: text token width (1024, OpenCLIP ViT-H). temporal_heads: heads of the temporal
    transformer after the input conv (8, inner width temporal_heads * head_dim).
    """

    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: int = 3
    head_dim: int = 64
    context_dim: int = 1024
    temporal_heads: int = 8
    control: bool = True

    @property
    def embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def num_downsamples(self) -> int:
        return len(self.channel_mult) - 1


OFFICIAL_CONFIG = VEnhancerConfig()
#: The official checkpoint's tensor count and parameter count (facts file).
OFFICIAL_TENSORS = 2180
OFFICIAL_PARAMETERS = 2_044_809_796
#: Our module names equal the checkpoint keys: the explicit key map is the identity (tested).
OFFICIAL_KEY_MAP: dict[str, str] = {}


def official_key(name: str) -> str:
    """The checkpoint key of one of our parameter names (identity; see OFFICIAL_KEY_MAP)."""
    return OFFICIAL_KEY_MAP.get(name, name)


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


class Attention(nn.Module):
    """Multi-head (cross-)attention softmax(QK^T / sqrt(d)) V through torch SDPA.

    x [N, L, dim], context [N, S, context_dim] (None: self-attention) -> [N, L, dim].
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        n, h = q.shape[0], self.heads
        q, k, v = (u.reshape(u.shape[0], u.shape[1], h, -1).transpose(1, 2) for u in (q, k, v))
        if k.shape[0] != n:  # one context shared by all rows (expanded, never copied)
            k, v = k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)
        out = attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(n, -1, h * q.shape[-1]))


def sdpa_attention(q, k, v):
    """softmax(QK^T / sqrt(d)) V by torch SDPA; q, k, v [N, heads, L, d]."""
    return F.scaled_dot_product_attention(q, k, v)


def naive_attention(q, k, v):
    """softmax(QK^T / sqrt(d)) V materialising the full score matrix (benchmark reference)."""
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return scores.softmax(dim=-1) @ v


#: The attention kernel used by every Attention module (benchmarks swap it for naive_attention).
_ATTENTION = {"fn": sdpa_attention}


def attention(q, k, v):
    """Dispatch to the active attention kernel (SDPA by default)."""
    return _ATTENTION["fn"](q, k, v)


def set_attention_kernel(name: str) -> None:
    """Select the attention kernel: 'sdpa' (default) or 'naive' (for benchmarks)."""
    _ATTENTION["fn"] = {"sdpa": sdpa_attention, "naive": naive_attention}[name]


class GEGLU(nn.Module):
    """GEGLU(x) = a * gelu(b) with [a, b] = proj(x)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, width x4."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class TransformerBlock(nn.Module):
    """x += attn1(LN x); x += attn2(LN x, context); x += ff(LN x). context None: attn2 is self-attention."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None):
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the H*W tokens with text cross-attention; x [(B F), C, H, W]."""

    def __init__(self, channels: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(channels, channels // head_dim, head_dim, context_dim)])
        self.proj_out = zero_(nn.Linear(channels, channels))

    def forward(self, x, ctx):
        n, c, h, w = x.shape
        y = self.norm(x).reshape(n, c, h * w).transpose(1, 2)
        y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y, ctx.context)
        y = self.proj_out(y)
        return y.transpose(1, 2).reshape(n, c, h, w) + x


class TemporalTransformer(nn.Module):
    """Self-attention over frames at every pixel (both attentions are self-attention, no positions).

    x [(B F), C, H, W]; GroupNorm statistics span all frames of a clip; Conv1d (k=1) projections.
    """

    def __init__(self, channels: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, None)])
        self.proj_out = zero_(nn.Conv1d(inner, channels, 1))

    def forward(self, x, ctx):
        b, f = ctx.batch, ctx.frames
        _, c, h, w = x.shape
        y = self.norm(x.reshape(b, f, c, h, w).transpose(1, 2))  # [B, C, F, H, W]
        y = y.permute(0, 3, 4, 2, 1).reshape(b * h * w, f, c)  # [(B H W), F, C]
        y = F.linear(y, self.proj_in.weight[..., 0], self.proj_in.bias)
        for block in self.transformer_blocks:
            y = block(y)
        y = F.linear(y, self.proj_out.weight[..., 0], self.proj_out.bias)
        y = y.reshape(b, h, w, f, c).permute(0, 3, 4, 1, 2).reshape(b * f, c, h, w)
        return y + x


# --------------------------------------------------------------------------- convolutions


class TemporalConvBlock(nn.Module):
    """x + conv4(conv3(conv2(conv1(x)))), each (GroupNorm, SiLU, Conv3d (3,1,1)); conv4 zero-initialised."""

    def __init__(self, channels: int):
        super().__init__()

        def stage(dropout: bool):
            conv = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
            layers = [nn.GroupNorm(32, channels), nn.SiLU()] + ([nn.Dropout(0.1)] if dropout else []) + [conv]
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
        self.in_layers = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, out_channels))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(32, out_channels), nn.SiLU(), nn.Dropout(0.1), zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)
        self.temopral_conv = TemporalConvBlock(out_channels)  # upstream spelling = checkpoint key

    def forward(self, x, ctx):
        h = self.in_layers(x) + self.emb_layers(ctx.emb).to(x.dtype)[..., None, None]
        h = self.out_layers(h) + self.skip_connection(x)
        return self.temopral_conv(h, ctx)


class Downsample(nn.Module):
    """3x3 stride-2 conv with padding (2, 1) (H grows by one row per level; Upsample crops it back)."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=(2, 1))

    def forward(self, x, ctx):
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2, crop one row at the top and bottom, 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, ctx):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")[..., 1:-1, :]
        return self.conv(x)


class Conv(nn.Conv2d):
    """The input conv, with the (x, ctx) calling convention of the other layers."""

    def forward(self, x, ctx=None):
        return super().forward(x)


class Layers(nn.ModuleList):
    """A sequence of layers called as layer(x, ctx) (one entry of input_blocks / output_blocks)."""

    def forward(self, x, ctx):
        for layer in self:
            x = layer(x, ctx)
        return x


@dataclass
class _Ctx:
    """What every layer may read: frame-folded embedding, text context, batch and frame counts."""

    emb: torch.Tensor  # [(B F), E]
    context: torch.Tensor  # [(B F) or 1, L, D] (expanded view)
    batch: int
    frames: int


def _encoder(cfg: VEnhancerConfig, owner: nn.Module) -> list[int]:
    """Build owner.input_blocks; return the skip widths (encoder order)."""
    ch, e, hd = cfg.model_channels, cfg.embed_dim, cfg.head_dim
    owner.input_blocks = nn.ModuleList([Layers([Conv(cfg.in_channels, ch, 3, padding=1), TemporalTransformer(ch, cfg.temporal_heads, hd)])])
    skips = [ch]
    for level, mult in enumerate(cfg.channel_mult):
        out = cfg.model_channels * mult
        for _ in range(cfg.num_res_blocks):
            layers = [ResBlock(ch, out, e)]
            if level < cfg.attention_levels:
                layers += [SpatialTransformer(out, hd, cfg.context_dim), TemporalTransformer(out, out // hd, hd)]
            owner.input_blocks.append(Layers(layers))
            ch = out
            skips.append(ch)
        if level != len(cfg.channel_mult) - 1:
            owner.input_blocks.append(Downsample(ch))
            skips.append(ch)
    return skips


def _middle(cfg: VEnhancerConfig) -> Layers:
    """The middle block: ResBlock, spatial transformer, temporal transformer, ResBlock."""
    ch, e, hd = cfg.model_channels * cfg.channel_mult[-1], cfg.embed_dim, cfg.head_dim
    return Layers([ResBlock(ch, ch, e), SpatialTransformer(ch, hd, cfg.context_dim), TemporalTransformer(ch, ch // hd, hd), ResBlock(ch, ch, e)])


def _embedding(e: int, ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(ch, e), nn.SiLU(), nn.Linear(e, e))


class VideoControlNet(nn.Module):
    """Copy of the encoder + middle block reading noise-augmented key-frame latents (VEnhancer Sec. 3.2).

    Returns the control residuals: one per encoder output (zero 1x1 convs) and one for the middle block.
    """

    def __init__(self, cfg: VEnhancerConfig):
        super().__init__()
        self.cfg = cfg
        e, ch = cfg.embed_dim, cfg.model_channels
        self.time_embed = _embedding(e, ch)
        self.hint_time_zero_linear = zero_(nn.Linear(e, e))
        self.scale_cond = nn.Sequential(nn.Linear(ch, e), nn.SiLU(), zero_(nn.Linear(e, e)))
        skips = _encoder(cfg, self)
        self.zero_convs = nn.ModuleList([nn.Sequential(zero_(nn.Conv2d(c, c, 1))) for c in skips])
        self.middle_block = _middle(cfg)
        mid = cfg.model_channels * cfg.channel_mult[-1]
        self.middle_block_out = nn.Sequential(zero_(nn.Conv2d(mid, mid, 1)))
        self.input_hint_block = zero_(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))

    def forward(self, x, t, context, hint=None, t_hint=None, s_cond=None, mask_cond=None) -> list[torch.Tensor]:
        """x [B, C, F, H, W], t [B]; hint [B, C, K, H, W] key-frame latents; mask_cond [B, F] (key index or -1)."""
        b, _, f, h, w = x.shape
        dtype = self.input_hint_block.weight.dtype
        ch = self.cfg.model_channels
        emb = self.time_embed(timestep_embedding(t, ch).to(dtype))  # [B, E]
        emb = emb[:, None].repeat(1, f, 1)  # [B, F, E]
        key = (mask_cond >= 0)[..., None].to(dtype) if mask_cond is not None else torch.ones(b, f, 1, dtype=dtype, device=x.device)
        if t_hint is not None:
            e_aug = self.hint_time_zero_linear(self.time_embed(timestep_embedding(t_hint, ch).to(dtype)))
            emb = emb + key * e_aug[:, None]
        if s_cond is not None:
            e_scale = self.scale_cond(timestep_embedding(s_cond, ch).to(dtype))
            emb = emb + key * e_scale[:, None]
        ctx = _Ctx(emb.reshape(b * f, -1), fold_context(context.to(dtype), f), b, f)

        hidden = x.transpose(1, 2).reshape(b * f, -1, h, w).to(dtype)
        outs = []
        for i, (block, zero_conv) in enumerate(zip(self.input_blocks, self.zero_convs)):
            if i == 0:
                hidden = block[0](hidden)
                if hint is not None and mask_cond is not None:
                    hidden = hidden + scatter_hint(self.input_hint_block, hint.to(dtype), mask_cond)
                for layer in block[1:]:
                    hidden = layer(hidden, ctx)
            else:
                hidden = block(hidden, ctx)
            outs.append(zero_conv(hidden))
        hidden = self.middle_block(hidden, ctx)
        outs.append(self.middle_block_out(hidden))
        return outs


def fold_context(context: torch.Tensor, frames: int) -> torch.Tensor:
    """Text tokens [B, L, D] -> one per frame [(B F), L, D] (an expanded view, no copy)."""
    b, l, d = context.shape
    return context[:, None].expand(b, frames, l, d).reshape(b * frames, l, d) if b > 1 else context


def scatter_hint(conv: nn.Module, hint: torch.Tensor, mask_cond: torch.Tensor) -> torch.Tensor:
    """Condition entry: conv(key-frame latent k) added to every frame whose mask_cond is k; -> [(B F), C', H, W]."""
    b, c, k, h, w = hint.shape
    f = mask_cond.shape[1]
    feats = conv(hint.transpose(1, 2).reshape(b * k, c, h, w)).reshape(b, k, -1, h, w)
    out = feats.new_zeros(b, f, feats.shape[2], h, w)
    for i in range(b):
        idx = torch.nonzero(mask_cond[i] >= 0).flatten()
        out[i, idx] = feats[i, mask_cond[i, idx].long()]
    return out.reshape(b * f, -1, h, w)


class VEnhancerUNet(nn.Module):
    """The 3D UNet (v-prediction) with its video ControlNet: forward(x, t, context, ...) -> v [B, C, F, H, W]."""

    def __init__(self, cfg: VEnhancerConfig = OFFICIAL_CONFIG):
        super().__init__()
        self.cfg = cfg
        e, ch = cfg.embed_dim, cfg.model_channels
        self.time_embed = _embedding(e, ch)
        skips = _encoder(cfg, self)
        self.middle_block = _middle(cfg)
        self.output_blocks = nn.ModuleList()
        mults = list(cfg.channel_mult)
        ch = cfg.model_channels * mults[-1]
        for level in reversed(range(len(mults))):
            out = cfg.model_channels * mults[level]
            for j in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), out, e)]
                if level < cfg.attention_levels:
                    layers += [SpatialTransformer(out, cfg.head_dim, cfg.context_dim), TemporalTransformer(out, out // cfg.head_dim, cfg.head_dim)]
                if level > 0 and j == cfg.num_res_blocks:
                    layers.append(Upsample(out))
                self.output_blocks.append(Layers(layers))
                ch = out
        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), zero_(nn.Conv2d(ch, cfg.out_channels, 3, padding=1)))
        if cfg.control:
            self.VideoControlNet = VideoControlNet(cfg)

    @property
    def dtype(self) -> torch.dtype:
        return self.out[-1].weight.dtype

    def forward(self, x, t, context, hint=None, t_hint=None, s_cond=None, mask_cond=None, control=None):
        """v-prediction. x [B, C, F, H, W] (VP-scaled x_t), t [B] timesteps 0..999, context [B, L, D].

        hint [B, C, K, H, W] noise-augmented key-frame latents, t_hint [B] their noise level,
        s_cond [B] downscale factor, mask_cond [B, F] key-frame index per frame or -1. The ControlNet
        runs when ``cfg.control`` is set (with or without a hint); ``control`` overrides its residuals.
        """
        b, _, f, h, w = x.shape
        check_latent_size(h, w, self.cfg)
        in_dtype = x.dtype
        if control is None and self.cfg.control:
            control = self.VideoControlNet(x, t, context, hint=hint, t_hint=t_hint, s_cond=s_cond, mask_cond=mask_cond)
        dtype = self.dtype
        context = context.to(dtype)
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels).to(dtype))
        ctx = _Ctx(emb.repeat_interleave(f, dim=0), fold_context(context, f), b, f)
        hidden = x.transpose(1, 2).reshape(b * f, -1, h, w).to(dtype)
        skips = []
        for block in self.input_blocks:
            hidden = block(hidden, ctx)
            skips.append(hidden)
        hidden = self.middle_block(hidden, ctx)
        control = list(control) if control is not None else None
        if control is not None:
            hidden = hidden + control.pop()
        for block in self.output_blocks:
            skip = skips.pop()
            if control is not None:
                skip = skip + control.pop()
            hidden = block(torch.cat([hidden, skip], dim=1), ctx)
        out = self.out(hidden)
        return out.reshape(b, f, -1, h, w).transpose(1, 2).to(in_dtype)


def latent_size_ok(h: int, w: int, cfg: VEnhancerConfig = OFFICIAL_CONFIG) -> bool:
    """True if a latent of h x w survives the down/up path (official: H = 2 mod 8, W = 0 mod 8)."""
    for _ in range(cfg.num_downsamples):
        if h % 2 or w % 2:
            return False
        h, w = (h + 1) // 2 + 1, (w + 1) // 2
    return True


def check_latent_size(h: int, w: int, cfg: VEnhancerConfig) -> None:
    """Raise ValueError naming the rule when a latent size does not fit the UNet."""
    if not latent_size_ok(h, w, cfg):
        n = cfg.num_downsamples
        raise ValueError(
            f"latent size {h}x{w} does not fit the VEnhancer UNet ({n} downsamples): H must be 2 mod {2 ** n} "
            f"and W a multiple of {2 ** n}; pad the frames with venhancer padding (pad_to_fit) first"
        )


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in module.parameters())


def build_venhancer(cfg: VEnhancerConfig = OFFICIAL_CONFIG, device="cpu", dtype=torch.float32) -> VEnhancerUNet:
    """Build the network on ``device`` ('meta' allocates nothing) in ``dtype``, eval mode."""
    with torch.device(device):
        model = VEnhancerUNet(cfg)
    return model.to(dtype=dtype).eval().requires_grad_(False)


def tiny_venhancer() -> VEnhancerUNet:
    """A small VEnhancer in the official key layout (64 ch, levels (1, 2), context 768 = CLIP-L) for smoke runs."""
    return build_venhancer(VEnhancerConfig(model_channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1,
                                           head_dim=64, context_dim=768, temporal_heads=1))
