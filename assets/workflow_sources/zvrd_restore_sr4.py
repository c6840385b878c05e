"""Example workflow: ZVRD zero-shot 4x video super-resolution with SD1.5 (consistency guider alone vs all ZVRD pieces)."""

TITLE = "ZVRD: zero-shot 4x video super-resolution with SD1.5 (DDNM alone vs DDNM + ZVRD)"
DESCRIPTION = """
Restores a **4x downsampled** copy of the sample clip with an image model and scores both restorations against the
clean clip with the **Video Quality Report** (PSNR, SSIM, warping error WE, FS, OFME):

- **Degrade Video** makes the low-resolution observation (4x average pooling, 64x64 from 256x256). Replace it with
  your own low-resolution footage (its size x 4 must be a multiple of 8).
- SDEdit starts from the observation upscaled (bicubic) and VAE-encoded (denoise 0.6).
- **Degradation Consistency Guider** (method **ddnm**): every x0 prediction is decoded, its low frequencies are
  replaced by the observation's (A^+ y + (I - A^+ A) x), and it is encoded back. Method **gdp** instead takes a
  gradient step through the decoder (works for every operator, about 2x the cost).
- The bottom branch adds ZVRD's pieces: **SLR Temporal Attention**, **Temporal Consistency Guider** (flow from the
  upscaled observation), **Shared Noise** and **Early Stop** (90 % of the steps) - the paper's "DDNM + ZVRD".

Download `v1-5-pruned-emaonly-fp16.safetensors` into `models/checkpoints`. For FS add a *Load CLIP Vision* node into
the report's `clip_vision` (without it the report says FS is n/a). The paper (Table 1, 256 px, DDPM): DDNM WE 1.31 ->
0.53 with ZVRD, GDP 4.03 -> 0.42.
"""

_OP = {"operator": "downsample_avgpool", "factor": 4, "blur_sigma": 1.6, "noise_sigma": 0.0, "light_scale": 0.25,
       "light_offset": 0.0}
_RESTORE = {"vae": ["1", 2], "degraded": ["4", 0], **_OP, "blind_light": True, "method": "ddnm", "scale": 1.0,
            "start": 0.0, "end": 1.0, "chunk": 4}

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
    "2": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
    "4": {"class_type": "VEK_DegradeVideo", "inputs": {"images": ["3", 0], **_OP, "seed": 0}},
    "5": {"class_type": "ImageScaleBy", "inputs": {"image": ["4", 0], "upscale_method": "bicubic", "scale_by": 4.0}},
    "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a sharp, detailed photo, high quality, fine texture"}},
    "8": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality, jpeg artifacts, noise"}},
    "9": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 20, "denoise": 0.6}},
    "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
    "11": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
    # consistency guider alone (DDNM)
    "12": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["7", 0], "negative": ["8", 0], "cfg": 5.0}},
    "13": {"class_type": "VEK_DegradationConsistencyGuider", "inputs": {"guider": ["12", 0], **_RESTORE}},
    "14": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["11", 0], "guider": ["13", 0], "sampler": ["10", 0], "sigmas": ["9", 0], "latent_image": ["6", 0]},
        "_meta": {"title": "DDNM alone"}},
    "15": {"class_type": "VAEDecode", "inputs": {"samples": ["14", 0], "vae": ["1", 2]}},
    # all ZVRD pieces (DDNM + ZVRD)
    "16": {"class_type": "VEK_EstimateOpticalFlow", "inputs": {"images": ["5", 0], "method": "auto", "raft_weights": "none"}},
    "17": {"class_type": "VEK_SLRTemporalAttention", "inputs": {
        "model": ["1", 0], "cross_neighbour": True, "trajectory": True, "trajectory_start": 0.9, "output_blocks": "all",
        "search_window": 5, "boundary": "clamp", "flow": ["16", 0]}},
    "18": {"class_type": "CFGGuider", "inputs": {"model": ["17", 0], "positive": ["7", 0], "negative": ["8", 0], "cfg": 5.0}},
    "19": {"class_type": "VEK_DegradationConsistencyGuider", "inputs": {"guider": ["18", 0], **_RESTORE}},
    "20": {"class_type": "VEK_TemporalConsistencyGuider", "inputs": {
        "guider": ["19", 0], "guidance_scale": 0.2, "semantic_weight": 1.0, "pixel_start": 0.7, "loss_space": "latent",
        "flow": ["16", 0]}},
    "21": {"class_type": "VEK_SharedNoise", "inputs": {
        "noise_seed": 42, "share_weight": 1.0, "blend_lambda": 0.2, "blend_mode": "variance_preserving", "flow": ["16", 0],
        "frame_weights": ""}},
    "22": {"class_type": "VEK_SharedNoiseSampler", "inputs": {
        "sampler": ["10", 0], "share_weight": 1.0, "blend_lambda": 0.2, "blend_mode": "variance_preserving", "flow": ["16", 0]}},
    "23": {"class_type": "VEK_EarlyStopSampler", "inputs": {"sampler": ["22", 0], "stop_step": 0, "stop_sigma": 0.0,
                                                           "stop_fraction": 0.9}},
    "24": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["21", 0], "guider": ["20", 0], "sampler": ["23", 0], "sigmas": ["9", 0], "latent_image": ["6", 0]},
        "_meta": {"title": "DDNM + ZVRD"}},
    "25": {"class_type": "VAEDecode", "inputs": {"samples": ["24", 0], "vae": ["1", 2]}},
    "26": {"class_type": "CreateVideo", "inputs": {"images": ["25", 0], "fps": ["3", 2]}},
    "27": {"class_type": "SaveVideo", "inputs": {"video": ["26", 0], "filename_prefix": "video/zvrd_restore_sr4",
                                                 "format": "auto", "codec": "auto"}},
    "28": {"class_type": "VEK_VideoQualityReport", "inputs": {
        "video": ["15", 0], "reference": ["3", 0], "candidate": ["25", 0], "psnr_ssim": True, "mse_low": False,
        "spatial_frequency": False, "warping_error": True, "cutoff": 0.5, "ssim_window": 11, "flow_resolution": 256,
        "resize_to_reference": False, "frame_similarity": True, "flow_map_error": True}},
    "29": {"class_type": "PreviewAny", "inputs": {"source": ["28", 0]}},
    "30": {"class_type": "PreviewImage", "inputs": {"images": ["28", 1]}},
}

MODELS = {"1": [{"name": "v1-5-pruned-emaonly-fp16.safetensors", "directory": "checkpoints",
                 "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors"}]}

GROUPS = [
    {"title": "Clean clip, 4x degraded, start latent", "nodes": ["2", "3", "4", "5", "6"], "color": "#3f789e"},
    {"title": "DDNM alone", "nodes": ["12", "13", "14", "15"], "color": "#6f5f8f"},
    {"title": "DDNM + ZVRD", "nodes": ["16", "17", "18", "19", "20", "21", "22", "23", "24", "25"], "color": "#8a5a2b"},
    {"title": "Quality report (vs the clean clip)", "nodes": ["28", "29", "30"], "color": "#4f6f3f"},
]
