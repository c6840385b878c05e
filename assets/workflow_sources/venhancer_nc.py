"""Example workflow: VEnhancer refinement with Noise Calibration around the sampler (the NC paper's setting: a video model refining a video)."""

from video_enhance_kit.samplers.venhancer import NEGATIVE_PROMPT, POSITIVE_SUFFIX

TITLE = "VEnhancer + Noise Calibration: content-preserving refinement"
DESCRIPTION = """
Content-preserving refinement of a video with a video diffusion model, the setting of the Noise
Calibration paper: the native VEnhancer pieces with **Noise Calibration** wrapping the sampler. Before
sampling, NC corrects the start noise in fixed-point iterations so the low frequencies of the first x0
estimate match the input clip: colours and layout stay, VEnhancer adds detail. A milder start
(start_timestep 600) and up_scale 2 keep the refinement close to the input; raise them for more change.

**Download**: as in venhancer_native (venhancer_v2.pt, the SD 2.x text encoder, the SD VAE).
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
        "positive": ["6", 0], "negative": ["7", 0], "vae": ["3", 0], "images": ["5", 0], "fps": ["5", 2], "up_scale": 2.0,
        "resolution_rule": "official", "target_fps": 8.0, "frame_interpolation": 0, "noise_aug": 200, "s_cond": 8.0,
        "padding": "official", "seed": 666}},
    "9": {"class_type": "VEK_VEnhancerSigmas", "inputs": {"solver_mode": "fast", "steps": 15, "start_timestep": 600}},
    "10": {"class_type": "RandomNoise", "inputs": {"noise_seed": 666}},
    "11": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["8", 0], "negative": ["8", 1], "cfg": 7.5}},
    "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m_sde"}},
    "16": {"class_type": "VEK_NoiseCalibration", "inputs": {
        "sampler": ["12", 0], "iterations": 2, "cutoff": 1.0, "mask": "ideal_reference", "dims": "3d (spatio-temporal)",
        "calibrate_with": "guided (cfg)", "order": 2}},
    "13": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["10", 0], "guider": ["11", 0], "sampler": ["16", 0], "sigmas": ["9", 0], "latent_image": ["8", 2]}},
    "14": {"class_type": "VEK_VEnhancerDecode", "inputs": {"samples": ["13", 0], "vae": ["3", 0]}},
    "15": {"class_type": "SaveVideo", "inputs": {"video": ["14", 2], "filename_prefix": "video/venhancer_nc", "format": "auto", "codec": "auto"}},
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
    {"title": "Noise-calibrated sampling", "nodes": ["10", "11", "12", "16", "13"], "color": "#8a6f3f"},
]
