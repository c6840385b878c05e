"""The batch command on a local Ray instance (``ray.init(num_cpus=2)``, once for the module) with the stand-in
runner (:mod:`video_enhance_kit.host.batch_standin`: the output is the input): N inputs give N outputs, a
worker killed mid-job is replaced and its job finishes once, a job that raises is reported and the others
finish, resume, segments stitched back, the bad inputs of the command line."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install \"video-enhance-kit[ray]\" (the batch command's tests)")

import torch  # noqa: E402
from video_enhance_kit.cli import build_parser, main  # noqa: E402
from video_enhance_kit.host import batch_cmd  # noqa: E402
from video_enhance_kit.host.batch_standin import EchoFactory  # noqa: E402
from video_enhance_kit.host.manifest import Manifest, sha256_file  # noqa: E402
from video_enhance_kit.host.video_io import decode  # noqa: E402
from video_enhance_kit.host.video_io import synthetic_clip as make_clip  # noqa: E402

WORKFLOW = {"1": {"class_type": "LoadVideo", "inputs": {"file": "placeholder.mp4"}},
            "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0]}}}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k, name in enumerate(("a", "b", "c", "d")):
        make_clip(folder / f"{name}.mkv", frames=5, seed=k)
    return folder


def batch(tmp_path, *extra, factory=None, workflow=WORKFLOW):
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    args = build_parser().parse_args(["batch", str(tmp_path / "wf.json"), "--out", str(tmp_path / "out"), "-q", *extra])
    out, err = io.StringIO(), io.StringIO()
    code = batch_cmd.cmd_batch(args, workflow, out, err, factory=factory or EchoFactory())
    return code, out.getvalue(), Manifest(tmp_path / "out" / "manifest.jsonl").records()


def test_n_inputs_give_n_outputs_on_two_workers(tmp_path, clips):
    code, out, records = batch(tmp_path, "--inputs", str(clips), "--workers", "2", factory=EchoFactory(delay_s=0.3))
    assert code == 0, out
    assert sorted(r["name"] for r in records) == ["a", "b", "c", "d"]
    assert {r["worker"] for r in records} == {"w0", "w1"}  # both workers took jobs
    for r in records:
        (entry,) = r["outputs"]
        assert entry["path"] == f"{r['name']}/echo.mkv"
        assert entry["sha256"] == sha256_file(clips / f"{r['name']}.mkv")  # the pass-through job's output
        assert (r["status"], r["attempts"], r["error"]) == ("done", 1, None)
    assert "4 done, 0 failed of 4" in out


def test_a_killed_worker_is_replaced_and_its_job_finishes_once(tmp_path, clips, monkeypatch):
    submit, killed = batch_cmd.BatchRun.submit, []

    def submit_and_kill(self, actor, job):
        if job.name == "b" and not killed:
            pid = ray.get(actor.info.remote())["pid"]  # asked before the job: the actor runs one call at a time
            killed.append(pid)
            threading.Timer(0.7, os.kill, (pid, signal.SIGKILL)).start()  # mid-job: the job sleeps 2 s
        return submit(self, actor, job)

    monkeypatch.setattr(batch_cmd.BatchRun, "submit", submit_and_kill)
    code, out, records = batch(tmp_path, "--inputs", str(clips), "--workers", "2", factory=EchoFactory(delay_s=2.0))
    assert code == 0 and killed, out
    assert sorted(r["name"] for r in records) == ["a", "b", "c", "d"]  # one line each: nothing twice
    b = next(r for r in records if r["name"] == "b")
    assert (b["status"], b["attempts"]) == ("done", 2) and b["worker"] not in ("w0", "w1")
    assert b["outputs"][0]["sha256"] == sha256_file(clips / "b.mkv")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c", "d", "manifest.jsonl"]


def test_a_job_that_raises_is_reported_and_the_others_finish(tmp_path, clips):
    (clips / "bad.mkv").write_bytes((clips / "a.mkv").read_bytes())
    code, out, records = batch(tmp_path, "--inputs", str(clips), "--workers", "2",
                               factory=EchoFactory(fail_marker="bad"))
    assert code == 1
    by = {r["name"]: r for r in records}
    assert [n for n, r in sorted(by.items()) if r["status"] == "done"] == ["a", "b", "c", "d"]
    assert by["bad"]["status"] == "failed" and by["bad"]["outputs"] == [] and by["bad"]["attempts"] == 1
    assert by["bad"]["error"]["type"] == "RuntimeError" and "stand-in failure" in by["bad"]["error"]["message"]
    assert not (tmp_path / "out" / "bad").exists()
    assert "4 done, 1 failed of 5" in out


def test_resume_skips_what_is_done_with_the_same_settings(tmp_path, clips):
    batch(tmp_path, "--inputs", str(clips / "a.mkv"), str(clips / "b.mkv"))
    code, out, records = batch(tmp_path, "--inputs", str(clips), "--resume")
    assert code == 0 and [r["name"] for r in records] == ["a", "b", "c", "d"]  # a, b not run again
    code, out, again = batch(tmp_path, "--inputs", str(clips), "--resume")  # Ray is not even started
    assert "nothing to do" in out and len(again) == 4
    code, out, changed = batch(tmp_path, "--inputs", str(clips / "a.mkv"), "--resume", "--set", "2.x=1")
    assert len(changed) == 5 and changed[-1]["settings"] != changed[0]["settings"]  # other settings: run again


def test_with_shared_out_the_worker_writes_and_the_driver_moves_the_files_once(tmp_path, clips, monkeypatch):
    sent = []
    submit = batch_cmd.BatchRun.submit
    monkeypatch.setattr(batch_cmd.BatchRun, "submit", lambda self, actor, job: sent.append(self._partial(job)) or submit(self, actor, job))
    code, out, records = batch(tmp_path, "--inputs", str(clips), "--workers", "2", "--shared-out")
    assert code == 0, out
    assert len(sent) == 4 and all(str(p).startswith(str(tmp_path / "out")) for p in sent)  # each job got a shared folder
    for r in records:
        (entry,) = r["outputs"]
        assert entry["sha256"] == sha256_file(clips / f"{r['name']}.mkv") == sha256_file(tmp_path / "out" / entry["path"])
    assert not any(p.exists() for p in sent)  # moved, not copied: nothing left behind, nothing twice
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c", "d", "manifest.jsonl"]


def test_ctrl_c_stops_the_batch_and_the_manifest_holds_exactly_the_finished_jobs(tmp_path, clips, monkeypatch):
    accept, taken = batch_cmd.BatchRun.accept, []

    def accept_then_interrupt(self, job, outcome):
        accept(self, job, outcome)
        taken.append(job.name)
        if len(taken) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(batch_cmd.BatchRun, "accept", accept_then_interrupt)
    code, out, records = batch(tmp_path, "--inputs", str(clips), "--workers", "1")
    assert code == 130 and "interrupted: 2 input(s) not finished" in out
    assert [r["name"] for r in records] == taken and all(r["status"] == "done" for r in records)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*taken, "manifest.jsonl"])
    monkeypatch.setattr(batch_cmd.BatchRun, "accept", accept)
    code, out, records = batch(tmp_path, "--inputs", str(clips), "--resume")  # the rest, not the finished ones again
    assert code == 0 and sorted(r["name"] for r in records) == ["a", "b", "c", "d"]


def test_a_long_input_in_segments_is_stitched_back_exactly(tmp_path):
    pixels = make_clip(tmp_path / "long.mkv", frames=21, seed=3)
    code, out, records = batch(tmp_path, "--inputs", str(tmp_path / "long.mkv"), "--workers", "2",
                               "--segment-frames", "9", "--overlap", "3")
    assert code == 0, out
    segments = [r for r in records if r["segment"]]
    assert [r["segment"] for r in segments] == [[0, 0, 9], [1, 6, 15], [2, 12, 21]] or \
        sorted(r["segment"][0] for r in segments) == [0, 1, 2]
    (whole,) = [r for r in records if not r["segment"]]
    frames, _ = decode((tmp_path / "out" / "long" / "echo.mkv").read_bytes())
    assert torch.equal(frames, torch.from_numpy(pixels))  # pass-through segments: the input, frame for frame
    assert whole["outputs"][0]["path"] == "long/echo.mkv"
    assert not (tmp_path / "out" / ".segments").exists()


def test_wan_workflows_need_4k_plus_1_segments(tmp_path):
    make_clip(tmp_path / "long.mkv", frames=12)
    wan = dict(WORKFLOW, **{"3": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_1.3B.safetensors"}}})
    (tmp_path / "wf.json").write_text(json.dumps(wan))
    err = io.StringIO()
    code = main(["batch", str(tmp_path / "wf.json"), "--inputs", str(tmp_path / "long.mkv"), "--segment-frames", "8",
                 "--out", str(tmp_path / "out")], io.StringIO(), err)
    assert code == 2 and "8 frames is not a count the workflow takes (4k + 1)" in err.getvalue() and "use 5" in err.getvalue()


def test_bad_command_lines_fail_with_a_clear_message(tmp_path, clips):
    (tmp_path / "none.json").write_text(json.dumps({"1": {"class_type": "KSampler", "inputs": {}}}))
    (tmp_path / "wf.json").write_text(json.dumps(WORKFLOW))
    (tmp_path / "text.mp4").write_text("hello")
    cases = [
        (["none.json", "--inputs", str(clips)], 2, "no video-loading node"),
        (["wf.json", "--inputs", str(tmp_path / "text.mp4")], 2, "text.mp4 is not a video"),
        (["wf.json", "--inputs", str(clips), "--ray", "127.0.0.1:9", "--connect-timeout", "2"], 3,
         "no Ray cluster answers at 127.0.0.1:9"),
    ]
    for argv, code, message in cases:
        err = io.StringIO()
        argv = ["batch", str(tmp_path / argv[0]), *argv[1:], "--out", str(tmp_path / "out")]
        if "--ray" in argv:
            ray.shutdown()  # the command itself starts or joins Ray
        try:
            assert main(argv, io.StringIO(), err) == code, err.getvalue()
        finally:
            if not ray.is_initialized():
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        assert message in err.getvalue()


def test_without_ray_the_command_says_how_to_install_it(monkeypatch):
    import builtins

    from video_enhance_kit.host.batch import RAY_MISSING, import_ray
    from video_enhance_kit.host.errors import HostError

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "ray" else real(name, *a, **k))
    with pytest.raises(HostError, match=r"pip install \"video-enhance-kit\[ray\]\""):
        import_ray()
    assert "ray>=2.9" in RAY_MISSING
    assert Path(__file__).exists()
