"""VEnhancer as a native ComfyUI model: a ``BaseModel`` around the pack's network, managed by a ModelPatcher.

- ``model_sampling``: v-prediction (``V_PREDICTION``) on VEnhancer's own discrete schedule (1000 steps,
  ``logsnr_cosine_interp`` with zero terminal SNR, :mod:`..samplers.venhancer_schedule`) as VE sigmas. Zero
  terminal SNR makes sigma(999) infinite; it is stored as ComfyUI's own zsnr value (:data:`TERMINAL_SIGMA`) so
  every scheduler stays finite. The network's timestep is the pack's rule (fractional t rounded), which is
  the official one where ComfyUI's nearest-log-sigma rule differs (ties such as t = 561.5 in normal mode).
- The first noising follows the official code (:meth:`VEnhancerModelSampling.noise_scaling`): the VP sample at
  sigma times sigma, ``x = sigma/sqrt(1+sigma^2) * (x0 + sigma * eps)``; inpainting noises by the plain rule.
- ``extra_conds`` turns the ``venhancer`` entry that VEnhancer Conditioning puts on positive and negative into
  the ControlNet's inputs (hint latents, mask_cond, the augmentation timestep, s_cond), so the conditional and
  the unconditional pass both get them, and checks the latent and the text tokens against them.
- The network is built from ComfyUI's operations (``comfy.ops``), so weight dtype, manual cast, fp8 storage and
  low-VRAM offloading apply; attention goes through ComfyUI's backend; Cancel is checked before every call.
"""

from __future__ import annotations

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_management as mm
import comfy.model_patcher
import comfy.model_sampling
import comfy.ops
import comfy.patcher_extension
import comfy.supported_models_base
import torch

from ..models.venhancer import OFFICIAL_CONFIG, VEnhancerConfig, VEnhancerUNet, latent_size_ok
from ..samplers.venhancer import GUIDE_RESCALE
from ..samplers.venhancer_schedule import VEnhancerSchedule, sigma_to_timestep
from ..samplers.venhancer_window_fit import HEADROOM_BYTES, auto_window, bytes_per_frame_pixel
from ..samplers.venhancer_windows import plan_windows, windowed_prediction
from ..utils.checks import InputError
from ._common import comfy_attention, show_text

