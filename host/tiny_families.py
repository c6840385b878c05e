"""Tiny random-weight models of the families the README names beyond SD1.5 and Wan 2.1 (host tests only).

Each builder returns a state dict of one of ComfyUI's own network classes in the smallest layout that
``comfy.model_detection`` still reads as the family (``model_config`` class in the last column), so the
stock loaders (UNETLoader, VAELoader) load them. They are not part of :func:`tiny_models.tiny_models`
(runner, doctor, workflows): ``tests/host/test_families.py`` builds them on first use into the same cache.

================================  ===============================================  ====================
file                              layout (what detection reads)                    ComfyUI class
================================  ===============================================  ====================
``vek-tiny-sdxl.safetensors``     UNet 320 ch everywhere (channel_mult 1,1,1),     SDXL
                                  input depth [0,0,2,2,10,10] (the match), context
                                  2048, adm 2816; decoder depth 1 in output blocks
                                  0-5 (SDXL's attention blocks), no middle block;
                                  152 M params: the 24 input transformer blocks
                                  the match requires are half of it
``vek-tiny-sd21v.safetensors``    UNet 320 ch, 4 levels x 2 res blocks (12 output  SD20, v-prediction
                                  blocks: ComfyUI reads v-prediction off output
                                  block 11's norm1 bias, std > 0.09), context 1024,
                                  attention in input block 1 and output blocks 9-11;
                                  77 M params (the 12 output res blocks)
``vek-tiny-ltxv.safetensors``     LTXV DiT, 32 heads x 4 (inner 128), 1 layer,     LTXV
                                  caption width 4096 (T5-XXL), 128 latent channels;
                                  1.0 M params
``vek-tiny-hunyuan-video``        HunyuanVideo DiT, hidden 128 (1 head of 128 =    HunyuanVideo
``.safetensors``                  its RoPE axes 16+56+56), 1 double + 1 single
                                  block, text width 4096, CLIP vector 768, guidance;
                                  2.7 M params
``vek-tiny-wan22.safetensors``    Wan 2.2 TI2V DiT (in/out 48 channels), dim 128,  WAN22_T2V
                                  2 blocks, text 4096; 1.1 M params
``vek-tiny-flux.safetensors``     Flux DiT, hidden 128 (1 head), 1 double + 1      Flux (with
                                  single block, text 4096, vector 768, guidance;   :func:`sized_loading`)
                                  1.6 M params
``vek-tiny-wan22-vae``            Wan 2.2 VAE (48 ch, 16x, 4x in time), encoder    Wan 2.2 VAE (with
``.safetensors``                  dim 16, decoder dim 32; 10.5 M params            :func:`sized_loading`)
``vek-tiny-taef1.safetensors``    TAESD with 16 latent channels (Flux latents, as  TAESD, 16 channels
                                  TAEF1); 2.5 M params
================================  ===============================================  ====================

Two families cannot be made small through ComfyUI's detection as it stands: its Flux detection fixes
``hidden_size`` 3072, 24 heads and a 4096-wide text input whatever the file holds (the smallest Flux it
loads, one double block and no single block, has ~0.4 B parameters), and its VAE class builds every Wan
2.2 VAE with widths 160 / 256 (705 M parameters). :func:`sized_loading` lets those two read their widths
from the file's shapes, as ComfyUI already does for Wan, HunyuanVideo and LTX-Video; for the real files
the widths read are exactly ComfyUI's constants (``tests/host/test_families.py`` checks it on a full-size
Flux layout). Text encoders: T5-XXL, Llama, OpenCLIP-G/H have sizes ComfyUI fixes (0.35-8 B
parameters), so tests give these models conditioning tensors of the width the model reads
(:func:`conditioning`). Builders import ComfyUI inside the functions: this module imports without it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from .tiny_models import TinyModel, fill, module_state, taesd_state_dict

SDXL_MODEL = "vek-tiny-sdxl.safetensors"
SD21V_MODEL = "vek-tiny-sd21v.safetensors"
LTXV_MODEL = "vek-tiny-ltxv.safetensors"
HUNYUAN_VIDEO_MODEL = "vek-tiny-hunyuan-video.safetensors"
WAN22_MODEL = "vek-tiny-wan22.safetensors"
FLUX_MODEL = "vek-tiny-flux.safetensors"
WAN22_VAE = "vek-tiny-wan22-vae.safetensors"
TAEF1_VAE = "vek-tiny-taef1.safetensors"

#: The key ComfyUI's SD20.model_type reads: v-prediction when its std exceeds 0.09.
SD2_V_KEY = "output_blocks.11.1.transformer_blocks.0.norm1.bias"
WAN22_VAE_DIMS = (16, 32)  # encoder dim, decoder dim (ComfyUI: 160, 256)


def _unet(device: str = "meta", **layout) -> torch.nn.Module:
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_heads=-1, num_head_channels=64,
                     use_spatial_transformer=True, legacy=False, use_linear_in_transformer=True, dtype=torch.float32,
                     operations=comfy.ops.disable_weight_init, device=device, **layout)


def _ops():
    import comfy.ops

    return dict(device="meta", dtype=torch.float32, operations=comfy.ops.disable_weight_init)


def sdxl_state_dict() -> dict[str, torch.Tensor]:
    """SDXL UNet: SDXL's match (depth [0,0,2,2,10,10], context 2048, adm 2816) at 320 channels, attention in output blocks 0-5."""
    unet = _unet(channel_mult=[1, 1, 1], num_res_blocks=[2, 2, 2], transformer_depth=[0, 0, 2, 2, 10, 10],
                 transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1], transformer_depth_middle=-2, context_dim=2048,
                 adm_in_channels=2816, num_classes="sequential")
    return fill(module_state(unet), seed=2201)


