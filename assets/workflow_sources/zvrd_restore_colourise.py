"""Example workflow: ZVRD zero-shot video colourisation with SD1.5 (GDP + ZVRD)."""

TITLE = "ZVRD: zero-shot video colourisation with SD1.5 (GDP + ZVRD)"
DESCRIPTION = """
Colourises a **black-and-white** copy of the sample clip with an image model, keeping every frame's luminance equal
to the observation's, and scores the result against the clean colour clip with the **Video Quality Report**:

- **Degrade Video** (operator **colourise**) makes the grayscale observation (BT.601 luma). Replace it with your own
  black-and-white footage.
- SDEdit starts from the grayscale frames (denoise 0.7: colour has to be invented).
- **Degradation Consistency Guider** (method **gdp**, operator colourise): each x0 prediction takes a gradient step
  on ||gray(D(x0)) - y||^2 through the VAE decoder. **ddnm** also works here (exact luma replacement, cheaper).
- ZVRD's pieces on top: **SLR Temporal Attention**, **Temporal Consistency Guider**, **Shared Noise**, **Early Stop**.

Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints`. Describe the colours in the prompt. The
paper (Table 2): GDP WE 1.31 -> 0.92 with ZVRD, FS 0.918 -> 0.985; DDNM WE 2.43 -> 1.30.
"""

_OP = {"operator": "colourise", "factor": 4, "blur_sigma": 1.6, "noise_sigma": 0.0, "light_scale": 0.25,
       "light_offset": 0.0}

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
    "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
    "4": {"class_type": "VEK_DegradeVideo", "inputs": {"images": ["3", 0], **_OP, "seed": 0}},
    "5": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a vivid colour photo, natural colours, high quality"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "black and white, grayscale, sepia, desaturated"}},
    "8": {"class_type": "VEK_EstimateOpticalFlow", "inputs": {"images": ["4", 0], "method": "auto", "raft_weights": "none"}},
    "9": {"class_type": "VEK_SLRTemporalAttention", "inputs": {
        "model": ["1", 0], "cross_neighbour": True, "trajectory": True, "trajectory_start": 0.9, "output_blocks": "all",
        "search_window": 5, "boundary": "clamp", "flow": ["8", 0]}},
    "10": {"class_type": "CFGGuider", "inputs": {"model": ["9", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 7.0}},
    "11": {"class_type": "VEK_DegradationConsistencyGuider", "inputs": {
        "guider": ["10", 0], "vae": ["1", 2], "degraded": ["4", 0], **_OP, "blind_light": True, "method": "gdp",
        "scale": 1.0, "start": 0.0, "end": 1.0, "chunk": 4}},
    "12": {"class_type": "VEK_TemporalConsistencyGuider", "inputs": {
        "guider": ["11", 0], "guidance_scale": 0.2, "semantic_weight": 1.0, "pixel_start": 0.7, "loss_space": "latent",
        "flow": ["8", 0]}},
    "13": {"class_type": "VEK_SharedNoise", "inputs": {
        "noise_seed": 42, "share_weight": 1.0, "blend_lambda": 0.2, "blend_mode": "variance_preserving", "flow": ["8", 0],
        "frame_weights": ""}},
    "14": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
    "15": {"class_type": "VEK_SharedNoiseSampler", "inputs": {
        "sampler": ["14", 0], "share_weight": 1.0, "blend_lambda": 0.2, "blend_mode": "variance_preserving", "flow": ["8", 0]}},
    "16": {"class_type": "VEK_EarlyStopSampler", "inputs": {"sampler": ["15", 0], "stop_step": 0, "stop_sigma": 0.0,
                                                           "stop_fraction": 0.9}},
    "17": {"class_type": "BasicScheduler", "inputs": {"model": ["9", 0], "scheduler": "normal", "steps": 20, "denoise": 0.7}},
    "18": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["13", 0], "guider": ["12", 0], "sampler": ["16", 0], "sigmas": ["17", 0], "latent_image": ["5", 0]}},
    "19": {"class_type": "VAEDecode", "inputs": {"samples": ["18", 0], "vae": ["1", 2]}},
    "20": {"class_type": "CreateVideo", "inputs": {"images": ["19", 0], "fps": ["3", 2]}},
    "21": {"class_type": "SaveVideo", "inputs": {"video": ["20", 0], "filename_prefix": "video/zvrd_restore_colourise",
                                                 "format": "auto", "codec": "auto"}},
    "22": {"class_type": "VEK_VideoQualityReport", "inputs": {
        "video": ["19", 0], "reference": ["3", 0], "psnr_ssim": True, "mse_low": False, "spatial_frequency": False,
        "warping_error": True, "cutoff": 0.5, "ssim_window": 11, "flow_resolution": 256, "resize_to_reference": False,
        "frame_similarity": True, "flow_map_error": True}},
    "23": {"class_type": "PreviewAny", "inputs": {"source": ["22", 0]}},
    "24": {"class_type": "PreviewImage", "inputs": {"images": ["22", 1]}},
}

MODELS = {"1": [{"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
                 "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}]}

GROUPS = [
    {"title": "Clean clip and its grayscale copy", "nodes": ["2", "3", "4", "5", "8"], "color": "#3f789e"},
    {"title": "GDP + ZVRD", "nodes": ["9", "10", "11", "12", "13", "15", "16", "18"], "color": "#8a5a2b"},
    {"title": "Quality report (vs the clean clip)", "nodes": ["22", "23", "24"], "color": "#4f6f3f"},
]