#: sigma(999), infinite under zero terminal SNR, stored as ComfyUI's zsnr value (alphas_bar = 4.8973451890853435e-08).
TERMINAL_SIGMA = float(((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08) ** 0.5)
#: The conditioning entry VEnhancer Conditioning attaches (and the LATENT key it writes).
COND_KEY = "venhancer"
#: transformer_options entry naming the frames [a, b) of the window a model call sees; the wrapper's key.
WINDOW_OPTION = "venhancer_window"
WINDOWS_KEY = "video_enhance_kit.venhancer_windows"
#: The windows' ``auto_fit`` modes: off (chunk_length / tile_size as set), auto (the longest window that fits the free
#: memory, chunk_length its upper bound), auto + tiles (then the largest tile too).
AUTO_FITS = ("off", "auto", "auto + tiles")
CONTEXT_FIX = "encode the prompt with the SD 2.x text encoder (OpenCLIP ViT-H, e.g. CLIPLoader type stable_diffusion with open_clip_vit_h / sd2 clip)"


def model_sigmas(schedule: VEnhancerSchedule | None = None) -> torch.Tensor:
    """VE sigmas [1000] of the schedule, the infinite last one replaced by :data:`TERMINAL_SIGMA`."""
    sig = (schedule or VEnhancerSchedule.official()).log_ve_sigmas.exp()
    return torch.where(torch.isfinite(sig), sig, torch.full_like(sig, TERMINAL_SIGMA))


class VEnhancerModelSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
    """v-prediction on VEnhancer's 1000-step zero-terminal-SNR schedule (VE sigmas)."""

    def __init__(self, model_config=None):
        torch.nn.Module.__init__(self)
        self.num_timesteps, self.zsnr, self.sigma_data = 1000, True, 1.0
        self.linear_start = self.linear_end = None
        self.set_sigmas(model_sigmas())
        schedule = VEnhancerSchedule.official()
        self.register_buffer("vp_alphas", schedule.alphas.float())
        self.register_buffer("vp_sigmas", schedule.sigmas.float())

    def vp_coefficients(self, sigma: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) of the VP table at the network's integer timestep of ``sigma``, shaped for ``ndim`` tensors."""
        t = self.timestep(sigma.reshape(-1)).long().to(self.vp_alphas.device)
        shape = (-1,) + (1,) * (ndim - 1)
        return self.vp_alphas[t].to(sigma.device).view(shape), self.vp_sigmas[t].to(sigma.device).view(shape)

    def calculate_denoised(self, sigma, model_output, model_input):
        """The official x0: ``alpha_t x_t - sigma_t v`` with the table's coefficients at the integer timestep the network saw."""
        a_t, s_t = self.vp_coefficients(sigma, model_output.ndim)
        xt = model_input * (comfy.model_sampling.reshape_sigma(sigma, model_input.ndim) ** 2 + 1) ** -0.5
        return a_t * xt - s_t * model_output

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's integer timestep of VE ``sigma`` (the pack's rule: fractional t, rounded); on sigma's device."""
        return sigma_to_timestep(sigma, self.log_sigmas.to(sigma.device)).round().view(sigma.shape)

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        """The official start: the VP sample at sigma times sigma, ``sigma/sqrt(1+sigma^2) (x0 + sigma eps)``."""
        sigma = comfy.model_sampling.reshape_sigma(sigma, noise.ndim)
        return (latent_image + noise * sigma) * (sigma * (sigma**2 + 1) ** -0.5)


class VEnhancerLatentFormat(comfy.latent_formats.SD15):
    """SD VAE latents (scale 0.18215, SD 1.x preview colours) of a clip: [B, 4, F, h, w]."""

    latent_dimensions = 3


class VEnhancerConfigSpec(comfy.supported_models_base.BASE):
    """The model config ComfyUI's model management reads (dtypes, latent format, memory factor)."""

    unet_config: dict = {}
    unet_extra_config: dict = {}
    latent_format = VEnhancerLatentFormat
    memory_usage_factor = 2.0
    supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]


class VEnhancerDiffusion(VEnhancerUNet):
    """The network with ComfyUI's ``diffusion_model`` call: ``(x, timesteps, context, control, transformer_options, **conds)``."""

    def forward(self, x, timesteps, context=None, control=None, transformer_options=None, venhancer_hint=None, venhancer_t_hint=None,
                venhancer_s_cond=None, venhancer_mask=None, **kwargs):
        mm.throw_exception_if_processing_interrupted()
        options = transformer_options or {}
        window = options.get(WINDOW_OPTION)
        if window is not None:  # one window x tile of the clip (windows_wrapper): its slice of the ControlNet's inputs
            venhancer_mask = window["mask_cond"].expand(x.shape[0], -1)
            venhancer_hint = window["hint"].to(venhancer_hint.dtype).expand(x.shape[0], -1, -1, -1, -1)
        attend = comfy_attention(options.get("attn_precision"))
        return super().forward(x, timesteps, context, hint=venhancer_hint, t_hint=venhancer_t_hint.float(), s_cond=venhancer_s_cond.float(),
                               mask_cond=venhancer_mask, attention=lambda q, k, v: attend(q, k, v, q.shape[1], skip_reshape=True))


