"""ComfyUI's sampling pieces for tools that measure the pack outside a graph (``benchmarks/gpu_check.py``).

Random-weight SD1.5 UNets built from ComfyUI's own classes (the full size, or the one-level toy that model
detection still reads as SD15), loaded through ComfyUI's diffusion-model loader, and CFG sampling as
SamplerCustomAdvanced runs it. Imports ComfyUI only inside functions: call them after the host started it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: SD1.5's UNet as comfy.model_detection reads it (its SD15 config).
SD15_FULL = {"num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
             "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "transformer_depth_middle": 1}
#: One level, one res block: still detected as SD15 (320 channels, context 768); the tiny test model's layout.
SD15_TOY = {"num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1], "transformer_depth_output": [1, 1],
            "transformer_depth_middle": 1}


def sd15_unet(layout: dict, device: str = "cpu") -> torch.nn.Module:
    """ComfyUI's UNetModel in an SD1.5 layout (:data:`SD15_FULL` or :data:`SD15_TOY`); ``device="meta"`` allocates nothing."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel(
        image_size=32, in_channels=4, out_channels=4, model_channels=320, context_dim=768, num_heads=8, num_head_channels=-1,
        use_spatial_transformer=True, legacy=False, use_linear_in_transformer=False, adm_in_channels=None, dtype=torch.float32,
        operations=comfy.ops.disable_weight_init, device=device, **layout,
    )


def random_state_dict(shapes: dict, device: str, dtype: torch.dtype, seed: int = 1501) -> dict[str, torch.Tensor]:
    """Seeded weights: biases 0, 1-D scales 1, matrices and kernels N(0, 1/fan_in) (activations stay O(1) in fp16)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("bias"):
            out[key] = torch.zeros(shape, device=device, dtype=dtype)
        elif len(shape) <= 1:
            out[key] = torch.ones(shape, device=device, dtype=dtype)
        else:
            std = 1 / math.sqrt(max(1, math.prod(shape[1:])))
            out[key] = (torch.randn(shape, generator=gen, device=device) * std).to(dtype)
    return out


def random_sd15(full: bool, device: str, dtype: torch.dtype):
    """A random-weight SD1.5 MODEL (ModelPatcher) through ComfyUI's model detection and diffusion-model loader."""
    import comfy.sd

    shapes = {k: tuple(v.shape) for k, v in sd15_unet(SD15_FULL if full else SD15_TOY, "meta").state_dict().items()}
    model = comfy.sd.load_diffusion_model_state_dict(random_state_dict(shapes, device, dtype), model_options={"dtype": dtype})
    if model is None or type(model.model.model_config).__name__ != "SD15":
        raise RuntimeError("ComfyUI did not detect the random UNet as SD1.5")
    return model


def sampler(name: str):
    """ComfyUI's SAMPLER of that name (KSamplerSelect)."""
    import comfy.samplers

    return comfy.samplers.sampler_object(name)


def model_sigmas(model, scheduler: str, steps: int) -> torch.Tensor:
    """The model's SIGMAS for ``steps`` steps of ``scheduler`` (BasicScheduler at denoise 1), on the CPU."""
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


def cfg_sample(model, latent: torch.Tensor, positive, negative, cfg: float, sampler_obj, sigmas: torch.Tensor, seed: int,
               callback: Callable | None = None) -> torch.Tensor:
    """SamplerCustomAdvanced with CFGGuider and RandomNoise(seed): the sampled latent."""
    import comfy.sample
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    noise = comfy.sample.prepare_noise(latent, seed)
    return guider.sample(noise, latent, sampler_obj, sigmas, callback=callback, disable_pbar=True, seed=seed)


__all__ = ["SD15_FULL", "SD15_TOY", "cfg_sample", "model_sigmas", "random_sd15", "random_state_dict", "sampler", "sd15_unet"]
