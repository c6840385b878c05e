"""pyproject's [tool.comfy] Icon names a file of this repository: a square PNG under 1 MB, the one assets/make_icon.py draws."""

import importlib.util
import re
import struct
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def icon_url() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.comfy]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^Icon\s*=\s*"([^"]+)"', section, re.MULTILINE)
    assert match, "pyproject.toml [tool.comfy] has no Icon"
    return match.group(1)


def icon_path() -> Path:
    """raw.githubusercontent.com/<owner>/<repo>/<branch>/<path> -> <path> in this repository."""
    url = urlparse(icon_url())
    assert url.scheme == "https" and url.netloc == "raw.githubusercontent.com", url
    owner, repo, _branch, rel = url.path.lstrip("/").split("/", 3)
    assert (owner, repo) == ("video-enhance-kit", "video-enhance-kit")
    return ROOT / rel


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_icon_url_points_at_a_square_png_in_the_repo_under_1_mb():
    path = icon_path()
    assert path.is_file(), f"{path} missing: run python assets/make_icon.py"
    data = path.read_bytes()
    width, height = png_size(data)
    assert width == height and 64 <= width <= 400
    assert len(data) < 1_000_000


def test_icon_is_what_make_icon_draws():
    pil = pytest.importorskip("PIL.Image")
    spec = importlib.util.spec_from_file_location("make_icon", ROOT / "assets" / "make_icon.py")
    make_icon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icon)
    drawn = make_icon.make_icon()
    with pil.open(icon_path()) as committed:
        assert committed.mode == "RGBA" and committed.size == drawn.size
        assert committed.tobytes() == drawn.tobytes()