def sd21v_state_dict() -> dict[str, torch.Tensor]:
    """SD2.x UNet (context 1024, linear projections) with 12 output blocks and output block 11's norm1 bias of std 0.2: v-prediction."""
    unet = _unet(channel_mult=[1, 1, 1, 1], num_res_blocks=[2, 2, 2, 2], transformer_depth=[1, 0, 0, 0, 0, 0, 0, 0],
                 transformer_depth_output=[1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], transformer_depth_middle=-2, context_dim=1024)
    state = fill(module_state(unet), seed=2101)
    gen = torch.Generator().manual_seed(2102)
    state[SD2_V_KEY] = torch.randn(state[SD2_V_KEY].shape, generator=gen) * 0.2
    return state


def ltxv_state_dict() -> dict[str, torch.Tensor]:
    """LTX-Video DiT: 32 heads of 4 (detection reads head dim = to_k rows / 32), one layer, T5 width 4096."""
    from comfy.ldm.lightricks.model import LTXVModel

    model = LTXVModel(in_channels=128, cross_attention_dim=128, attention_head_dim=4, num_attention_heads=32, caption_channels=4096,
                      num_layers=1, **_ops())
    return fill(module_state(model), seed=2301)


def hunyuan_video_state_dict() -> dict[str, torch.Tensor]:
    """HunyuanVideo DiT: hidden 128 (one 128-wide head, RoPE axes 16/56/56), 1 double + 1 single block."""
    from comfy.ldm.hunyuan_video.model import HunyuanVideo

    model = HunyuanVideo(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=128, mlp_ratio=4.0, num_heads=1,
                         depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=256, patch_size=[1, 2, 2], qkv_bias=True,
                         guidance_embed=True, byt5=False, meanflow=False, **_ops())
    return fill(module_state(model), seed=2401)


def wan22_state_dict() -> dict[str, torch.Tensor]:
    """Wan 2.2 TI2V DiT (the 48-channel latent of the Wan 2.2 VAE): dim 128, 2 blocks."""
    from comfy.ldm.wan.model import WanModel

    model = WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=48, dim=128, ffn_dim=256, freq_dim=256, text_dim=4096, out_dim=48,
                     num_heads=1, num_layers=2, qk_norm=True, cross_attn_norm=True, eps=1e-6, **_ops())
    return fill(module_state(model), seed=2501)


def flux_state_dict() -> dict[str, torch.Tensor]:
    """Flux dev-style DiT (guidance embedding): hidden 128 (one head of 128 = RoPE axes 16/56/56), 1 double + 1 single block."""
    from comfy.ldm.flux.model import Flux

    model = Flux(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=128, mlp_ratio=4.0, num_heads=1, depth=1,
                 depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, **_ops())
    return fill(module_state(model), seed=2601)


def wan22_vae_state_dict() -> dict[str, torch.Tensor]:
    """Wan 2.2 VAE (48 latent channels, 16x in space, 4x in time) at encoder / decoder widths :data:`WAN22_VAE_DIMS`."""
    from comfy.ldm.wan.vae2_2 import WanVAE

    with torch.device("meta"):
        vae = WanVAE(dim=WAN22_VAE_DIMS[0], dec_dim=WAN22_VAE_DIMS[1], z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                     temperal_downsample=[False, True, True], dropout=0.0)
    return fill(module_state(vae), seed=2701)


def taef1_state_dict() -> dict[str, torch.Tensor]:
    """TAESD with 16 latent channels (the TAEF1 layout): a 2.4 M-param VAE for Flux latents."""
    return taesd_state_dict(latent_channels=16)


