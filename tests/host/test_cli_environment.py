"""``run`` and ``doctor`` in a Python where one of ComfyUI's requirements cannot be imported: exit code 3 and one
message naming the module and the fix, never a traceback (issue 16, item 3).

The broken environment: a PYTHONPATH folder holding a module ``tqdm`` whose import fails exactly as a missing
module does (ComfyUI imports tqdm at start-up; torch and the pack's own CLI do not). Each case is a subprocess.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from video_enhance_kit.host import find_comfyui

COMFYUI = find_comfyui()
ROOT = Path(__file__).resolve().parents[2]
BLOCKER = "raise ModuleNotFoundError(\"No module named 'tqdm'\", name='tqdm')\n"


@pytest.fixture(scope="module")
def broken_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("no_tqdm")
    (folder / "tqdm.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("COMFYUI_PATH", None)
    return env


def cli(args, env, cwd):
    # cwd outside the pack: `python -m` puts the working folder on sys.path, and the pack root would shadow ComfyUI's `nodes`
    proc = subprocess.run([sys.executable, "-m", "video_enhance_kit", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("command", ["run", "doctor"])
def test_missing_comfyui_requirement_is_an_environment_error(command, broken_env, tmp_path):
    args = ["run", str(ROOT / "example_workflows" / "nc_sdedit_sd15.json"), "--tiny", "--out", str(tmp_path / "out")] if command == "run" else ["doctor"]
    code, text = cli([*args, "--comfyui", str(COMFYUI)], broken_env, tmp_path)
    assert code == 3, text
    assert "'tqdm'" in text and "one of ComfyUI's requirements" in text
    assert "ComfyUI's own Python" in text and f"pip install -r {Path(COMFYUI) / 'requirements.txt'}" in text
    assert "Traceback" not in text


def test_blocker_really_blocks_only_comfyui(broken_env, tmp_path):
    """The environment is broken the way the test means: tqdm fails, torch and the CLI's --help still work."""
    probe = subprocess.run([sys.executable, "-c", "import torch\ntry:\n import tqdm\nexcept ModuleNotFoundError as e:\n print('missing', e.name)"],
                           env=broken_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "missing tqdm", probe.stderr
    code, text = cli(["run", "--help"], broken_env, tmp_path)
    assert code == 0 and "--comfyui" in text
