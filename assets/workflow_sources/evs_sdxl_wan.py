"""Example workflow: EVS with SDXL as T2I and Wan 2.1 as T2V, bridged through the two VAEs."""

TITLE = "EVS: SDXL detail + Wan 2.1 motion, bridged through the VAEs"
DESCRIPTION = """
Enhances the sample clip with **EVS Sampler**: **SDXL** refines the frames by SDEdit (50 steps,
strength 0.4); once, at **t2v_at** 0.2, its predicted clean latent is decoded with the SDXL VAE, encoded with
the **Wan 2.1** VAE, run through the [T2V] block (20-step schedule, strength 0.5 = 10 steps), and comes back
the same way to finish the SDXL steps. The video must have 4k+1 frames (the sample has 25).

- Download `sd_xl_base_1.0.safetensors` (models/checkpoints), `wan2.1_t2v_1.3B_fp16.safetensors`
  (models/diffusion_models), `umt5_xxl_fp8_e4m3fn_scaled.safetensors` (models/text_encoders) and
  `wan_2.1_vae.safetensors` (models/vae). Wan 2.2 5B works the same way with its own VAE; Flux works as T2I.
- SDXL is happiest near 1024 px: raise **Upscale Image By** (1.0 here, 4.0 gives 1024 px) if you have the
  memory; Wan 2.1 1.3B is trained at 480p.
- **sfi** on Wan injects into the self-attention of the chosen DiT blocks (depth 0 = first block).
"""

PROMPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
          "_meta": {"title": "T2I model (SDXL)"}},
    "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors", "weight_dtype": "default"},
          "_meta": {"title": "T2V model (Wan 2.1)"}},
    "3": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan", "device": "default"}},
    "4": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
    "5": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["2", 0], "shift": 8.0}},
    "6": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample.mp4"}},
    "7": {"class_type": "GetVideoComponents", "inputs": {"video": ["6", 0]}},
    "8": {"class_type": "ImageScaleBy", "inputs": {"image": ["7", 0], "upscale_method": "lanczos", "scale_by": 1.0}},
    "9": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a sharp, detailed photo, high quality, fine texture"}},
    "10": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry, low quality, jpeg artifacts, noise"}},
    "11": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": "a smooth, consistent video, high quality"}},
    "12": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": "flicker, low quality, artifacts"}},
    "13": {"class_type": "VEK_EVSSampler", "inputs": {
        "t2i_model": ["1", 0], "t2i_positive": ["9", 0], "t2i_negative": ["10", 0],
        "t2v_model": ["5", 0], "t2v_positive": ["11", 0], "t2v_negative": ["12", 0],
        "seed": 42, "t2i_steps": 50, "t2i_strength": 0.4, "t2v_at": 0.2, "t2i_sampler": "ddim",
        "t2i_scheduler": "ddim_uniform", "t2i_cfg": 7.0, "t2v_steps": 20, "t2v_strength": 0.5, "t2v_block_steps": 0,
        "t2v_sampler": "euler", "t2v_scheduler": "simple", "t2v_cfg": 5.0, "t2v_enabled": True,
        "sfi": False, "sfi_gamma": 0.8, "sfi_depth_min": 0.5, "sfi_depth_max": 1.0,
        "images": ["8", 0], "t2i_vae": ["1", 2], "t2v_vae": ["4", 0]}},
    "14": {"class_type": "CreateVideo", "inputs": {"images": ["13", 1], "fps": ["7", 2]}},
    "15": {"class_type": "SaveVideo", "inputs": {"video": ["14", 0], "filename_prefix": "video/evs_sdxl_wan",
                                                 "format": "auto", "codec": "auto"}},
}

MODELS = {
    "1": [{"name": "sd_xl_base_1.0.safetensors", "directory": "checkpoints",
           "url": "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors"}],
    "2": [{"name": "wan2.1_t2v_1.3B_fp16.safetensors", "directory": "diffusion_models",
           "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"}],
    "3": [{"name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "directory": "text_encoders",
           "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"}],
    "4": [{"name": "wan_2.1_vae.safetensors", "directory": "vae",
           "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/wan_2.1_vae.safetensors"}],
}

GROUPS = [
    {"title": "Input video", "nodes": ["6", "7", "8"], "color": "#3f789e"},
    {"title": "T2V: Wan 2.1", "nodes": ["2", "3", "4", "5", "11", "12"], "color": "#8a5a2b"},
]
