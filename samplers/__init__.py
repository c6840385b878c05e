"""samplers (core: no ComfyUI imports)."""
