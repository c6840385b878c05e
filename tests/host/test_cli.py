"""``python -m video_enhance_kit run|doctor`` in-process on real ComfyUI (the session's host)."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from video_enhance_kit import cli
from video_enhance_kit.assets.workflow_ui import api_to_ui
from video_enhance_kit.host.locate import comfyui_version

ROOT = Path(__file__).resolve().parents[2]

VIDEO_PROMPT = {
    "1": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample_tiny.mp4"}},
    "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
    "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
    "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": 8.0}},
    "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "video/vek_cli", "format": "auto", "codec": "auto"}},
}


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_run_ui_workflow_tiny_models_with_set(comfy_host, object_info, sd15_prompt, tmp_path):
    prompt = sd15_prompt(frames=2, size=32, steps=2)
    prompt["7"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "vek_cli_sd15"}}
    wf = write(tmp_path / "sd15_ui.json", api_to_ui(prompt, object_info))  # UI format: exercises the converter
    out_dir = tmp_path / "out"
    code, out, err = run_main(["run", str(wf), "--comfyui", str(comfy_host.comfyui), "--tiny", "--out", str(out_dir),
                               "--set", "5.steps=3", "--set", "4.batch_size=3", "--set", "5.sampler_name=ddim"])
    assert code == cli.EXIT_OK, err
    files = sorted(out_dir.glob("vek_cli_sd15_*.png"))
    assert len(files) == 3  # --set 4.batch_size=3 reached ComfyUI
    assert all(str(f) in out for f in files)
    assert "running node 5 (KSampler)" in err and "3/3 node 5 (KSampler)" in err  # progress: node and step bar
    assert "it/s" not in err and "s/it" not in err  # ComfyUI's tqdm bars are off unless -v
    assert "tiny model: 1 CheckpointLoaderSimple.ckpt_name" in err


def test_run_video_writes_output_and_places_sample_clip(comfy_host, tmp_path):
    av = pytest.importorskip("av")
    clip = Path(comfy_host.input_dir) / "vek_sample_tiny.mp4"
    clip.unlink(missing_ok=True)  # the runner must place it
    wf = write(tmp_path / "video.json", VIDEO_PROMPT)
    try:
        code, _, err = run_main(["run", str(wf), "--out", str(tmp_path / "out"), "--set", "4.fps=4", "--comfyui", str(comfy_host.comfyui)])
    finally:
        placed = clip.is_file()
        if not placed:  # leave the shared host as the other tests expect it
            shutil.copy2(ROOT / "assets" / clip.name, clip)
    assert code == cli.EXIT_OK, err
    assert placed
    (video,) = (tmp_path / "out" / "video").glob("vek_cli_*.mp4")
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        assert float(stream.average_rate) == 4 and frames == 9  # the tiny clip's 9 frames at the --set fps


def test_run_failures_name_the_node(comfy_host, tmp_path):
    root = str(comfy_host.comfyui)
    bad = json.loads(json.dumps(VIDEO_PROMPT))
    bad["4"]["inputs"]["fps"] = 500.0  # past CreateVideo's max: ComfyUI's validation refuses it
    code, _, err = run_main(["run", str(write(tmp_path / "bad.json", bad)), "--comfyui", root, "--out", str(tmp_path)])
    assert code == cli.EXIT_FAILED
    assert "failed validation" in err and "node 4 (CreateVideo): Value 500.0 bigger than max of 120.0" in err

    (Path(comfy_host.input_dir) / "vek_broken.mp4").write_bytes(b"this is not a video")
    broken = json.loads(json.dumps(VIDEO_PROMPT))
    broken["1"]["inputs"]["file"] = "vek_broken.mp4"
    code, _, err = run_main(["run", str(write(tmp_path / "broken.json", broken)), "--comfyui", root, "--out", str(tmp_path)])
    assert code == cli.EXIT_FAILED
    assert "error: node 2 (GetVideoComponents) failed:" in err

    code, _, err = run_main(["run", str(write(tmp_path / "ok.json", VIDEO_PROMPT)), "--comfyui", root, "--set", "1.file=nothere.mp4"])
    assert code == cli.EXIT_USAGE and "--set 1.file (node 1, LoadVideo): 'nothere.mp4' is not one of the choices" in err


def test_doctor_table(comfy_host, tmp_path):
    folder = tmp_path / "workflows"
    folder.mkdir()
    write(folder / "a_video.json", VIDEO_PROMPT)
    bad = json.loads(json.dumps(VIDEO_PROMPT))
    bad["3"]["class_type"] = "VEK_NoSuchNode"
    write(folder / "b_unknown.json", bad)
    code, out, _ = run_main(["doctor", "--comfyui", str(comfy_host.comfyui), "--workflows", str(folder), "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_FAILED
    lines = out.splitlines()
    assert any(line.startswith("a_video.json") and " pass " in line for line in lines)
    assert any(line.startswith("b_unknown.json") and " FAIL " in line and "VEK_NoSuchNode" in line for line in lines)
    assert f"{len(comfy_host.pack_node_ids())} nodes registered" in out and out.rstrip().endswith("doctor: FAILED")
    version = comfyui_version(comfy_host.comfyui)
    assert version[0].isdigit() and f"ComfyUI: {comfy_host.comfyui} ({version})" in out


def readme_main_job() -> list[str]:
    """The arguments of the README's main-job command (``python -m video_enhance_kit run ...``)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- section:quickstart -->")[1].split("<!-- /section:quickstart -->")[0]
    prefix = "python -m video_enhance_kit "
    lines = [line.split("#")[0].strip() for line in section.splitlines() if line.strip().startswith(prefix + "run ")]
    assert lines, "the README's quickstart shows no `python -m video_enhance_kit run` command"
    return lines[0][len(prefix):].split()


@pytest.mark.slow
def test_readme_main_job_command(comfy_host, tmp_path):
    """The README's main-job command in a fresh process, with this ComfyUI, a temp --out and --tiny (no real weights here)."""
    args = cli.build_parser().parse_args(readme_main_job())
    assert args.command == "run" and args.workflow.parts[0] == "example_workflows" and args.out == Path("out")
    if not (ROOT / args.workflow).is_file():
        pytest.skip(f"{args.workflow} does not exist yet")
    out_dir = tmp_path / "out"
    cmd = [sys.executable, "-m", "video_enhance_kit", "run", str(args.workflow), "--comfyui", str(comfy_host.comfyui), "--out", str(out_dir), "--tiny", "--max-steps", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [p for p in out_dir.rglob("*") if p.is_file()]
    assert files and all(str(p) in proc.stdout for p in files)
