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
official one (2,044,809,796 parameters). Attention runs through an attention function the caller may
hand in (``forward(..., attention=fn)``, see :data:`~.venhancer_blocks.AttentionFn`); the default is torch SDPA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .venhancer_blocks import (
    AttentionFn,
    Conv,
    Downsample,
    LayerContext,
    Layers,
    ResBlock,
    SpatialTransformer,
    TemporalTransformer,
    Upsample,
    default_attention,
    naive_attention,
    ops,
    sdpa_attention,
    set_attention_kernel,
    timestep_embedding,
    using_operations,
    zero_,
)


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
    return nn.Sequential(ops().Linear(ch, e), nn.SiLU(), ops().Linear(e, e))


class VideoControlNet(nn.Module):
    """Copy of the encoder + middle block reading noise-augmented key-frame latents (VEnhancer Sec. 3.2).

    Returns the control residuals: one per encoder output (zero 1x1 convs) and one for the middle block.
    """

    def __init__(self, cfg: VEnhancerConfig):
        super().__init__()
        self.cfg = cfg
        e, ch = cfg.embed_dim, cfg.model_channels
        self.time_embed = _embedding(e, ch)
        self.hint_time_zero_linear = zero_(ops().Linear(e, e))
        self.scale_cond = nn.Sequential(ops().Linear(ch, e), nn.SiLU(), zero_(ops().Linear(e, e)))
        skips = _encoder(cfg, self)
        self.zero_convs = nn.ModuleList([nn.Sequential(zero_(ops().Conv2d(c, c, 1))) for c in skips])
        self.middle_block = _middle(cfg)
        mid = cfg.model_channels * cfg.channel_mult[-1]
        self.middle_block_out = nn.Sequential(zero_(ops().Conv2d(mid, mid, 1)))
        self.input_hint_block = zero_(ops().Conv2d(cfg.in_channels, ch, 3, padding=1))

    def forward(self, x, t, context, hint=None, t_hint=None, s_cond=None, mask_cond=None, attention: AttentionFn = default_attention,
                dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        """x [B, C, F, H, W], t [B]; hint [B, C, K, H, W] key-frame latents; mask_cond [B, F] (key index or -1).

        dtype: the compute dtype (default: the weights' dtype).
        """
        b, _, f, h, w = x.shape
        dtype = self.input_hint_block.weight.dtype if dtype is None else dtype
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
        ctx = LayerContext(emb.reshape(b * f, -1), fold_context(context.to(dtype), f), b, f, attention)

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
    b, n_tokens, d = context.shape
    return context[:, None].expand(b, frames, n_tokens, d).reshape(b * frames, n_tokens, d) if b > 1 else context


def scatter_hint(conv: nn.Module, hint: torch.Tensor, mask_cond: torch.Tensor) -> torch.Tensor:
    """Condition entry: conv(key-frame latent k) added to every frame whose mask_cond is k; -> [(B F), C', H, W].

    Frames without a key frame (mask_cond -1) get zeros; no host sync (no per-sample ``nonzero``).
    """
    b, c, k, h, w = hint.shape
    f = mask_cond.shape[1]
    feats = conv(hint.transpose(1, 2).reshape(b * k, c, h, w)).reshape(b, k, -1, h, w)
    key = mask_cond.long()
    picked = feats[torch.arange(b, device=feats.device)[:, None], key.clamp(min=0)]  # [B, F, C', H, W], gathered on the device
    out = torch.where((key >= 0)[..., None, None, None], picked, feats.new_zeros(()))
    return out.reshape(b * f, -1, h, w)


class VEnhancerUNet(nn.Module):
    """The 3D UNet (v-prediction) with its video ControlNet: forward(x, t, context, ...) -> v [B, C, F, H, W].

    operations: the layer classes (Linear, Conv1d, Conv2d, Conv3d, GroupNorm, LayerNorm) to build from; None is
    torch.nn. A host passes its own (ComfyUI: ``comfy.ops`` classes, so weight dtypes, manual casting and offloading
    apply). ``compute_dtype`` (default None: the weights' dtype) is the dtype activations run in.
    """

    def __init__(self, cfg: VEnhancerConfig = OFFICIAL_CONFIG, operations=None):
        super().__init__()
        with using_operations(operations):
            self._build(cfg)
        self.compute_dtype: torch.dtype | None = None

    def _build(self, cfg: VEnhancerConfig) -> None:
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
        self.out = nn.Sequential(ops().GroupNorm(32, ch), nn.SiLU(), zero_(ops().Conv2d(ch, cfg.out_channels, 3, padding=1)))
        if cfg.control:
            self.VideoControlNet = VideoControlNet(cfg)

    @property
    def dtype(self) -> torch.dtype:
        return self.compute_dtype or self.out[-1].weight.dtype

    def forward(self, x, t, context, hint=None, t_hint=None, s_cond=None, mask_cond=None, control=None, attention: AttentionFn | None = None):
        """v-prediction. x [B, C, F, H, W] (VP-scaled x_t), t [B] timesteps 0..999, context [B, L, D].

        hint [B, C, K, H, W] noise-augmented key-frame latents, t_hint [B] their noise level,
        s_cond [B] downscale factor, mask_cond [B, F] key-frame index per frame or -1. The ControlNet
        runs when ``cfg.control`` is set (with or without a hint); ``control`` overrides its residuals.
        ``attention``: the attention function of every attention layer, both networks (default torch SDPA).
        """
        attention = default_attention if attention is None else attention
        b, _, f, h, w = x.shape
        check_latent_size(h, w, self.cfg)
        in_dtype = x.dtype
        dtype = self.dtype
        if control is None and self.cfg.control:
            control = self.VideoControlNet(x, t, context, hint=hint, t_hint=t_hint, s_cond=s_cond, mask_cond=mask_cond, attention=attention, dtype=dtype)
        context = context.to(dtype)
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels).to(dtype))
        ctx = LayerContext(emb.repeat_interleave(f, dim=0), fold_context(context, f), b, f, attention)
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


def build_venhancer(cfg: VEnhancerConfig = OFFICIAL_CONFIG, device="cpu", dtype=torch.float32, operations=None) -> VEnhancerUNet:
    """Build the network on ``device`` ('meta' allocates nothing) in ``dtype``, eval mode, from ``operations`` (None: torch.nn)."""
    with torch.device(device):
        model = VEnhancerUNet(cfg, operations)
    return model.to(dtype=dtype).eval().requires_grad_(False)


def tiny_venhancer() -> VEnhancerUNet:
    """A small VEnhancer in the official key layout (64 ch, levels (1, 2), context 768 = CLIP-L) for smoke runs."""
    return build_venhancer(VEnhancerConfig(model_channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1,
                                           head_dim=64, context_dim=768, temporal_heads=1))


__all__ = [
    "OFFICIAL_CONFIG",
    "AttentionFn",
    "VEnhancerConfig",
    "VEnhancerUNet",
    "VideoControlNet",
    "build_venhancer",
    "check_latent_size",
    "count_parameters",
    "default_attention",
    "latent_size_ok",
    "naive_attention",
    "official_key",
    "scatter_hint",
    "tiny_venhancer",
    "using_operations",
    "sdpa_attention",
    "set_attention_kernel",
]
