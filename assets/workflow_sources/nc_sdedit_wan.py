"""Example workflow: NC-SDEdit refinement of a whole video latent with Wan 2.1, through SamplerCustomAdvanced."""

TITLE = "NC-SDEdit with a video model: Wan 2.1 + Noise Calibration sampler"
DESCRIPTION = """
Refines the sample clip as one video latent with **Wan 2.1 T2V 1.3B** in **SamplerCustomAdvanced**.
The **Noise Calibration** node wraps the sampler: at the first sigma of the partial schedule
(BasicScheduler denoise 0.6) it calibrates the start noise in 3 model calls so the refined video keeps
the input's low frequencies (layout, colours, motion), then the wrapped sampler runs as usual.

- Download `wan2.1_t2v_1.3B_fp16.safetensors` (models/diffusion_models), `umt5_xxl_fp8_e4m3fn_scaled.safetensors`
  (models/text_encoders) and `wan_2.1_vae.safetensors` (models/vae). Wan 2.2 works the same way.
- The video needs 4k+1 frames (the sample has 25).
- **dims 3d** filters across frames too; **calibrate_with cond only** halves the calibration cost.
- Other SAMPLER wrappers (e.g. Shared Noise Sampler, Early Stop Sampler) can go inside or outside Noise Calibration.
"""

PROMPT = {
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors", "weight_dtype": "default"}},
    "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan", "device": "default"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
    "4": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["4", 0]}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a sharp, detailed video, high quality, fine texture"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "blurry, low quality, artifacts, flicker"}},
    "8": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["3", 0]}},
    "9": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 8.0}},
    "10": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
    "11": {"class_type": "CFGGuider", "inputs": {"model": ["9", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 6.0}},
    "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "uni_pc"}},
    "13": {"class_type": "BasicScheduler", "inputs": {"model": ["9", 0], "scheduler": "simple", "steps": 30, "denoise": 0.6}},
    "14": {"class_type": "VEK_NoiseCalibration", "inputs": {
        "sampler": ["12", 0], "iterations": 3, "cutoff": 1.0, "mask": "ideal_reference", "dims": "3d (spatio-temporal)",
        "calibrate_with": "guided (cfg)", "order": 2}},
    "15": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["10", 0], "guider": ["11", 0], "sampler": ["14", 0], "sigmas": ["13", 0], "latent_image": ["8", 0]}},
    "16": {"class_type": "VAEDecode", "inputs": {"samples": ["15", 0], "vae": ["3", 0]}},
    "17": {"class_type": "CreateVideo", "inputs": {"images": ["16", 0], "fps": ["5", 2]}},
    "18": {"class_type": "SaveVideo", "inputs": {"video": ["17", 0], "filename_prefix": "video/nc_sdedit_wan",
                                                 "format": "auto", "codec": "auto"}},
}

MODELS = {
    "1": [{"name": "wan2.1_t2v_1.3B_fp16.safetensors", "directory": "diffusion_models",
           "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"}],
    "2": [{"name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "directory": "text_encoders",
           "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"}],
    "3": [{"name": "wan_2.1_vae.safetensors", "directory": "vae",
           "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/wan_2.1_vae.safetensors"}],
}

GROUPS = [
    {"title": "Input video", "nodes": ["4", "5", "8"], "color": "#3f789e"},
    {"title": "Noise Calibration", "nodes": ["12", "13", "14"], "color": "#8a5a2b"},
]