class VEnhancerModel(comfy.model_base.BaseModel):
    """VEnhancer (3D UNet + video ControlNet) as a ComfyUI model; ``config`` is the network's :class:`VEnhancerConfig`."""

    def __init__(self, config: VEnhancerConfig, model_config: VEnhancerConfigSpec, device=None):
        model_config.unet_config = {"disable_unet_model_creation": True, **model_config.unet_config}
        super().__init__(model_config, comfy.model_base.ModelType.V_PREDICTION, device=device)
        operations = comfy.ops.pick_operations(model_config.unet_config.get("dtype"), self.manual_cast_dtype)
        with torch.device("meta"):
            self.diffusion_model = VEnhancerDiffusion(config, operations)
        self.diffusion_model.compute_dtype = self.manual_cast_dtype
        self.model_sampling = VEnhancerModelSampling(model_config)
        self.venhancer_config = config

    def get_dtype(self):
        """The weights' dtype (the compute dtype is ``manual_cast_dtype`` when ComfyUI casts)."""
        return self.model_config.unet_config.get("dtype") or torch.float32

    def load_model_weights(self, sd, unet_prefix=""):
        """Assign the checkpoint's tensors (converted to the weight dtype) to the meta-built network, strictly."""
        dtype = self.model_config.unet_config.get("dtype") or torch.float32
        state = {k[len(unet_prefix):]: v.to(dtype=dtype, copy=True).contiguous() for k, v in sd.items() if k.startswith(unet_prefix)}
        self.diffusion_model.load_state_dict(state, strict=True, assign=True)
        self.diffusion_model.eval().requires_grad_(False)
        return self

    def extra_conds(self, **kwargs):
        out = super().extra_conds(**kwargs)
        entry = kwargs.get(COND_KEY)
        if entry is None:
            raise InputError("positive", "carries no VEnhancer ControlNet inputs", "pass positive and negative through VEnhancer Conditioning")
        check_against_latent(entry, kwargs.get("noise"), kwargs.get("cross_attn"), self.venhancer_config)
        out["venhancer_hint"] = comfy.conds.CONDRegular(entry["hint"])
        out["venhancer_mask"] = comfy.conds.CONDRegular(entry["mask_cond"])
        out["venhancer_t_hint"] = comfy.conds.CONDRegular(entry["t_hint"])
        out["venhancer_s_cond"] = comfy.conds.CONDRegular(entry["s_cond"])
        return out

    def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):
        """Inpainting noises the kept region by the plain rule ``x0 + sigma eps`` (not the official start)."""
        return latent_image + noise * comfy.model_sampling.reshape_sigma(sigma, noise.ndim)


def check_against_latent(entry: dict, noise, cross_attn, config: VEnhancerConfig) -> None:
    """The latent being sampled must be VEnhancer Conditioning's (5-D, its frames and size), the tokens the network's width."""
    frames = entry["mask_cond"].shape[-1]
    hint_hw = tuple(entry["hint"].shape[-2:])
    if noise is None or noise.ndim != 5 or noise.shape[2] != frames or tuple(noise.shape[-2:]) != hint_hw:
        got = tuple(noise.shape) if noise is not None else None
        raise InputError("latent_image", f"has shape {got}, the VEnhancer conditioning is for a clip of {frames} frames of {hint_hw[0]}x{hint_hw[1]} latents",
                         "sample the LATENT that VEnhancer Conditioning outputs (with the positive and negative it outputs)")
    if not latent_size_ok(*hint_hw, config):
        raise InputError("latent_image", f"latent size {hint_hw[0]}x{hint_hw[1]} does not fit this VEnhancer network", "use padding 'official' in VEnhancer Conditioning")
    if cross_attn is not None and cross_attn.shape[-1] != config.context_dim:
        raise InputError("positive", f"has token width {cross_attn.shape[-1]} (positive or negative), the VEnhancer model needs {config.context_dim}", CONTEXT_FIX)


