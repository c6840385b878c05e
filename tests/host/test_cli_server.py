"""``run --server`` against a REAL ComfyUI server subprocess (127.0.0.1, a free port) with the pack loaded.

The server is started as ComfyUI's own ``main.py --cpu --listen 127.0.0.1 --port P`` through a small
launcher that defines torchvision's missing C++ op schemas first (CPU torch, see
../shared/facts/comfyui-host.md), with the pack and the tiny models added by an
``--extra-model-paths-config`` YAML. It is stopped at the end of the module.
"""

import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from video_enhance_kit import cli
from video_enhance_kit.assets.workflow_ui import api_to_ui
from video_enhance_kit.host import PACK_ROOT
from video_enhance_kit.host.server import ServerClient

ROOT = Path(__file__).resolve().parents[2]

LAUNCHER = """
import runpy, sys
from video_enhance_kit.host.boot import define_torchvision_ops
define_torchvision_ops()
main = sys.argv[1]
sys.argv = [main] + sys.argv[2:]
runpy.run_path(main, run_name="__main__")
"""

VIDEO_PROMPT = {
    "1": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample_tiny.mp4"}},
    "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
    "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
    "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": 8.0}},
    "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "video/vek_srv", "format": "auto", "codec": "auto"}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(comfy_host, tmp_path_factory):
    """A ComfyUI server subprocess with the pack and the tiny models; yields its URL."""
    work = tmp_path_factory.mktemp("server")
    (work / "custom_nodes").mkdir()
    (work / "custom_nodes" / "video-enhance-kit").symlink_to(PACK_ROOT.resolve(), target_is_directory=True)
    for d in ("input", "output", "temp", "user"):
        (work / d).mkdir()
    folders = {}
    for path in comfy_host.tiny_models.values():
        folders.setdefault(Path(path).parent.name, str(Path(path).parent))
    yaml_lines = ["vek_test:", f"  custom_nodes: {work / 'custom_nodes'}"] + [f"  {k}: {v}" for k, v in sorted(folders.items())]
    (work / "extra_model_paths.yaml").write_text("\n".join(yaml_lines) + "\n")
    port = free_port()
    comfyui = Path(comfy_host.comfyui)
    cmd = [sys.executable, "-c", LAUNCHER, str(comfyui / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--extra-model-paths-config", str(work / "extra_model_paths.yaml"), "--disable-auto-launch",
           "--input-directory", str(work / "input"), "--output-directory", str(work / "output"),
           "--temp-directory", str(work / "temp"), "--user-directory", str(work / "user"),
           "--database-url", "sqlite:///:memory:"]
    url = f"http://127.0.0.1:{port}"
    with open(work / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=comfyui, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI server exited with {proc.returncode}:\n{(work / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/system_stats", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"ComfyUI server did not start in 240 s:\n{(work / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "work": work, "log": work / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_server_loaded_the_pack(server, comfy_host):
    info = ServerClient(server["url"]).object_info()
    ours = sorted(k for k in info if k.startswith("VEK_"))
    assert ours and ours == sorted(comfy_host.pack_node_ids())
    log = server["log"].read_text()
    assert not [line for line in log.splitlines() if "Cannot import" in line and "video-enhance-kit" in line]


def test_server_run_ui_workflow_with_websocket_progress(server, object_info, sd15_prompt, tmp_path):
    prompt = sd15_prompt(frames=2, size=32, steps=2)
    prompt["7"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "vek_srv_sd15"}}
    wf = tmp_path / "sd15_ui.json"
    wf.write_text(json.dumps(api_to_ui(prompt, object_info)))
    out_dir = tmp_path / "out"
    code, _, err = run_main(["run", str(wf), "--server", server["url"], "--tiny", "--out", str(out_dir), "--set", "5.seed=11", "--timeout", "300"])
    assert code == cli.EXIT_OK, err + server["log"].read_text()[-2000:]
    files = sorted(out_dir.glob("vek_srv_sd15_*.png"))
    assert len(files) == 2 and all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)  # fetched through /view
    assert files[0].read_bytes() == (server["work"] / "output" / files[0].name).read_bytes()
    assert "running node 5 (KSampler)" in err and "2/2 node 5 (KSampler)" in err  # websocket events


def test_server_run_video_uploads_sample_clip_and_fails_with_node(server, tmp_path):
    wf = tmp_path / "video.json"
    wf.write_text(json.dumps(VIDEO_PROMPT))
    code, _, err = run_main(["run", str(wf), "--server", server["url"], "--out", str(tmp_path / "out"), "--no-websocket", "--timeout", "300"])
    assert code == cli.EXIT_OK, err
    assert (server["work"] / "input" / "vek_sample_tiny.mp4").read_bytes() == (ROOT / "assets" / "vek_sample_tiny.mp4").read_bytes()
    (video,) = (tmp_path / "out" / "video").glob("vek_srv_*.mp4")
    assert video.stat().st_size > 1000

    bad = json.loads(json.dumps(VIDEO_PROMPT))
    bad["4"]["inputs"]["fps"] = 500.0
    wf.write_text(json.dumps(bad))
    code, _, err = run_main(["run", str(wf), "--server", server["url"], "--out", str(tmp_path)])
    assert code == cli.EXIT_FAILED and "node 4 (CreateVideo): Value 500.0 bigger than max of 120.0" in err

    shutil.copy(ROOT / "README.md", tmp_path / "vek_broken.mp4")  # not a video
    ServerClient(server["url"]).upload(tmp_path / "vek_broken.mp4", overwrite=True)
    wf.write_text(json.dumps(VIDEO_PROMPT))
    code, _, err = run_main(["run", str(wf), "--server", server["url"], "--set", "1.file=vek_broken.mp4", "--timeout", "300"])
    assert code == cli.EXIT_FAILED and "error: node 2 (GetVideoComponents) failed:" in err


@pytest.mark.slow
def test_example_workflow_through_post_prompt(server, tmp_path):
    """An example workflow (UI format, as shipped) runs on the server through POST /prompt with tiny models.

    video_quality_report needs no model (the cheapest); the in-process README test covers a sampling one.
    """
    chosen = ROOT / "example_workflows" / "video_quality_report.json"
    if not chosen.is_file():
        pytest.skip(f"{chosen.name} does not exist")
    code, out, err = run_main(["run", str(chosen), "--server", server["url"], "--tiny", "--max-steps", "3", "--out", str(tmp_path), "--timeout", "600"])
    assert code == cli.EXIT_OK, err + server["log"].read_text()[-2000:]
    assert "running node" in err
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(str(p) in out for p in files)
    assert all(p.parent.name == "previews" and p.read_bytes()[:4] == b"\x89PNG" for p in files)  # the report's plot
    assert "shows:\n  Video Quality Report" in out and "PSNR" in out  # the report's table, printed


def test_doctor_runs_every_example_workflow_through_post_prompt(server, tmp_path):
    """`doctor --server`: every example workflow, UI format as shipped, through POST /prompt with tiny models."""
    code, out, err = run_main(["doctor", "--server", server["url"]])
    assert code == cli.EXIT_OK, out + err + server["log"].read_text()[-2000:]
    for wf in sorted((ROOT / "example_workflows").glob("*.json")):
        assert re.search(rf"^{re.escape(wf.name)}\s+pass\b", out, re.MULTILINE), out
