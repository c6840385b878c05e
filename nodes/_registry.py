"""Finds the pack's features: every ``nodes/<feature>.py`` with its ``NODES`` list and ``TINY`` declaration.

A feature lives in one file ``nodes/<feature>.py`` defining ``NODES = [NodeClass, ...]``. Modules whose
name starts with ``_`` are helpers and are not scanned. A feature whose nodes load model files also
declares, next to ``NODES``, how tiny runs (tests, ``doctor``, ``run --tiny``) replace them, as plain
data the host package reads without importing the feature (so without ComfyUI)::

    TINY = {
        "models": [{"folder": "venhancer", "filename": "vek-tiny-venhancer.safetensors",
                    "network": "models.venhancer:tiny_venhancer", "seed": 7007, "dtype": "float32"}],
        "inputs": {"VEK_VEnhancerModelLoader": {"ckpt_name": "vek-tiny-venhancer.safetensors"}},
    }

``models``: files the host builds into its tiny-model cache (``network`` is a core function returning
a torch module; its state is filled deterministically from ``seed``). ``inputs``: literal input values
tiny runs set on the feature's nodes. This module imports no ComfyUI (the extension is in _extension.py).
"""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
import shutil
from pathlib import Path

from . import __path__ as _nodes_path

PREFIX = "VEK_"
CATEGORY = "video-enhance-kit"
SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "assets" / "vek_sample.mp4"


def feature_names() -> list[str]:
    """Names of the feature modules of nodes/ (sorted)."""
    return sorted(m.name for m in pkgutil.iter_modules(_nodes_path) if not m.name.startswith("_"))


def feature_modules():
    """Import and yield every feature module of nodes/ (sorted by name; they import ComfyUI)."""
    for name in feature_names():
        yield importlib.import_module(f"{__package__}.{name}")


def all_nodes() -> list:
    """Every node class of the pack, in a stable order."""
    nodes: list = []
    for module in feature_modules():
        nodes.extend(getattr(module, "NODES", []))
    return nodes


def read_tiny(path: Path) -> dict | None:
    """The ``TINY = {...}`` literal of a feature file, read without importing it (None when absent)."""
    for stmt in ast.parse(Path(path).read_text(encoding="utf-8")).body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "TINY" for t in targets):
            try:
                return ast.literal_eval(stmt.value)
            except ValueError:
                raise ValueError(f"{path}: TINY must be plain data (dicts, lists, strings, numbers)") from None
    return None


def tiny_declarations() -> dict[str, dict]:
    """``{feature: TINY}`` of every feature that declares one."""
    found = {name: read_tiny(Path(_nodes_path[0]) / f"{name}.py") for name in feature_names()}
    return {name: tiny for name, tiny in found.items() if tiny}


def place_clip(source: Path, folder: str | Path) -> Path:
    """Copy ``source`` into ``folder`` when it is missing there or differs in size; return the target.

    The one rule by which the pack, the in-process host and the runner place the bundled sample clips
    in ComfyUI's input folder: an up-to-date copy is left alone (its modification time kept), a stale
    or foreign file of that name is replaced.
    """
    target = Path(folder) / source.name
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return target


def place_sample_clip(input_dir: str | None = None) -> Path | None:
    """Place the bundled sample clip in ComfyUI's input folder (:func:`place_clip`).

    The example workflows load ``vek_sample.mp4`` with LoadVideo, so they open ready to run.
    """
    try:
        if input_dir is None:
            import folder_paths

            input_dir = folder_paths.get_input_directory()
        return place_clip(SAMPLE_CLIP, input_dir) if SAMPLE_CLIP.is_file() else None
    except OSError as exc:  # a read-only input folder must not stop the pack from loading
        logging.getLogger(__name__).warning("video-enhance-kit: could not place the sample clip %s: %s", SAMPLE_CLIP.name, exc)
        return None
