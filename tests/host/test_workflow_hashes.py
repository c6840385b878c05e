"""Every example workflow, run with tiny models and its fixed seeds, gives the frames recorded before the
issue-10 refactor, bit for bit.

The digest of a run is taken over what the workflow computed, not over file bytes (SaveVideo writes the input
file's modification time into the container): the pixels of every image, the 8-bit frames every video was
encoded from (what SaveVideo hands the H.264 encoder), and the text outputs. Frames are taken before the
encoder because libx264's output for the same frames was seen to differ between runs in one process (its frame
decisions; about one run in six for zvrd_restore_colourise, whose frames were identical every time). The recorded digests belong to one platform (torch version and CPU kernel
family): elsewhere float kernels differ in their last bits, so the test skips and says why.
Re-record (only when a change of output is intended, and say so in the commit):
``VEK_RECORD_WORKFLOW_HASHES=1 COMFYUI_PATH=... python -m pytest tests/host/test_workflow_hashes.py``.

Issue 11 changed VEnhancer Upscale's output on purpose: it now runs the native pieces (VEnhancer Conditioning, a ComfyUI
sampler, VEnhancer Decode); its digest was re-recorded then, and the new venhancer_native / venhancer_nc recorded.

One change of output was intended by the refactor (issue 10, item 5): SLR attention and the VEnhancer network now
run their attention through ComfyUI's ``optimized_attention``, the backend the user chose (on a ``--cpu`` start
ComfyUI picks its sub-quadratic kernel; before, these layers called torch SDPA, and trajectory attention its own
softmax). The workflows that use those layers (:data:`BACKEND_ROUTED`) therefore have new digests, and a second
test proves nothing else changed: with the pack's layers handed the core's default attention again, they give
the digests recorded before the refactor (``before_issue_10``), bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
RECORD = Path(__file__).with_name("workflow_hashes.json")
MAX_STEPS = 3
#: venhancer_upscale left this list with issue 11: VEnhancer Upscale now runs the native pieces (ComfyUI's sampler, the
#: conditioning's padding rule), so its pre-issue-10 frames cannot come back; tests/host/test_venhancer.py checks its
#: attention routing bit for bit instead (test_attention_goes_through_comfyui_optimized_attention).
BACKEND_ROUTED = ("zvrd_attention_sd15", "zvrd_guidance_sd15")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".gif", ".avi"}


THREADS = 2  # the runs use this many CPU threads whatever the machine (reductions split by thread count)


def platform_key() -> str:
    """Where float results are reproducible bit for bit: torch version, CPU kernel family, thread count."""
    return f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}, threads {THREADS}"


@pytest.fixture(autouse=True)
def fixed_threads():
    """Other host test modules set 1 thread at import; the digests were recorded with :data:`THREADS`."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def decoded_digest(path: Path) -> str:
    """sha256 of what a file decodes to: image pixels, every video frame (rgb24), else the bytes."""
    h = hashlib.sha256()
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as im:
            h.update(f"{im.mode} {im.size}".encode())
            h.update(im.tobytes())
    elif suffix in VIDEO_SUFFIXES:
        import av

        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                array = frame.to_ndarray(format="rgb24")
                h.update(str(array.shape).encode())
                h.update(array.tobytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def text_outputs(outputs: dict) -> list[str]:
    """The text entries of the UI outputs (e.g. the quality report), in node order."""
    found = []
    for node_id in sorted(outputs, key=str):
        for key, value in sorted(outputs[node_id].items()):
            if key in ("text", "string") and isinstance(value, list):
                found += [f"{node_id}.{key}: {v}" for v in value if isinstance(v, str)]
    return found


def frames_digest(images: torch.Tensor) -> str:
    """sha256 of IMAGE frames ``[F, H, W, 3]`` as the video encoder gets them (8-bit, ComfyUI's rounding)."""
    h = hashlib.sha256()
    array = (images * 255).clamp(0, 255).byte().cpu().numpy()
    h.update(str(array.shape).encode())
    h.update(array.tobytes())
    return h.hexdigest()


@pytest.fixture
def encoded_frames(comfy_host, monkeypatch) -> dict[str, str]:
    """``{resolved path: frames_digest}`` of every video SaveVideo writes during the test (in-process)."""
    from comfy_api.latest._input_impl.video_types import VideoFromComponents

    seen, save = {}, VideoFromComponents.save_to

    def save_to(self, path, *args, **kwargs):
        seen[str(Path(path).resolve())] = frames_digest(self.get_components().images)
        return save(self, path, *args, **kwargs)

    monkeypatch.setattr(VideoFromComponents, "save_to", save_to)
    return seen


def run_digest(result, encoded: dict[str, str] | None = None) -> dict:
    """The digests of one run: each written file's content (sorted) and the text outputs; a video in ``encoded``
    by the frames it was encoded from, any other file by what it decodes to."""
    encoded = encoded or {}
    files = sorted(encoded.get(str(Path(p).resolve())) or decoded_digest(p) for p in result.files)
    text = hashlib.sha256("\n".join(text_outputs(result.outputs)).encode()).hexdigest()
    return {"files": files, "text": text}


def recorded() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.is_file() else {}


def recording() -> bool:
    return os.environ.get("VEK_RECORD_WORKFLOW_HASHES") == "1"


def check_platform(record: dict) -> None:
    if record.get("platform") != platform_key():
        pytest.skip(f"digests recorded on {record.get('platform')!r}, this is {platform_key()!r}")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_outputs_are_unchanged(path, run_workflow, encoded_frames):
    record = recorded()
    if not recording():
        check_platform(record)
        assert path.stem in record["workflows"], f"no digest recorded for {path.name}: re-record (see module doc)"
    result = run_workflow(path, tiny=True, max_steps=MAX_STEPS, fresh=True)
    digest = run_digest(result, encoded_frames)
    assert digest["files"], f"{path.name} wrote no file"
    videos = [p for p in result.files if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    assert all(str(Path(p).resolve()) in encoded_frames for p in videos), "a video was written without SaveVideo's encoder"
    if recording():
        record = recorded() or {"platform": platform_key(), "workflows": {}}
        record["platform"] = platform_key()
        record["workflows"][path.stem] = digest
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        return
    assert digest == record["workflows"][path.stem], f"{path.name}: decoded outputs differ from the recorded ones"


@pytest.mark.parametrize("name", BACKEND_ROUTED)
def test_with_the_core_default_attention_outputs_equal_the_pre_refactor_ones(name, run_workflow, pack, monkeypatch):
    record = recorded()
    check_platform(record)
    if recording():
        pytest.skip("recording")
    monkeypatch.setattr(pack("nodes.slr_attention"), "comfy_attention", lambda *args, **kwargs: None)
    result = run_workflow(ROOT / "example_workflows" / f"{name}.json", tiny=True, max_steps=MAX_STEPS, fresh=True)
    # before_issue_10 was recorded from the decoded files (before frames were taken at the encoder): compare alike
    assert run_digest(result) == record["before_issue_10"][name], f"{name}: the refactor changed more than the attention backend"
