"""Tiny random-weight models that ComfyUI's own loaders accept (for tests, ``doctor`` and the runner).

Every builder returns a ``{key: tensor}`` state dict whose keys and shapes are exactly what ComfyUI's
model detection reads, so the stock loaders (CheckpointLoaderSimple, UNETLoader, VAELoader,
CLIPLoader) load them as the real families. Weights are drawn from a seeded generator (:func:`fill`):
the same builder always gives the same bytes. :func:`ensure_tiny_models` writes them once into a
cache folder (re-used by every process; files are written atomically) and returns their paths.

=====================================  ==================  ==============================================
file                                   folder              what ComfyUI sees
=====================================  ==================  ==============================================
``vek-tiny-sd15.safetensors``          checkpoints         SD1.5 (UNet 320 ch, one level, one res block,
                                                           one transformer, context 768; 25.8 M params) +
                                                           TAESD VAE (8x, 4 latent channels) + CLIP-L
``vek-tiny-clip-l.safetensors``        text_encoders       CLIP-L (same weights as in the checkpoint)
``vek-tiny-wan21.safetensors``         diffusion_models    Wan 2.1 T2V (dim 128, 2 blocks, ~1.1 M params)
``vek-tiny-wan21-vae.safetensors``     vae                 Wan 2.1 VAE (ComfyUI fixes its size: 127 M)
``vek-tiny-taesd.safetensors``         vae                 TAESD (SD1.5 latents; stands in for SD VAEs)
=====================================  ==================  ==============================================

plus every model a feature declares in its ``TINY["models"]`` (``nodes/<feature>.py``): ``{"folder",
"filename", "network": "package.module:function", "seed", "dtype"}``; the function (core code of the
pack, e.g. ``models.<net>:tiny_<net>``) returns a torch module whose state is filled with
:func:`fill` and ``seed``.

CLIP-L's size is fixed by ComfyUI's config (12 layers, vocab 49408): layers 1-11 are saved as exact
identities (zero projections) so only layer 0 and the embeddings are random. The Wan text encoder
route: ComfyUI fixes Wan's ``text_dim`` to 4096 (UMT5-XXL, 5.7 B params), so tiny runs load the tiny
CLIP-L with ``CLIPLoader(type="sd3")``, whose output ComfyUI zero-pads to 4096 channels.
Builders import ComfyUI inside the functions: this module imports without it.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..nodes import _registry
from .tiny import CLIP_L, SD15_CHECKPOINT, TAESD_VAE, WAN21_MODEL, WAN21_VAE

#: Bump when a builder changes: the cache folder name carries it, so stale files are never reused.
TINY_MODELS_VERSION = 1
_PACK = __package__.rpartition(".")[0]  # "video_enhance_kit" (or the name ComfyUI gave the pack)


@dataclass(frozen=True)
class TinyModel:
    """One tiny model file: its ComfyUI model folder, file name and builder (-> state dict)."""

    folder: str
    filename: str
    build: Callable[[], dict[str, torch.Tensor]]
    dtype: torch.dtype = torch.float16


def _init_value(key: str, shape: tuple, gen: torch.Generator, identity: bool) -> torch.Tensor:
    leaf = key.rsplit(".", 1)[-1]
    if identity and not (len(shape) == 1 and leaf == "weight"):
        return torch.zeros(shape)
    if leaf == "bias" or leaf in ("vae_shift",):
        return torch.zeros(shape)
    if len(shape) <= 1 and ("norm" in key or "ln" in key or leaf in ("weight", "gamma", "vae_scale")):
        return torch.ones(shape)
    if "modulation" in key or len(shape) <= 1:
        return torch.randn(shape, generator=gen) * 0.02
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return torch.randn(shape, generator=gen) / math.sqrt(max(1, fan_in))


def fill(state: dict[str, torch.Tensor], seed: int, identity: Callable[[str], bool] = lambda k: False) -> dict:
    """Deterministic init: biases 0, 1-D scales 1, matrices N(0, 1/fan_in); ``identity(key)`` -> zeros."""
    gen = torch.Generator().manual_seed(seed)
    return {key: _init_value(key, tuple(state[key].shape), gen, identity(key)) for key in sorted(state)}


def module_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict without the ``position_ids`` buffers loaders rebuild."""
    return {k: v for k, v in module.state_dict().items() if not k.endswith("position_ids")}


def sd15_unet_state_dict() -> dict[str, torch.Tensor]:
    """UNet that comfy.model_detection reads as SD15: 320 channels, context 768, one level."""
    from .sampling import SD15_TOY, sd15_unet

    return fill(module_state(sd15_unet(SD15_TOY, "cpu")), seed=1501)


def taesd_state_dict(latent_channels: int = 4) -> dict[str, torch.Tensor]:
    """TAESD (2.4 M params, 8x): ComfyUI's VAE class recognises it by ``taesd_decoder.1.weight``."""
    from comfy.taesd.taesd import TAESD

    return fill(module_state(TAESD(latent_channels=latent_channels)), seed=1502)


