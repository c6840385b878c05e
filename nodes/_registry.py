"""Collects every feature module's ``NODES`` and exposes them as one ComfyExtension.

A feature lives in one file ``nodes/<feature>.py`` defining ``NODES = [NodeClass, ...]``.
Modules whose name starts with ``_`` are helpers and are not scanned.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

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


class VideoEnhanceKitExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        nodes = all_nodes()
        logging.info("video-enhance-kit: %d nodes", len(nodes))
        return nodes
