"""The batch runner's host-free parts (no Ray, no ComfyUI): manifest and resume, loader detection, inputs,
segment clips and stitching through video files, the cluster-address check."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from video_enhance_kit.host.batch import check_address
from video_enhance_kit.host.batch_jobs import (
    expand_inputs,
    find_input_node,
    frame_rule,
    job_prompt,
    output_names,
)
from video_enhance_kit.host.errors import HostError, UsageError
from video_enhance_kit.host.manifest import (
    Manifest,
    completed,
    file_entry,
    settings_key,
)
from video_enhance_kit.host.results import NodeError
from video_enhance_kit.host.video_io import (
    check_video,
    decode,
    probe,
    split_segments,
    stitch_results,
)
from video_enhance_kit.host.video_io import synthetic_clip as make_clip
from video_enhance_kit.utils.segments import FrameRule, Segment, plan_segments, stitch

ROOT = Path(__file__).resolve().parents[1]


# -- manifest and resume ---------------------------------------------------------------------


def test_settings_key_changes_with_workflow_and_settings_only():
    wf = {"1": {"class_type": "LoadVideo", "inputs": {"file": "a.mp4"}}}
    key = settings_key(wf, {"tiny": True, "overrides": ["3.seed=1"]})
    assert key == settings_key(json.loads(json.dumps(wf)), {"overrides": ["3.seed=1"], "tiny": True})
    assert key != settings_key(wf, {"tiny": True, "overrides": ["3.seed=2"]})
    assert key != settings_key({"1": {"class_type": "LoadVideo", "inputs": {"file": "b.mp4"}}}, {"tiny": True, "overrides": ["3.seed=1"]})
    assert len(key) == 16


def test_manifest_appends_whole_lines_and_skips_a_cut_one(tmp_path):
    m = Manifest(tmp_path / "m.jsonl")
    m.append({"input": "/a", "status": "done"})
    with open(m.path, "a") as f:
        f.write('{"input": "/b", "sta')  # a crash mid-line
    m.append({"input": "/c", "status": "failed"})
    assert [r["input"] for r in m.records()] == ["/a", "/c"]


def _done(tmp_path, name="clip", key="k", status="done"):
    src = tmp_path / f"{name}.mp4"
    src.write_bytes(b"video")
    out = tmp_path / "out" / name / "video.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"result")
    return src, {"input": str(src), "input_size": 5, "status": status, "settings": key,
                 "outputs": [file_entry(out, tmp_path / "out")], "segment": None}


def test_resume_needs_done_same_settings_same_input_and_outputs_present(tmp_path):
    root = tmp_path / "out"
    src, record = _done(tmp_path)
    assert (record["outputs"][0]["path"], record["outputs"][0]["size"]) == ("clip/video.mp4", 6)
    assert list(completed([record], root, "k")) == [str(src)]
    assert completed([record], root, "other") == {}
    assert completed([dict(record, status="failed")], root, "k") == {}
    assert completed([record, dict(record, status="failed")], root, "k") == {}  # the last record decides
    assert list(completed([record, dict(record, segment=[0, 0, 9], status="failed")], root, "k")) == [str(src)]
    src.write_bytes(b"a longer video")  # the input changed
    assert completed([record], root, "k") == {}
    src.write_bytes(b"video")
    (root / "clip" / "video.mp4").write_bytes(b"cut")  # an output changed or went missing
    assert completed([record], root, "k") == {}


def test_file_entry_hashes_the_bytes(tmp_path):
    p = tmp_path / "x" / "f.bin"
    p.parent.mkdir()
    p.write_bytes(b"abc")
    assert file_entry(p, tmp_path) == {"path": "x/f.bin", "size": 3, "sha256":
                                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}


# -- the workflow: loader and frame rule -------------------------------------------------------


def test_the_video_loader_is_found_in_ui_and_api_workflows():
    ui = json.loads((ROOT / "example_workflows" / "nc_sdedit_sd15.json").read_text())
    node = find_input_node(ui)
    assert (node.node_id, node.class_type, node.name) == ("2", "LoadVideo", "file")
    api = {"5": {"class_type": "VHS_LoadVideoPath", "inputs": {"video": "/x.mp4"}}}
    assert find_input_node(api).name == "video" and find_input_node(api).takes_path
    assert find_input_node(api, "5.custom").name == "custom"


def test_the_job_prompt_points_the_loader_at_the_clip_and_leaves_the_prompt_alone():
    prompt = {"1": {"class_type": "LoadVideo", "inputs": {"file": "old.mp4"}},
              "5": {"class_type": "VHS_LoadVideoPath", "inputs": {"video": "/old.mp4", "frame_load_cap": 0}}}
    clip = Path("/comfy/input/vekbatch_j1_a.mp4")
    by_name = job_prompt(prompt, find_input_node({"1": prompt["1"]}), clip)
    assert by_name["1"]["inputs"]["file"] == "vekbatch_j1_a.mp4"  # LoadVideo: a name in the input folder
    by_path = job_prompt(prompt, find_input_node({"5": prompt["5"]}), clip)
    assert by_path["5"]["inputs"] == {"video": str(clip), "frame_load_cap": 0}  # VHS path loader: the absolute path
    custom = job_prompt(prompt, find_input_node(prompt, "5.custom"), clip)
    assert custom["5"]["inputs"]["custom"] == str(clip) and custom["5"]["inputs"]["video"] == "/old.mp4"
    assert prompt["1"]["inputs"]["file"] == "old.mp4" and prompt["5"]["inputs"]["video"] == "/old.mp4"
    with pytest.raises(UsageError, match="no node 9"):
        job_prompt(prompt, find_input_node({"9": {"class_type": "LoadVideo", "inputs": {}}}), clip)


def test_a_workflow_without_a_loader_or_with_two_asks_for_input_node():
    with pytest.raises(UsageError, match="no video-loading node.*--input-node"):
        find_input_node({"1": {"class_type": "KSampler", "inputs": {}}})
    two = {"1": {"class_type": "LoadVideo", "inputs": {}}, "2": {"class_type": "VHS_LoadVideo", "inputs": {}}}
    with pytest.raises(UsageError, match="2 video-loading nodes.*--input-node 1.file"):
        find_input_node(two)
    with pytest.raises(UsageError, match="--input-node '9.file'.*ids: 1, 2"):
        find_input_node(two, "9.file")


def test_frame_rule_is_4k_plus_1_for_wan_workflows_only():
    for stem in ("nc_sdedit_wan", "evs_sdxl_wan"):
        assert frame_rule(json.loads((ROOT / "example_workflows" / f"{stem}.json").read_text())) == FrameRule(4, 1)
    assert frame_rule(json.loads((ROOT / "example_workflows" / "nc_sdedit_sd15.json").read_text())) == FrameRule()
    swan = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a swan on a lake"}}}
    assert frame_rule(swan) == FrameRule()


# -- inputs --------------------------------------------------------------------------------------


def test_inputs_expand_folders_and_names_stay_unique(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for p in ("a/clip.mp4", "a/z.mkv", "a/notes.txt", "b/clip.mp4"):
        (tmp_path / p).write_bytes(b"x")
    found = expand_inputs([tmp_path / "a", tmp_path / "b" / "clip.mp4", tmp_path / "a" / "clip.mp4"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/clip.mp4", "a/z.mkv", "b/clip.mp4"]
    assert list(output_names(found).values()) == ["clip", "z", "clip-2"]
    with pytest.raises(UsageError, match="no such file"):
        expand_inputs([tmp_path / "missing.mp4"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no video file"):
        expand_inputs([tmp_path / "empty"])


def test_an_input_that_is_not_a_video_is_refused(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(UsageError, match="notes.mp4 is not a video"):
        check_video(bad)
    check_video(ROOT / "assets" / "vek_sample_tiny.mp4")
    info = probe(ROOT / "assets" / "vek_sample_tiny.mp4")
    assert (info.frames, info.fps, info.width) == (9, Fraction(8), 64)


# -- segments through files ----------------------------------------------------------------------


def test_segment_clips_hold_exactly_the_input_frames(tmp_path):
    pixels = make_clip(tmp_path / "long.mkv", frames=20)
    plan = plan_segments(20, 9, 3, FrameRule(4, 1))
    clips = split_segments(tmp_path / "long.mkv", plan, tmp_path / "seg")
    assert [(s.start, s.end) for s in plan] == [(0, 9), (6, 15), (11, 20)]
    for seg, clip in zip(plan, clips, strict=True):
        frames, fps = decode(clip.read_bytes())
        assert fps == Fraction(12)
        assert torch.equal(frames, torch.from_numpy(pixels[seg.start:seg.end]))


def test_stitched_results_are_the_exact_crossfade_of_the_segment_results(tmp_path):
    plan = [Segment(0, 9), Segment(6, 15), Segment(11, 20)]
    results = []
    for k, seg in enumerate(plan):  # each "enhanced" segment differs: the overlaps really blend
        make_clip(tmp_path / f"r{k}.mkv", frames=seg.frames, seed=k + 1)
        results.append((tmp_path / f"r{k}.mkv").read_bytes())
    n = stitch_results(results, plan, tmp_path / "out.mkv")
    got, fps = decode((tmp_path / "out.mkv").read_bytes())
    expected = stitch([decode(r)[0].float() for r in results], plan).round().to(torch.uint8)
    assert n == 20 and fps == Fraction(12)
    assert torch.equal(got, expected)
    assert torch.equal(got[:6], decode(results[0])[0][:6])  # outside the overlaps: copied
    assert torch.equal(got[9:11], decode(results[1])[0][3:5])


def test_stitching_keeps_the_input_audio(tmp_path):
    import av

    make_clip(tmp_path / "in.mkv", frames=12, audio=True)
    results = split_segments(tmp_path / "in.mkv", plan_segments(12, 8, 4), tmp_path / "s")
    stitch_results([p.read_bytes() for p in results], plan_segments(12, 8, 4), tmp_path / "out.mp4", tmp_path / "in.mkv")
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.video[0].average_rate == 12
        assert sum(1 for _ in c.decode(video=0)) == 12


# -- errors ---------------------------------------------------------------------------------------


def test_an_address_nobody_answers_fails_clearly_within_the_timeout():
    t0 = time.monotonic()
    with pytest.raises(HostError, match="no Ray cluster answers at 127.0.0.1:9.*ray start --head"):
        check_address("127.0.0.1:9", timeout=2)
    with pytest.raises(HostError, match="no Ray cluster answers at ray://127.0.0.1:9"):
        check_address("ray://127.0.0.1:9", timeout=2)
    assert time.monotonic() - t0 < 5


def test_a_comfyui_failure_is_reported_with_node_type_and_message():
    from video_enhance_kit.host.batch_worker import error_dict

    e = error_dict(NodeError("8", "VEK_NCSDEditRefine", "frames must be 4k+1", "InputError"))
    assert e == {"node_id": "8", "node_type": "VEK_NCSDEditRefine", "type": "InputError",
                 "message": "node 8 (VEK_NCSDEditRefine) failed: InputError: frames must be 4k+1"}
