"""Where things are: the pack, its sample clips, and the ComfyUI installation to drive (no ComfyUI import)."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The pack root (the folder ComfyUI loads; pip maps it to ``video_enhance_kit``).
PACK_ROOT = Path(os.path.abspath(__file__)).parent.parent
#: Folder name of the pack inside ``custom_nodes`` when the host links it there.
PACK_DIR_NAME = "video-enhance-kit"
#: The sample clip the example workflows load with LoadVideo (made by assets/make_sample_clip.py).
SAMPLE_CLIP_NAME = "vek_sample.mp4"
#: Its small variant (64 px, 9 frames): tiny runs load it instead.
SAMPLE_CLIP_TINY_NAME = "vek_sample_tiny.mp4"
#: The bundled clips a prompt may name; the runners place them where LoadVideo finds them.
SAMPLE_CLIPS = (SAMPLE_CLIP_NAME, SAMPLE_CLIP_TINY_NAME)


def sample_clip_path(name: str) -> Path:
    """The bundled clip ``name`` in the pack's assets/ folder."""
    return PACK_ROOT / "assets" / name


def is_comfyui_root(path: str | os.PathLike | None) -> bool:
    """True if ``path`` looks like a ComfyUI checkout (has ``main.py`` and ``comfy/``)."""
    if not path:
        return False
    p = Path(path)
    return (p / "main.py").is_file() and (p / "comfy").is_dir()


def _pack_roots() -> list[Path]:
    """The pack root as seen through its path (maybe a symlink in custom_nodes) and resolved."""
    return list(dict.fromkeys([PACK_ROOT, PACK_ROOT.resolve()]))


def pack_entry(comfyui: Path) -> Path | None:
    """The entry of ``comfyui/custom_nodes`` that is this pack (a folder or a symlink to it), else None."""
    custom = Path(comfyui) / "custom_nodes"
    if not custom.is_dir():
        return None
    for entry in custom.iterdir():
        try:
            if entry.is_dir() and entry.resolve() == PACK_ROOT.resolve():
                return entry
        except OSError:
            continue
    return None


def pack_in_custom_nodes(comfyui: Path) -> bool:
    """True if this pack already sits in ``comfyui/custom_nodes`` (then ComfyUI loads it itself)."""
    return pack_entry(comfyui) is not None


def find_comfyui(explicit: str | os.PathLike | None = None) -> Path | None:
    """Locate ComfyUI: ``explicit``, else ``$COMFYUI_PATH``, else the ComfyUI whose custom_nodes holds this pack.

    An explicit path or a set COMFYUI_PATH that is not a ComfyUI folder gives ``None`` (no silent
    fallback to another installation).
    """
    if explicit:
        return Path(explicit).resolve() if is_comfyui_root(explicit) else None
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return Path(env).resolve() if is_comfyui_root(env) else None
    for root in _pack_roots():
        candidate = root.parent.parent
        if root.parent.name == "custom_nodes" and is_comfyui_root(candidate):
            return candidate
    return None


def describe_missing_comfyui(explicit: str | os.PathLike | None = None) -> str:
    """One sentence saying why :func:`find_comfyui` found nothing and how to fix it."""
    if explicit:
        return f"{explicit} is not a ComfyUI folder (no main.py and comfy/ there); pass the ComfyUI root"
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return f"COMFYUI_PATH={env} is not a ComfyUI folder (no main.py and comfy/ there)"
    return ("ComfyUI not found; set COMFYUI_PATH=/path/to/ComfyUI or put this pack in "
            "ComfyUI/custom_nodes")


def comfyui_version(root: Path) -> str:
    """ComfyUI's version from comfyui_version.py (read as text: nothing of ComfyUI is imported)."""
    try:
        match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", (Path(root) / "comfyui_version.py").read_text())
    except OSError:
        match = None
    return match.group(1) if match else "unknown version"
