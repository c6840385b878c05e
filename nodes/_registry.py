"""Collects every feature module's ``NODES`` and exposes them as one ComfyExtension.

A feature lives in one file ``nodes/<feature>.py`` defining ``NODES = [NodeClass, ...]``.
Modules whose name starts with ``_`` are helpers and are not scanned. Loading the pack also places the
bundled sample clip in ComfyUI's input folder, where the example workflows' LoadVideo finds it.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import shutil
from pathlib import Path

import folder_paths
from comfy_api.latest import ComfyExtension, io

from . import __path__ as _nodes_path

PREFIX = "VEK_"
CATEGORY = "video-enhance-kit"


def feature_modules():
    """Import and yield every feature module of nodes/ (sorted by name)."""
    for info in sorted(pkgutil.iter_modules(_nodes_path), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        yield importlib.import_module(f"{__package__}.{info.name}")


def all_nodes() -> list[type[io.ComfyNode]]:
    """Every node class of the pack, in a stable order."""
    nodes: list[type[io.ComfyNode]] = []
    for module in feature_modules():
        nodes.extend(getattr(module, "NODES", []))
    return nodes


SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "assets" / "vek_sample.mp4"


def place_sample_clip(input_dir: str | None = None) -> Path | None:
    """Copy the bundled sample clip into ComfyUI's input folder (never over an existing file).

    The example workflows load ``vek_sample.mp4`` with LoadVideo, so they open ready to run.
    """
    try:
        target = Path(input_dir or folder_paths.get_input_directory()) / SAMPLE_CLIP.name
        if SAMPLE_CLIP.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SAMPLE_CLIP, target)
        return target
    except OSError as exc:  # a read-only input folder must not stop the pack from loading
        logging.warning("video-enhance-kit: could not place the sample clip %s: %s", SAMPLE_CLIP.name, exc)
        return None


class VideoEnhanceKitExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        place_sample_clip()
        nodes = all_nodes()
        logging.info("video-enhance-kit: %d nodes", len(nodes))
        return nodes
