"""ComfyUI node layer: the only package that imports ComfyUI.

Kept empty on purpose: ``nodes._host`` (used by the CLI before ComfyUI is on
sys.path) must be importable without pulling in ``comfy_api``.
"""
