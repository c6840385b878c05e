"""Do a node's MODEL, LATENT, CONDITIONING and VAE belong together? Checks made before any model call, and seeds.

Every node that takes a MODEL with a LATENT, CONDITIONING or VAE checks them here, so a latent of another
family, a prompt from another text encoder or another family's VAE fails with a message naming the input and
the model or encoder that fits, never with torch's "mat1 and mat2 shapes cannot be multiplied" from inside the
network. What the model takes is read off ComfyUI's own objects:

- latent: ``model.get_model_object("latent_format")`` (``latent_channels``, ``latent_dimensions``: 2 image, 3 video);
- conditioning width: UNets ``unet_config["context_dim"]``; DiTs the ``in_features`` of the layer that first
  takes the text tokens (Wan ``text_embedding.0``, Flux / Chroma / Qwen-Image ``txt_in``, HunyuanVideo
  ``txt_in.input_embedder``, LTX-Video ``caption_projection.linear_1``, SD3 ``context_embedder``, Lumina 2
  ``cap_embedder.1``); a family with none of these is not checked (never guessed);
- VAE: ``vae.latent_channels`` and ``vae.latent_dim``.
"""

from __future__ import annotations

import torch

from ..utils.checks import InputError

#: The largest seed a seed widget allows (ComfyUI's own: 0xFFFFFFFFFFFFFFFF).
MAX_SEED = 0xFFFFFFFFFFFFFFFF

#: Family names for messages, by the prefix of ComfyUI's model config class (comfy/supported_models.py).
FAMILIES = (
    ("SD15", "SD1.5"), ("SD20", "SD2.x"), ("SD21", "SD2.x"), ("SDXLRefiner", "SDXL refiner"), ("SDXL", "SDXL"), ("SD3", "SD3"),
    ("FluxSchnell", "Flux"), ("Flux", "Flux"), ("Chroma", "Chroma"), ("WAN21", "Wan 2.1"), ("WAN22", "Wan 2.2"),
    ("HunyuanVideo", "HunyuanVideo"), ("LTXV", "LTX-Video"), ("GenmoMochi", "Mochi"), ("Lumina2", "Lumina 2"),
    ("QwenImage", "Qwen-Image"), ("SVD", "SVD"),
)
#: Text encoders by the width of their token embeddings.
ENCODERS = {
    768: "CLIP-L", 1024: "OpenCLIP ViT-H, SD2.x", 1280: "OpenCLIP ViT-bigG", 2048: "CLIP-L + CLIP-G, SDXL",
    2304: "Gemma 2", 3584: "Qwen2.5-VL", 4096: "a T5-XXL / UMT5-XXL / LLaMA text encoder",
}
#: How to encode a prompt for a family (default: the checkpoint's own CLIP).
ENCODE_FIX = {
    "Wan 2.1": "encode the prompt with CLIPLoader type 'wan' (umt5_xxl)", "Wan 2.2": "encode the prompt with CLIPLoader type 'wan' (umt5_xxl)",
    "Flux": "encode the prompt with DualCLIPLoader type 'flux' (t5xxl + clip_l)", "Chroma": "encode the prompt with CLIPLoader type 'chroma' (t5xxl)",
    "HunyuanVideo": "encode the prompt with DualCLIPLoader type 'hunyuan_video' (llava_llama3 + clip_l)",
    "LTX-Video": "encode the prompt with CLIPLoader type 'ltxv' (t5xxl)", "SD3": "encode the prompt with TripleCLIPLoader (clip_l, clip_g, t5xxl)",
}
#: Latent spaces by channel count (what a latent of that width most likely came from).
LATENT_SPACES = {4: "an SD1.x / SD2.x / SDXL latent", 16: "a Flux / SD3 / Wan 2.1 / HunyuanVideo latent", 48: "a Wan 2.2 5B latent",
                 128: "an LTX-Video latent", 12: "a Mochi latent"}
#: Modules whose ``in_features`` is a DiT's text width, in the order they are tried.
CONTEXT_LAYERS = ("text_embedding.0", "txt_in.input_embedder", "txt_in", "caption_projection.linear_1", "context_embedder", "cap_embedder.1")


def sampler_seed(seed: int) -> int:
    """The seed handed to ComfyUI's sampler (``extra_args["seed"]``): ``seed`` itself below 0xFFFFFFFFFFFFFFFF, 0 for it.

    ComfyUI's samplers derive ``seed + 1`` (ddim's noise, ``KSAMPLER.sample``) and ``seed - 10`` from it for
    ``torch.manual_seed``, which takes at most 0xFFFFFFFFFFFFFFFF: the widget's largest seed overflowed there
    ("Overflow when unpacking long long"), in ComfyUI's own KSampler with ddim too. The start noise still comes
    from ``seed`` itself (``comfy.sample.prepare_noise``), so every other seed gives what KSampler gives, bit for bit.
    """
    return int(seed) % MAX_SEED


def family(model) -> str:
    """A readable family name of a ComfyUI MODEL (e.g. "SD1.5", "Wan 2.1"), else its config class name."""
    config = type(getattr(getattr(model, "model", None), "model_config", None)).__name__
    return next((name for prefix, name in FAMILIES if config.startswith(prefix)), config)


def _describe(table: dict, value: int) -> str:
    return f" ({table[value]})" if value in table else ""