def official_cfg(rescale: float = GUIDE_RESCALE):
    """``sampler_cfg_function``: CFG ``u + g (c - u)`` on the v-prediction, then guidance rescale (official 0.2).

    In x0 terms (v = (alpha_t x_t - x0) / sigma_t per sample, the model sampling's table coefficients): x0 = (1 - k) alpha x_t + k x0_cfg with
    k = rescale * std(alpha x_t - x0_c) / std(alpha x_t - x0_cfg) + 1 - rescale; g = 1 is the conditional output.
    """

    def cfg_function(args) -> torch.Tensor:
        x, g = args["input"], args["cond_scale"]
        cond, uncond = args["cond_denoised"], args["uncond_denoised"]
        if g == 1.0 or uncond is None:
            return x - cond
        sigma = comfy.model_sampling.reshape_sigma(args["sigma"], x.ndim)
        ms = args["model"].model_sampling
        if hasattr(ms, "vp_coefficients"):
            a_t, s_t = ms.vp_coefficients(args["sigma"], x.ndim)
        else:  # a patched model sampling: its continuous coefficients
            a_t, s_t = (sigma**2 + 1) ** -0.5, sigma * (sigma**2 + 1) ** -0.5
        ax = a_t * x * (sigma**2 + 1) ** -0.5  # alpha_t * x_t
        guided = uncond + g * (cond - uncond)
        if rescale:
            dims = tuple(range(1, x.ndim))
            s_vp = s_t.reshape(-1)
            num = (ax - cond).flatten(1).std(dim=1)
            den = (ax - guided).flatten(1).std(dim=1) + 1e-12 * s_vp
            k = (rescale * num / den + (1 - rescale)).view(-1, *([1] * len(dims)))
            guided = (1 - k) * ax + k * guided
        return x - guided

    return cfg_function


def fit_to_memory(x: torch.Tensor, interp: int, model, chunk_length: int | None, chunk_overlap: float, tile_overlap: int, tiles: bool):
    """(chunk_length, tile) from the free device memory and the cost per frame x latent pixel (auto_fit); shown and logged."""
    free = mm.get_free_memory(x.device)
    config = getattr(model, "venhancer_config", None) or OFFICIAL_CONFIG
    dtype = getattr(model, "manual_cast_dtype", None) or x.dtype
    per = bytes_per_frame_pixel(config.model_channels, torch.empty((), dtype=dtype).element_size())
    frames, h, w = x.shape[2:]
    chunk, tile = auto_window(free - HEADROOM_BYTES, per, 0.0, frames, h, w, tiles, interp=interp, max_chunk_length=chunk_length,
                              chunk_overlap=chunk_overlap, tile_overlap=tile_overlap, size_ok=lambda a, b: latent_size_ok(a, b, config))
    tile_text = f"tiles {tile[0]}x{tile[1]} latent pixels" if tile else "no tiles"
    show_text(f"VEnhancer Windows auto: {free / 2**30:.2f} GiB free, {per / 1024:.1f} KiB per frame x latent pixel (computed) "
              f"-> chunk_length {chunk}, {tile_text} (clip {frames} frames of {h}x{w} latents)")
    return chunk, tile


def windows_wrapper(chunk_length: int | None = 32, chunk_overlap: float = 0.5, tile_size: int | None = None, tile_overlap: int = 8,
                    auto_fit: str = "off"):
    """PREDICT_NOISE wrapper: the guided x0 as the official key-frame-aligned windows (cross-faded) x spatial tiles.

    It wraps the guider's whole prediction (conditional and unconditional pass, CFG and its rescale per window,
    as the official code does), so it applies under every sampler and guider. The windows and tiles are
    :mod:`..samplers.venhancer_windows`' (plan built once per clip shape); each call gets its slice of the
    ControlNet's inputs through ``transformer_options`` (:data:`WINDOW_OPTION`).
    """
    plans: dict = {}

    def new_plan(x: torch.Tensor, interp: int, model, config: VEnhancerConfig):
        chunk, tile = chunk_length, tile_size or None
        if auto_fit != "off":
            chunk, tile = fit_to_memory(x, interp, model, chunk_length, chunk_overlap, tile_overlap, auto_fit == "auto + tiles")
        return plan_windows(*x.shape[2:], interp=interp, chunk_length=chunk, chunk_overlap=chunk_overlap, tile_size=tile,
                            tile_overlap=tile_overlap, size_ok=lambda h, w: latent_size_ok(h, w, config))

    def plan_for(x: torch.Tensor, entry: dict, model, config: VEnhancerConfig):
        """The plan (per clip shape) and this run's ControlNet inputs on x's device (per conditioning entry)."""
        key = (tuple(x.shape[2:]), entry["interp"], x.device)
        cached = plans.get(key)
        if cached is None or cached[2] is not entry:  # a new clip shape, or another conditioning (a later run)
            plan = cached[0] if cached is not None else new_plan(x, entry["interp"], model, config)
            plans.clear()
            plans[key] = plan, {"mask_cond": entry["mask_cond"].to(x.device), "hint": entry["hint"].to(x.device)}, entry
        return plans[key][:2]

    def predict_noise(executor, x, timestep, model_options=None, seed=None):
        model_options = model_options or {}
        if x.ndim != 5:
            return executor(x, timestep, model_options, seed)
        guider = executor.class_obj
        model = guider.model_patcher.model
        config = getattr(model, "venhancer_config", None) or OFFICIAL_CONFIG
        plan, conds = plan_for(x, clip_entry(guider), model, config)

        def predict(xs, sliced):
            options = dict(model_options, transformer_options={**model_options.get("transformer_options", {}), WINDOW_OPTION: sliced})
            return executor(xs, timestep, options, seed)

        return windowed_prediction(predict, x, plan, conds)

    return predict_noise


