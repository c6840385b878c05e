"""gpu_check --stage: copy ComfyUI's source and the wheels the GPU machine lacks into git-ignored folders that travel with the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: What booting ComfyUI in-process and loading the pack import that the GPU machine's python3 lacks
#: (it has torch, numpy, einops, safetensors, transformers, tokenizers, scipy, psutil, tqdm, pillow,
#: aiohttp, yarl, pyyaml). pydantic, SQLAlchemy, alembic, spandrel and the frontend packages are not
#: needed for the in-process start (found by booting with them blocked).
WHEELS = ("torchsde==0.2.6", "trampoline==0.1.2", "av==18.1.0", "kornia==0.9.0", "kornia_rs==0.2.0")
#: Top-level entries of a ComfyUI checkout that never travel (weights, user data, tests, CI, API nodes).
SKIP_TOP = {"models", "output", "input", "user", "temp", "custom_nodes", "tests", "tests-unit", "script_examples",
            "comfy_api_nodes", ".git", ".github", ".ci"}
#: The Python the wheels are for (the GPU machine's python3) and the platforms pip may pick.
PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def _is_tokenizer_data(path: str) -> bool:
    """A ``*_tokenizer`` folder holding only data files (vocabularies, merges), no Python."""
    return path.endswith("_tokenizer") and os.path.isdir(path) and not any(n.endswith(".py") for n in os.listdir(path))


def _ignore(src: str, names: list[str]) -> set[str]:
    """shutil.copytree filter: caches, weights, and tokenizer data (the check builds no text encoder)."""
    skipped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".safetensors", ".ckpt", ".pt", ".pth"))}
    return skipped | {n for n in names if _is_tokenizer_data(os.path.join(src, n))}


def copy_comfyui(source: Path, target: Path) -> Path:
    """Copy ComfyUI's source tree (no models, outputs, tests or tokenizer data) to ``target``; return it."""
    if not ((source / "main.py").is_file() and (source / "comfy").is_dir()):
        raise SystemExit(f"--stage: {source} is not a ComfyUI folder (no main.py and comfy/)")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        if entry.name in SKIP_TOP:
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, ignore=_ignore)
        else:
            shutil.copy2(entry, target / entry.name)
    (target / "custom_nodes").mkdir()
    return target


def download_wheels(target: Path, wheels=WHEELS) -> list[Path]:
    """``pip download`` the wheels for CPython 3.12 on manylinux x86-64 into ``target`` (no dependencies)."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.whl"):  # one version of each: two would stop the install there
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON,
           "--implementation", "cp", "-d", str(target)]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd + list(wheels), check=True)
    return sorted(target.glob("*.whl"))


def tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (what ``du -sb`` counts, without folders)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def stage(comfyui: Path, root: Path) -> int:
    """Fill ``root/.comfyui/ComfyUI`` and ``root/.whl`` and print their sizes; exit code 0."""
    comfy = copy_comfyui(comfyui.resolve(), root / ".comfyui" / "ComfyUI")
    wheels = download_wheels(root / ".whl")
    sizes = {".comfyui": tree_size(root / ".comfyui"), ".whl": tree_size(root / ".whl")}
    total = sum(sizes.values())
    for name, size in sizes.items():
        print(f"{name}: {size / 2**20:.1f} MiB")
    print(f"wheels: {', '.join(w.name for w in wheels)}")
    print(f"carry .comfyui and .whl: {total / 2**20:.1f} MiB (plus the tracked tree; the limit is 64 MiB); ComfyUI at {comfy}")
    return 0
