"""Locating ComfyUI (explicit path, then COMFYUI_PATH, then the ComfyUI whose custom_nodes holds the pack),
and the layering rule: only nodes/ and the host package import ComfyUI (no ComfyUI needed here)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from video_enhance_kit.host import locate

ROOT = Path(__file__).resolve().parents[1]
COMFY_MODULES = r"(comfy|comfy_api|comfy_extras|comfy_execution|folder_paths|node_helpers|server|execution|latent_preview|nodes|app)"
ANY_IMPORT = re.compile(rf"^\s*(import|from)\s+{COMFY_MODULES}([. ]|$)", re.MULTILINE)
TOP_IMPORT = re.compile(rf"^(import|from)\s+{COMFY_MODULES}([. ]|$)", re.MULTILINE)
BOOTS_COMFYUI = re.compile(r"init_extra_nodes|enable_args_parsing|PromptExecutor\(")


def fake_comfyui(root: Path) -> Path:
    (root / "comfy").mkdir(parents=True)
    (root / "main.py").write_text("# fake\n")
    (root / "custom_nodes").mkdir()
    return root


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setattr(locate, "PACK_ROOT", Path("/nonexistent/somewhere/video-enhance-kit"))


def test_explicit_path_wins_over_env(tmp_path, monkeypatch, no_env):
    a, b = fake_comfyui(tmp_path / "a"), fake_comfyui(tmp_path / "b")
    monkeypatch.setenv("COMFYUI_PATH", str(b))
    assert locate.find_comfyui(a) == a.resolve()
    assert locate.find_comfyui() == b.resolve()


def test_invalid_explicit_or_env_gives_none_not_a_fallback(tmp_path, monkeypatch, no_env):
    good = fake_comfyui(tmp_path / "good")
    monkeypatch.setenv("COMFYUI_PATH", str(good))
    assert locate.find_comfyui(tmp_path / "missing") is None
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))  # exists but is not ComfyUI
    assert locate.find_comfyui() is None
    assert "COMFYUI_PATH=" in locate.describe_missing_comfyui()
    assert "not a ComfyUI folder" in locate.describe_missing_comfyui(tmp_path / "x")


def test_pack_inside_custom_nodes(tmp_path, monkeypatch, no_env):
    comfy = fake_comfyui(tmp_path / "ComfyUI")
    pack = comfy / "custom_nodes" / "video-enhance-kit"
    pack.mkdir()
    monkeypatch.setattr(locate, "PACK_ROOT", pack)
    assert locate.find_comfyui() == comfy
    assert locate.pack_in_custom_nodes(comfy) and locate.pack_entry(comfy) == pack


def test_pack_symlinked_into_custom_nodes_is_detected(tmp_path, monkeypatch, no_env):
    comfy = fake_comfyui(tmp_path / "ComfyUI")
    real = tmp_path / "checkout"
    real.mkdir()
    (comfy / "custom_nodes" / "video-enhance-kit").symlink_to(real, target_is_directory=True)
    monkeypatch.setattr(locate, "PACK_ROOT", real)
    assert locate.pack_in_custom_nodes(comfy)
    other = fake_comfyui(tmp_path / "Other")
    assert not locate.pack_in_custom_nodes(other)


def test_nothing_found(no_env):
    assert locate.find_comfyui() is None
    assert "set COMFYUI_PATH" in locate.describe_missing_comfyui()


def test_comfyui_version_is_read_as_text(tmp_path):
    (tmp_path / "comfyui_version.py").write_text('__version__ = "0.3.64"\n')
    assert locate.comfyui_version(tmp_path) == "0.3.64"
    assert locate.comfyui_version(tmp_path / "missing") == "unknown version"


# ---- layering ----


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_only_nodes_and_the_host_package_import_comfyui():
    outside = [p for p in ROOT.rglob("*.py") if not rel(p).startswith(("nodes/", "host/", "tests/host/", ".", "build/"))
               and rel(p) != "__init__.py" and "egg-info" not in rel(p)]
    assert len(outside) > 50  # cli, core, assets, benchmarks, core tests
    assert [rel(p) for p in outside if ANY_IMPORT.search(p.read_text(encoding="utf-8"))] == []


def test_host_tests_and_benchmarks_reach_comfyui_through_the_host_package():
    """No module-level ComfyUI import (ComfyUI is on sys.path only once the host started it), and nobody
    but the host package boots ComfyUI."""
    files = python_files("tests/host", "benchmarks", "assets")
    assert [rel(p) for p in files if TOP_IMPORT.search(p.read_text(encoding="utf-8"))] == []
    booting = [rel(p) for p in ROOT.rglob("*.py") if BOOTS_COMFYUI.search(p.read_text(encoding="utf-8"))
               and not rel(p).startswith(("host/", "tests/test_host_find_comfyui.py", "."))]
    assert booting == []
    users = [rel(p) for p in files if "video_enhance_kit.host" in p.read_text(encoding="utf-8")]
    assert "tests/host/conftest.py" in users and "benchmarks/bench_zvrd.py" in users


def test_the_node_layer_ships_node_code_only():
    """nodes/ never imports the host package or injects modules into sys.modules; the host names no feature."""
    nodes = python_files("nodes")
    assert [rel(p) for p in nodes if re.search(r"\bhost\b", "\n".join(
        line for line in p.read_text(encoding="utf-8").splitlines() if line.lstrip().startswith(("import", "from"))))] == []
    pack = [p for p in ROOT.rglob("*.py") if not rel(p).startswith(("tests/", ".")) and "egg-info" not in rel(p)]
    injection = re.compile(r"sys\.modules(\[[^\]]+\]\s*=[^=]|\.setdefault|\.update)")
    assert [rel(p) for p in pack if injection.search(p.read_text(encoding="utf-8"))] == []
    features = [n for n in (p.stem for p in nodes) if not n.startswith("_")]
    host_text = "\n".join(p.read_text(encoding="utf-8") for p in python_files("host"))
    assert [f for f in features if re.search(rf"\b{f}\b", host_text, re.IGNORECASE)] == []
    assert "VEK_VEnhancer" not in host_text


def test_importing_the_host_package_imports_no_comfyui():
    code = ("import sys, importlib, pkgutil, video_enhance_kit.host as h\n"
            "[importlib.import_module(f'video_enhance_kit.host.{m.name}') for m in pkgutil.iter_modules(h.__path__)]\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths', 'execution', 'server', 'nodes')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
