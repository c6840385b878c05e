"""ComfyUI node layer: the only package besides ``host`` that imports ComfyUI.

Kept empty on purpose: ``nodes._registry`` (read by the host package before ComfyUI is on sys.path)
must be importable without pulling in ``comfy_api``.
"""