def clip_entry(guider) -> dict:
    """The VEnhancer entry of the guider's conds (what VEnhancer Conditioning attached)."""
    for conds in (getattr(guider, "conds", None) or {}).values():
        for cond in conds:
            if COND_KEY in cond:
                return cond[COND_KEY]
    raise InputError("positive", "carries no VEnhancer ControlNet inputs", "pass positive and negative through VEnhancer Conditioning")


def set_windows(patcher, chunk_length: int | None = 32, chunk_overlap: float = 0.5, tile_size: int | None = None, tile_overlap: int = 8,
                auto_fit: str = "off") -> None:
    """Put (or replace) the windows and tiles on ``patcher`` (a clone the caller owns); chunk_length None: one window.

    ``auto_fit`` (:data:`AUTO_FITS`) other than "off": chunk_length (the upper bound) and the tile are chosen per clip from free memory."""
    kind = comfy.patcher_extension.WrappersMP.PREDICT_NOISE
    patcher.remove_wrappers_with_key(kind, WINDOWS_KEY)
    patcher.add_wrapper_with_key(kind, WINDOWS_KEY, windows_wrapper(chunk_length, float(chunk_overlap), tile_size, int(tile_overlap), auto_fit))


def native_patcher(sd: dict, config: VEnhancerConfig, dtype: torch.dtype | None, guide_rescale: float = GUIDE_RESCALE):
    """A ModelPatcher of :class:`VEnhancerModel` holding the checked state dict ``sd``; dtype None: ComfyUI's choice."""
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    spec = VEnhancerConfigSpec({})
    supported = spec.supported_inference_dtypes
    unet_dtype = dtype or mm.unet_dtype(model_params=sum(v.numel() for v in sd.values()), supported_dtypes=supported)
    spec.set_inference_dtype(unet_dtype, mm.unet_manual_cast(unet_dtype, load_device, supported))
    model = VEnhancerModel(config, spec).load_model_weights(sd)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
    patcher.set_model_sampler_cfg_function(official_cfg(guide_rescale))
    set_windows(patcher)
    return patcher


def brownian_noise(x: torch.Tensor, sigmas: torch.Tensor, seed: int):
    """ComfyUI's Brownian-tree noise sampler as its dpmpp_2m_sde builds it (for the faithful sampler run beside the native one)."""
    from comfy.k_diffusion.sampling import BrownianTreeNoiseSampler

    return BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed, cpu=True)


def is_venhancer(model) -> bool:
    """True for a ModelPatcher of :class:`VEnhancerModel`."""
    return isinstance(model, comfy.model_patcher.ModelPatcher) and isinstance(model.model, VEnhancerModel)
