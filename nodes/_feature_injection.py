"""Selective feature injection in a ComfyUI model: its self-attention consults a :class:`FeatureInjection`.

UNet models (SD1.x / SD2.x / SDXL, AnimateDiff) get an ``attn1`` replace patch per spatial self-attention;
Wan gets a block patch that numbers its blocks and an ``optimized_attention_override`` that hands the
first attention of each block (its self-attention) to the injection. The call's noise level is passed
as the sigma tensor ComfyUI puts in ``transformer_options`` (on the device): no host sync per call.

Context windows (clips longer than the motion module's window): ComfyUI's own context windows
(Context Windows (Manual), WAN Context Windows (Manual)) run the model once per window and name the window
in ``transformer_options["context_window"]``; AnimateDiff-Evolved's names its frames in
``transformer_options["ad_params"]["sub_idxs"]``. Features are then recorded and injected per window: the
layer key carries the window's frame indices, so the inversion call of a window at ``sigma_i`` feeds the
denoising call of the same window at ``sigma_i`` (never another window's features).
"""

from __future__ import annotations

from ..attention.feature_injection import FeatureInjection
from ..utils.checks import InputError
from ._common import comfy_attention


def window_key(transformer_options: dict):
    """The frames of the context window this model call runs on (a tuple of frame indices), or None without windows."""
    window = transformer_options.get("context_window")
    if window is not None and getattr(window, "index_list", None) is not None:
        return tuple(int(i) for i in window.index_list)
    sub = (transformer_options.get("ad_params") or {}).get("sub_idxs")
    return tuple(int(i) for i in sub) if sub is not None else None


def windowed(layer, transformer_options: dict):
    """The injection's layer key for this call: the layer itself, or ``(layer, window)`` inside a context window."""
    window = window_key(transformer_options)
    return layer if window is None else (layer, window)


def unet_attention_layers(diffusion_model):
    """``[(key, depth)]`` of every spatial self-attention of a UNet: key = (block, id, transformer index).

    Depth: resolution level / (levels + 1) in the encoder and decoder, 1.0 in the middle block.
    """
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, Upsample

    found, level = [], 0
    for i, blk in enumerate(diffusion_model.input_blocks):
        for layer in blk:
            if isinstance(layer, Downsample):
                level += 1
            if isinstance(layer, SpatialTransformer):
                found += [(("input", i, j), level) for j in range(len(layer.transformer_blocks))]
    levels = level
    middle = [(("middle", 0, j), None) for layer in diffusion_model.middle_block if isinstance(layer, SpatialTransformer) for j in range(len(layer.transformer_blocks))]
    for i, blk in enumerate(diffusion_model.output_blocks):
        for layer in blk:
            if isinstance(layer, SpatialTransformer):
                found += [(("output", i, j), level) for j in range(len(layer.transformer_blocks))]
            if isinstance(layer, Upsample):
                level -= 1
    out = [(key, lvl / (levels + 1)) for key, lvl in found]
    return out + [(key, 1.0) for key, _ in middle]


def patch_feature_injection(model, injection: FeatureInjection):
    """A clone of the T2V ``model`` whose self-attention consults ``injection`` (UNet attn1 or Wan override)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    dm = model.model.diffusion_model
    m = model.clone()
    if isinstance(dm, UNetModel):
        for key, depth in unet_attention_layers(dm):

            def replace(q, k, v, extra_options, key=key, depth=depth):
                q, k, v = injection.qkv(q, k, v, windowed(key, extra_options), depth, extra_options["sigmas"])
                return comfy_attention()(q, k, v, extra_options["n_heads"])

            m.set_model_attn1_replace(replace, *key)
        return m
    blocks = getattr(dm, "blocks", None)
    if blocks is not None and type(dm).__module__.startswith("comfy.ldm.wan"):
        n = len(blocks)
        for i in range(n):

            def block(args, extra, i=i):
                to = dict(args["transformer_options"])
                to["vek_sfi"] = {"layer": i, "depth": i / max(n - 1, 1), "calls": 0}
                return extra["original_block"]({**args, "transformer_options": to})

            m.set_model_patch_replace(block, "dit", "double_block", i)

        def override(func, *args, **kwargs):
            to = kwargs.get("transformer_options") or {}
            info = to.get("vek_sfi")
            if info is not None:
                info["calls"] += 1
                if info["calls"] == 1:  # the first attention of a Wan block is its self-attention
                    q, k, v = injection.qkv(args[0], args[1], args[2], windowed(info["layer"], to), info["depth"], to["sigmas"])
                    args = (q, k, v, *args[3:])
            return func(*args, **kwargs)

        m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
        return m
    raise InputError("t2v_model", f"selective feature injection supports UNet models (SD1.x/SD2.x/SDXL, AnimateDiff) and Wan, not {type(dm).__name__}", "turn sfi off for this model")
