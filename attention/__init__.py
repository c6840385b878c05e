"""attention (core: no ComfyUI imports)."""
