"""models (core: no ComfyUI imports)."""