#: The family models, and the ComfyUI model_config class each is detected as.
FAMILY_MODELS = {
    SDXL_MODEL: (TinyModel("diffusion_models", SDXL_MODEL, sdxl_state_dict), "SDXL"),
    SD21V_MODEL: (TinyModel("diffusion_models", SD21V_MODEL, sd21v_state_dict), "SD20"),
    LTXV_MODEL: (TinyModel("diffusion_models", LTXV_MODEL, ltxv_state_dict, torch.float32), "LTXV"),
    HUNYUAN_VIDEO_MODEL: (TinyModel("diffusion_models", HUNYUAN_VIDEO_MODEL, hunyuan_video_state_dict, torch.float32), "HunyuanVideo"),
    WAN22_MODEL: (TinyModel("diffusion_models", WAN22_MODEL, wan22_state_dict, torch.float32), "WAN22_T2V"),
    FLUX_MODEL: (TinyModel("diffusion_models", FLUX_MODEL, flux_state_dict, torch.float32), "Flux"),
    WAN22_VAE: (TinyModel("vae", WAN22_VAE, wan22_vae_state_dict, torch.float32), None),
    TAEF1_VAE: (TinyModel("vae", TAEF1_VAE, taef1_state_dict), None),
}


def family_models() -> dict[str, TinyModel]:
    """``{filename: TinyModel}`` of the family models (for :meth:`ComfyHost.install_tiny_models`)."""
    return {name: model for name, (model, _) in FAMILY_MODELS.items()}


def _sized_detection(detect: Callable) -> Callable:
    def detect_unet_config(state_dict, key_prefix, metadata=None):
        config = detect(state_dict, key_prefix, metadata=metadata)
        if config and config.get("image_model") == "flux" and f"{key_prefix}img_in.weight" in state_dict:
            hidden = state_dict[f"{key_prefix}img_in.weight"].shape[0]
            config.update(hidden_size=hidden, num_heads=hidden // 128, context_in_dim=state_dict[f"{key_prefix}txt_in.weight"].shape[1])
        return config

    return detect_unet_config


@contextmanager
def sized_loading():
    """ComfyUI's loaders reading from the file the widths they fix: Flux (hidden, heads, text width) and the Wan 2.2 VAE (dims).

    Flux: hidden = ``img_in`` rows, heads = hidden / 128 (its RoPE width), text width = ``txt_in`` columns;
    Wan 2.2 VAE: encoder dim = ``encoder.conv1`` rows, decoder dim = ``decoder.conv1`` rows / 4. For the
    published files these are ComfyUI's constants (3072, 24, 4096; 160, 256). Restores both on exit.
    """
    import comfy.ldm.wan.vae2_2 as vae22
    import comfy.model_detection as detection
    import comfy.sd

    detect, wan_vae, vae_init = detection.detect_unet_config, vae22.WanVAE, comfy.sd.VAE.__init__
    loading: list[dict] = []

    def init(self, sd=None, *args, **kwargs):
        loading.append(sd or {})
        try:
            vae_init(self, sd, *args, **kwargs)
        finally:
            loading.pop()

    def sized_wan_vae(**config):
        sd = loading[-1] if loading else {}
        if "encoder.conv1.weight" in sd and "decoder.conv1.weight" in sd:
            config.update(dim=sd["encoder.conv1.weight"].shape[0], dec_dim=sd["decoder.conv1.weight"].shape[0] // config["dim_mult"][-1])
        return wan_vae(**config)

    detection.detect_unet_config, vae22.WanVAE, comfy.sd.VAE.__init__ = _sized_detection(detect), sized_wan_vae, init
    try:
        yield
    finally:
        detection.detect_unet_config, vae22.WanVAE, comfy.sd.VAE.__init__ = detect, wan_vae, vae_init


def conditioning(width: int, tokens: int = 4, seed: int = 0, pooled: int | None = None, **extra) -> list:
    """A CONDITIONING of one ``[1, tokens, width]`` embedding (what a text encoder of that width gives), plus ``pooled_output`` and ``extra``."""
    gen = torch.Generator().manual_seed(seed)
    options = dict(extra)
    if pooled:
        options["pooled_output"] = torch.randn(1, pooled, generator=gen)
    return [[torch.randn(1, tokens, width, generator=gen), options]]


__all__ = ["FAMILY_MODELS", "FLUX_MODEL", "HUNYUAN_VIDEO_MODEL", "LTXV_MODEL", "SD21V_MODEL", "SDXL_MODEL", "TAEF1_VAE", "WAN22_MODEL", "WAN22_VAE",
           "conditioning", "family_models", "sized_loading"]
