"""Example workflow: VEnhancer as native pieces (loader -> conditioning -> sigmas -> SamplerCustomAdvanced -> decode -> SaveVideo)."""

from video_enhance_kit.samplers.venhancer import NEGATIVE_PROMPT, POSITIVE_SUFFIX

TITLE = "VEnhancer, native: any ComfyUI sampler"
DESCRIPTION = """
The same space-time super-resolution as **VEnhancer Upscale**, built from native pieces so every ComfyUI
sampler, guider, noise and model patch applies: the loader's output is a ComfyUI **MODEL**
(v-prediction on VEnhancer's own schedule), **VEnhancer Conditioning** attaches the video ControlNet's
inputs to positive and negative and gives the LATENT to refine, **VEnhancer Sigmas** is the official
schedule from t = 899, and **VEnhancer Decode** decodes (tiled) and removes the padding.

With KSamplerSelect `dpmpp_2m_sde`, CFGGuider cfg 7.5, RandomNoise 666 and VEnhancer Sigmas `fast`
this is the official solver (the loader sets the official guidance rescale 0.2 and 32-frame windows).
Swap the sampler (euler, dpmpp_2m, uni_pc, ...), put Noise Calibration, Shared Noise or Early Stop
around it, or change the schedule.

**Download**: `venhancer_v2.pt` -> models/venhancer/, the SD 2.x OpenCLIP ViT-H text encoder ->
models/text_encoders/, `vae-ft-mse-840000-ema-pruned.safetensors` -> models/vae/ (see VEnhancer Upscale).
"""

PROMPT = {
    "1": {"class_type": "VEK_VEnhancerModelLoader", "inputs": {"ckpt_name": "venhancer_v2.pt", "dtype": "auto", "guidance_rescale": 0.2}},
    "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "open_clip_vit_h_14_laion2b_s32b_b79k.safetensors",
                                                  "type": "stable_diffusion", "device": "default"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"}},
    "4": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["4", 0]}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a white disc orbiting over a colourful textured surface" + POSITIVE_SUFFIX},
          "_meta": {"title": "Positive (prompt + official suffix)"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": NEGATIVE_PROMPT}, "_meta": {"title": "Negative (official)"}},
    "8": {"class_type": "VEK_VEnhancerConditioning", "inputs": {
        "positive": ["6", 0], "negative": ["7", 0], "vae": ["3", 0], "images": ["5", 0], "fps": ["5", 2], "up_scale": 4.0,
        "resolution_rule": "official", "target_fps": 24.0, "frame_interpolation": 0, "noise_aug": 200, "s_cond": 8.0,
        "padding": "official", "seed": 666}},
    "9": {"class_type": "VEK_VEnhancerSigmas", "inputs": {"solver_mode": "fast", "steps": 15, "start_timestep": 899}},
    "10": {"class_type": "RandomNoise", "inputs": {"noise_seed": 666}},
    "11": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["8", 0], "negative": ["8", 1], "cfg": 7.5}},
    "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m_sde"}},
    "13": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["10", 0], "guider": ["11", 0], "sampler": ["12", 0], "sigmas": ["9", 0], "latent_image": ["8", 2]}},
    "14": {"class_type": "VEK_VEnhancerDecode", "inputs": {"samples": ["13", 0], "vae": ["3", 0]}},
    "15": {"class_type": "SaveVideo", "inputs": {"video": ["14", 2], "filename_prefix": "video/venhancer_native", "format": "auto", "codec": "auto"}},
}

MODELS = {
    "1": [{"name": "venhancer_v2.pt", "directory": "venhancer",
           "url": "https://huggingface.co/jwhejwhe/VEnhancer/resolve/main/venhancer_v2.pt"}],
    "2": [{"name": "open_clip_vit_h_14_laion2b_s32b_b79k.safetensors", "directory": "text_encoders",
           "url": "https://huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79k/resolve/main/model.safetensors"}],
    "3": [{"name": "vae-ft-mse-840000-ema-pruned.safetensors", "directory": "vae",
           "url": "https://huggingface.co/stabilityai/sd-vae-ft-mse-original/resolve/main/vae-ft-mse-840000-ema-pruned.safetensors"}],
}

GROUPS = [
    {"title": "Models", "nodes": ["1", "2", "3"], "color": "#3f789e"},
    {"title": "Input clip", "nodes": ["4", "5"], "color": "#3f789e"},
    {"title": "Sampling (any ComfyUI sampler)", "nodes": ["10", "11", "12", "13"], "color": "#8a6f3f"},
]
