"""Host-free prompt transforms (no ComfyUI): links, formats, step capping, sample clips, the clip placing rule."""

import pytest
from video_enhance_kit.host import backend, errors
from video_enhance_kit.host import prompt as P
from video_enhance_kit.host.locate import SAMPLE_CLIPS, sample_clip_path
from video_enhance_kit.host.overrides import apply_input_values
from video_enhance_kit.nodes._registry import place_clip


def test_links_and_real_nodes():
    assert P.is_link(["3", 0]) and not P.is_link([3, 0]) and not P.is_link(["3", 0, 1]) and not P.is_link("3")
    assert P.is_real_node({"type": "KSampler", "mode": 0})
    assert not P.is_real_node({"type": "MarkdownNote"}) and not P.is_real_node({"type": "KSampler", "mode": 4})
    assert not P.is_real_node({"type": "1b2c3d4e-0000-4000-8000-000000000000"})  # a subgraph instance


def test_cap_steps_scales_start_and_end():
    prompt = {"1": {"class_type": "KSamplerAdvanced", "inputs": {"steps": 20, "start_at_step": 10, "end_at_step": 10000}},
              "2": {"class_type": "KSampler", "inputs": {"steps": 2}},
              "3": {"class_type": "BasicScheduler", "inputs": {"steps": ["9", 0]}},
              "4": {"class_type": "VEK_Two", "inputs": {"t2i_steps": 50, "t2v_block_steps": 0, "t2v_steps": 4,
                                                       "calibration_steps": True}}}
    out, changes = P.cap_steps(prompt, 4)
    assert out["1"]["inputs"] == {"steps": 4, "start_at_step": 2, "end_at_step": 10000}
    assert out["2"]["inputs"]["steps"] == 2 and out["3"]["inputs"]["steps"] == ["9", 0]
    assert out["4"]["inputs"] == {"t2i_steps": 4, "t2v_block_steps": 0, "t2v_steps": 4, "calibration_steps": True}
    assert prompt["1"]["inputs"]["steps"] == 20
    assert changes == ["1 KSamplerAdvanced.steps: 20 -> 4", "1 KSamplerAdvanced.start_at_step: 10 -> 2",
                       "4 VEK_Two.t2i_steps: 50 -> 4"]
    with pytest.raises(errors.UsageError, match="at least 1"):
        P.cap_steps(prompt, 0)


def test_referenced_sample_clips_and_input_specs():
    prompt = {"1": {"class_type": "LoadVideo", "inputs": {"file": "vek_sample_tiny.mp4"}},
              "2": {"class_type": "X", "inputs": {"text": "vek_sample.mp4", "n": 3}}}
    assert P.referenced_sample_clips(prompt) == list(SAMPLE_CLIPS)
    assert P.referenced_sample_clips({"1": {"class_type": "LoadVideo", "inputs": {"file": "mine.mp4"}}}) == []
    info = {"X": {"input": {"required": {"n": ["INT", {"min": 0}]}, "optional": {"mode": ["COMBO", {"options": ["a", "b"]}]}}}}
    assert P.input_spec(info, "X", "n") == ["INT", {"min": 0}] and P.input_spec(info, "X", "zz") is None
    assert P.declared_inputs(info, "X") == ["n", "mode"] and P.choices(P.input_spec(info, "X", "mode")) == ["a", "b"]
    assert P.choices(["INT", {}]) is None and P.node_id_key("10") > P.node_id_key("9") and P.node_id_key("a") > P.node_id_key("99")


def test_python_value_overrides():
    prompt = {"1": {"class_type": "X", "inputs": {"n": 1}}}
    assert apply_input_values(prompt, {"1.n": 5})["1"]["inputs"]["n"] == 5 and prompt["1"]["inputs"]["n"] == 1
    with pytest.raises(errors.UsageError, match="no node '2'"):
        apply_input_values(prompt, {"2.n": 5})


def test_the_sample_clip_placing_rule(tmp_path):
    source = sample_clip_path("vek_sample_tiny.mp4")
    target = place_clip(source, tmp_path / "input")  # missing (and its folder too): copied
    assert target.read_bytes() == source.read_bytes()
    mtime = target.stat().st_mtime_ns
    assert place_clip(source, tmp_path / "input") == target and target.stat().st_mtime_ns == mtime  # same size: kept
    target.write_bytes(b"x")
    place_clip(source, tmp_path / "input")
    assert target.read_bytes() == source.read_bytes()  # a different size: replaced


def test_both_backends_implement_the_one_interface():
    from video_enhance_kit.host.server import ServerBackend

    for cls in (backend.InProcessBackend, ServerBackend):
        assert issubclass(cls, backend.Backend)
        assert not getattr(cls, "__abstractmethods__", set())
    assert backend.Backend.__abstractmethods__ == {"object_info", "prepare", "place_sample_clips", "run"}
    assert [e.code for e in (errors.UsageError("x"), errors.HostRunError("x"), errors.HostError("x"))] == [2, 1, 3]
