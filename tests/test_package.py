"""The package imports without ComfyUI and keeps the layering rule."""

import importlib
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOST_IMPORT = re.compile(
    r"^\s*(import|from)\s+(comfy|comfy_api|comfy_extras|comfy_execution|folder_paths|node_helpers|server|execution|latent_preview)([. ]|$)",
    re.MULTILINE,
)


def test_import_has_no_host():
    code = (
        "import sys, video_enhance_kit, video_enhance_kit.utils, video_enhance_kit.samplers, "
        "video_enhance_kit.attention, video_enhance_kit.models\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('comfy', 'comfy_api', 'folder_paths', 'execution', 'server')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("pkg", ["utils", "samplers", "attention", "models"])
def test_core_packages_import_without_host(pkg):
    mod = importlib.import_module(f"video_enhance_kit.{pkg}")
    assert mod.__name__ == f"video_enhance_kit.{pkg}"


#: Host-side code besides nodes/ and tests/host/: the GPU check's SD1.5 part builds the UNet from ComfyUI's classes.
HOST_SIDE = ()


def test_no_host_imports_outside_nodes():
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        # dot folders (.venv, .comfyui: gpu_check --stage's copy of ComfyUI, ...) are not the pack's code
        if rel.startswith(("nodes/", "host/", "tests/host/", ".", "venv/", "build/")) or rel in HOST_SIDE or rel == "__init__.py":
            continue
        if HOST_IMPORT.search(path.read_text(encoding="utf-8")):
            offenders.append(rel)
    assert offenders == []