def _clip_identity(key: str) -> bool:
    return ".encoder.layers." in key and not key.split(".encoder.layers.")[1].startswith("0.")


def clip_l_state_dict() -> dict[str, torch.Tensor]:
    """CLIP-L text model (keys ``text_model.*``); layers 1-11 are identities (zero projections)."""
    import comfy.ops
    import comfy.sd1_clip
    from comfy.clip_model import CLIPTextModel

    config = json.loads((Path(comfy.sd1_clip.__file__).parent / "sd1_clip_config.json").read_text())
    model = CLIPTextModel(config, dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init)
    return fill(module_state(model), seed=1503, identity=_clip_identity)


def sd15_checkpoint_state_dict() -> dict[str, torch.Tensor]:
    """A full SD1.5-family checkpoint: UNet + TAESD VAE + CLIP-L, with the original key prefixes."""
    sd = {f"model.diffusion_model.{k}": v for k, v in sd15_unet_state_dict().items()}
    sd.update({f"first_stage_model.{k}": v for k, v in taesd_state_dict().items()})
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in clip_l_state_dict().items()})
    return sd


def wan21_state_dict(dim: int = 128, ffn_dim: int = 256, num_layers: int = 2) -> dict[str, torch.Tensor]:
    """Wan 2.1 T2V diffusion model (model detection reads dim, ffn_dim, layers from the shapes)."""
    import comfy.ops
    from comfy.ldm.wan.model import WanModel

    model = WanModel(
        model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=dim, ffn_dim=ffn_dim, freq_dim=256,
        text_dim=4096, out_dim=16, num_heads=dim // 128, num_layers=num_layers, qk_norm=True,
        cross_attn_norm=True, eps=1e-6, device="cpu", dtype=torch.float32,
        operations=comfy.ops.disable_weight_init,
    )
    return fill(module_state(model), seed=2101)


def wan21_vae_state_dict() -> dict[str, torch.Tensor]:
    """Wan 2.1 VAE (ComfyUI builds it with dim 96 whatever the file says: 127 M params)."""
    from comfy.ldm.wan.vae import WanVAE

    vae = WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True], dropout=0.0)
    return fill(module_state(vae), seed=2102)


#: The tiny models of ComfyUI's own model families.
HOST_MODELS = (
    TinyModel("checkpoints", SD15_CHECKPOINT, sd15_checkpoint_state_dict),
    TinyModel("text_encoders", CLIP_L, clip_l_state_dict),
    TinyModel("diffusion_models", WAN21_MODEL, wan21_state_dict, torch.float32),
    TinyModel("vae", WAN21_VAE, wan21_vae_state_dict),
    TinyModel("vae", TAESD_VAE, taesd_state_dict),
)


def _network(reference: str) -> Callable[[], torch.nn.Module]:
    """The pack's function named ``"package.module:function"`` (relative to the pack root)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(f"{_PACK}.{module}"), name)


def declared_model(spec: dict) -> TinyModel:
    """The :class:`TinyModel` of one ``TINY["models"]`` entry of a feature."""
    network, seed = spec["network"], int(spec["seed"])

    def build() -> dict[str, torch.Tensor]:
        return fill(module_state(_network(network)()), seed=seed)

    return TinyModel(spec["folder"], spec["filename"], build, getattr(torch, spec.get("dtype", "float16")))


def tiny_models() -> dict[str, TinyModel]:
    """Every tiny model by file name: ComfyUI's families, then the ones the features declare."""
    models = {m.filename: m for m in HOST_MODELS}
    for declaration in _registry.tiny_declarations().values():
        models.update({m.filename: m for m in map(declared_model, declaration.get("models") or [])})
    return models


def default_cache_dir() -> Path:
    """``$VEK_TINY_MODELS_DIR``, else ``~/.cache/video_enhance_kit/tiny-models-v<N>``."""
    explicit = os.environ.get("VEK_TINY_MODELS_DIR")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "video_enhance_kit" / f"tiny-models-v{TINY_MODELS_VERSION}"


def ensure_tiny_model(model: TinyModel, root: Path | None = None) -> Path:
    """Build and save one tiny model unless it is already in the cache; return its path."""
    from safetensors.torch import save_file

    path = (root or default_cache_dir()) / model.folder / model.filename
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(model.dtype).contiguous() for k, v in model.build().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={"video_enhance_kit": f"tiny model v{TINY_MODELS_VERSION}"})
    os.replace(tmp, path)
    return path


def ensure_tiny_models(models: dict[str, TinyModel] | None = None, root: Path | None = None) -> dict[str, Path]:
    """Build (once, cached on disk) every tiny model, or ``models``; return ``{filename: path}``."""
    models = tiny_models() if models is None else models
    with torch.inference_mode(False):
        return {name: ensure_tiny_model(model, root) for name, model in models.items()}
