"""find_comfyui: explicit path, then COMFYUI_PATH, then the ComfyUI whose custom_nodes holds the pack (no ComfyUI needed)."""

from pathlib import Path

import pytest

from video_enhance_kit.nodes import _host


def fake_comfyui(root: Path) -> Path:
    (root / "comfy").mkdir(parents=True)
    (root / "main.py").write_text("# fake\n")
    (root / "custom_nodes").mkdir()
    return root


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setattr(_host, "PACK_ROOT", Path("/nonexistent/somewhere/video-enhance-kit"))


def test_explicit_path_wins_over_env(tmp_path, monkeypatch, no_env):
    a, b = fake_comfyui(tmp_path / "a"), fake_comfyui(tmp_path / "b")
    monkeypatch.setenv("COMFYUI_PATH", str(b))
    assert _host.find_comfyui(a) == a.resolve()
    assert _host.find_comfyui() == b.resolve()


def test_invalid_explicit_or_env_gives_none_not_a_fallback(tmp_path, monkeypatch, no_env):
    good = fake_comfyui(tmp_path / "good")
    monkeypatch.setenv("COMFYUI_PATH", str(good))
    assert _host.find_comfyui(tmp_path / "missing") is None
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))  # exists but is not ComfyUI
    assert _host.find_comfyui() is None
    assert "COMFYUI_PATH=" in _host.describe_missing_comfyui()
    assert "not a ComfyUI folder" in _host.describe_missing_comfyui(tmp_path / "x")


def test_pack_inside_custom_nodes(tmp_path, monkeypatch, no_env):
    comfy = fake_comfyui(tmp_path / "ComfyUI")
    pack = comfy / "custom_nodes" / "video-enhance-kit"
    pack.mkdir()
    monkeypatch.setattr(_host, "PACK_ROOT", pack)
    assert _host.find_comfyui() == comfy
    assert _host.pack_in_custom_nodes(comfy)


def test_pack_symlinked_into_custom_nodes_is_detected(tmp_path, monkeypatch, no_env):
    comfy = fake_comfyui(tmp_path / "ComfyUI")
    real = tmp_path / "checkout"
    real.mkdir()
    (comfy / "custom_nodes" / "video-enhance-kit").symlink_to(real, target_is_directory=True)
    monkeypatch.setattr(_host, "PACK_ROOT", real)
    assert _host.pack_in_custom_nodes(comfy)
    other = fake_comfyui(tmp_path / "Other")
    assert not _host.pack_in_custom_nodes(other)


def test_nothing_found(no_env):
    assert _host.find_comfyui() is None
    assert "set COMFYUI_PATH" in _host.describe_missing_comfyui()


def test_host_module_imports_no_comfyui():
    import sys

    # importing the host module must not need ComfyUI (the CLI imports it first)
    assert "video_enhance_kit.nodes._host" in sys.modules
    src = Path(_host.__file__).read_text()
    head = src.split("def ", 1)[0]
    for name in ("import comfy", "import nodes", "import folder_paths", "import execution", "from comfy"):
        assert f"\n{name}" not in head