def check_model(model, name: str = "model") -> None:
    """Fail unless ``model`` is a ComfyUI MODEL (a ModelPatcher with a latent format)."""
    if not hasattr(model, "get_model_object") or not hasattr(model, "model"):
        raise InputError(name, f"expected a MODEL, got {type(model).__name__}", "connect a checkpoint, UNet or model loader output")


def check_latent(model, samples: torch.Tensor, name: str, model_name: str = "model", given: torch.Tensor | None = None) -> None:
    """Fail unless ``samples`` (after ComfyUI's ``fix_empty_latent_channels``) has the rank and channels of ``model``'s latent format.

    ``given`` is the tensor as the user connected it (its shape goes into the message).
    """
    fmt = model.get_model_object("latent_format")
    shown = tuple((samples if given is None else given).shape)
    rank, channels = fmt.latent_dimensions + 2, fmt.latent_channels
    layout = "[B, C, T, H, W] (a video model's latent)" if rank == 5 else "[B, C, H, W] (an image model's latent; frames as batch)"
    if samples.ndim != rank:
        kind = "a video model's" if samples.ndim == 5 else "an image model's" if samples.ndim == 4 else "not a"
        raise InputError(name, f"is {samples.ndim}-D {shown} ({kind} latent); this {family(model)} {model_name} takes {rank}-D {layout}",
                         f"encode the frames with the VAE of the model connected to '{model_name}'")
    if samples.shape[1] != channels:
        raise InputError(name, f"has {samples.shape[1]} channels {shown}{_describe(LATENT_SPACES, samples.shape[1])}; this "
                               f"{family(model)} {model_name} takes {channels}-channel latents",
                         f"encode the frames with the VAE of the model connected to '{model_name}' (VAE Encode), or connect a "
                         f"model of the latent's family")


def context_width(model) -> int | None:
    """The token width the model's cross-attention takes, or None where it cannot be known (then nothing is checked)."""
    base = getattr(model, "model", None)
    net = getattr(base, "diffusion_model", None)
    if net is None:
        return None
    if type(net).__name__ == "UNetModel":
        width = getattr(getattr(base, "model_config", None), "unet_config", {}).get("context_dim")
        return width if isinstance(width, int) and width > 1 else None
    for path in CONTEXT_LAYERS:
        try:
            layer = net.get_submodule(path)
        except AttributeError:
            continue
        width = getattr(layer, "in_features", None)
        if isinstance(width, int):
            return width
    return None


def check_conditioning(model, conditioning, name: str, model_name: str = "model") -> None:
    """Fail unless ``conditioning`` is a CONDITIONING whose token width is what ``model`` takes (where that is known)."""
    if not isinstance(conditioning, list) or not all(isinstance(c, (list, tuple)) and c and isinstance(c[0], torch.Tensor) for c in conditioning):
        raise InputError(name, f"is not a CONDITIONING (got {type(conditioning).__name__})", "connect CLIP Text Encode or another CONDITIONING output")
    width = context_width(model)
    if width is None:
        return
    for entry in conditioning:
        tokens = entry[0]
        if tokens.ndim == 3 and tokens.shape[-1] != width:
            fix = ENCODE_FIX.get(family(model), "encode the prompt with the checkpoint's CLIP (the text encoder that belongs to this model)")
            raise InputError(name, f"is {tokens.shape[-1]} wide{_describe(ENCODERS, tokens.shape[-1])}; this {family(model)} {model_name} takes "
                                   f"{width}{_describe(ENCODERS, width)}", fix)


def check_vae(model, vae, name: str, model_name: str = "model") -> None:
    """Fail unless ``vae`` makes latents of ``model``'s format (channels and rank); no VAE (None) passes."""
    if vae is None:
        return
    channels, dims = getattr(vae, "latent_channels", None), getattr(vae, "latent_dim", None)
    if not isinstance(channels, int) or not isinstance(dims, int):
        raise InputError(name, f"expected a VAE, got {type(vae).__name__}", "connect a VAE loader or a checkpoint's VAE output")
    fmt = model.get_model_object("latent_format")
    if (channels, dims) != (fmt.latent_channels, fmt.latent_dimensions):
        raise InputError(name, f"makes {channels}-channel {'video' if dims == 3 else 'image' if dims == 2 else f'{dims}-D'} latents"
                               f"{_describe(LATENT_SPACES, channels)}; this {family(model)} {model_name} takes {fmt.latent_channels}-channel "
                               f"{'video' if fmt.latent_dimensions == 3 else 'image'} latents",
                         f"connect the VAE that belongs to the model connected to '{model_name}'")


def check_vae_channels(vae, name: str, channels: int, dims: int, fix: str) -> None:
    """Fail unless ``vae`` makes ``channels``-channel latents of rank ``dims`` (for networks that are not a MODEL)."""
    have_c, have_d = getattr(vae, "latent_channels", None), getattr(vae, "latent_dim", None)
    if not isinstance(have_c, int):
        raise InputError(name, f"expected a VAE, got {type(vae).__name__}", fix)
    if (have_c, have_d) != (channels, dims):
        raise InputError(name, f"makes {have_c}-channel {have_d}-D latents{_describe(LATENT_SPACES, have_c)}; this model takes {channels}-channel {dims}-D ones", fix)
