"""Headless runner without ComfyUI: parsing, --set coercion (host.overrides), conversion (host.prompt),
messages (host.results), progress (host.progress), exit codes, and server mode (host.server) against a
small fake ComfyUI HTTP server on 127.0.0.1 (port 0, loopback only)."""

import io
import json
import socket
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from video_enhance_kit import cli
from video_enhance_kit.host import (
    backend,
    errors,
    overrides,
    progress,
    results,
    server,
    tiny,
)
from video_enhance_kit.host import prompt as prompts
from video_enhance_kit.host.locate import sample_clip_path

OBJECT_INFO = {
    "FakeLoad": {
        "input": {"required": {"file": [["vek_sample.mp4", "other.mp4"], {"tooltip": "clip"}]}},
        "output": ["IMAGE"],
        "output_name": ["IMAGE"],
        "output_is_list": [False],
        "name": "FakeLoad",
        "output_node": False,
    },
    "FakeSampler": {
        "input": {
            "required": {
                "images": ["IMAGE", {}],
                "seed": ["INT", {"default": 0, "min": 0, "max": 2**32, "control_after_generate": True}],
                "cfg": ["FLOAT", {"default": 7.0, "min": 0.0, "max": 30.0, "step": 0.1}],
                "sampler_name": [["euler", "dpmpp_2m", "ddim"], {}],
                "mode": ["COMBO", {"options": ["fast", "slow"], "default": "fast"}],
                "steps": [[1, 2, 4], {}],
            },
            "optional": {
                "denoise": ["BOOLEAN", {"default": True}],
                "text": ["STRING", {"default": "", "multiline": True}],
            },
        },
        "output": ["IMAGE"],
        "output_name": ["IMAGE"],
        "output_is_list": [False],
        "name": "FakeSampler",
        "output_node": False,
    },
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["real.safetensors", "vek-tiny-sd15.safetensors"], {}]}},
        "output": ["MODEL", "CLIP", "VAE"],
        "output_name": ["MODEL", "CLIP", "VAE"],
        "output_is_list": [False, False, False],
        "name": "CheckpointLoaderSimple",
        "output_node": False,
    },
    "FakeSave": {
        "input": {"required": {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "vek"}]}},
        "output": [],
        "output_name": [],
        "output_is_list": [],
        "name": "FakeSave",
        "output_node": True,
    },
}

API = {
    "1": {"class_type": "FakeLoad", "inputs": {"file": "vek_sample.mp4"}},
    "2": {
        "class_type": "FakeSampler",
        "inputs": {"images": ["1", 0], "seed": 5, "cfg": 7.0, "sampler_name": "euler", "mode": "fast", "steps": 2, "denoise": True, "text": "a fox"},
    },
    "3": {"class_type": "FakeSave", "inputs": {"images": ["2", 0], "filename_prefix": "vek"}},
}

UI = {
    "last_node_id": 3,
    "last_link_id": 2,
    "nodes": [
        {"id": 1, "type": "FakeLoad", "mode": 0, "inputs": [], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}], "widgets_values": ["vek_sample.mp4"]},
        {
            "id": 2,
            "type": "FakeSampler",
            "mode": 0,
            "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}],
            "widgets_values": [5, "fixed", 7.0, "euler", "fast", 2, True, "a fox"],
        },
        {"id": 3, "type": "FakeSave", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "outputs": [], "widgets_values": ["vek"]},
        {"id": 4, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["a note"]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    "groups": [],
    "config": {},
    "extra": {},
    "version": 0.4,
}


# ------------------------------------------------------------------------------------------
# parsing and coercion
# ------------------------------------------------------------------------------------------


def test_override_parse():
    o = overrides.Override.parse("12.text=a=b. c")
    assert (o.node_id, o.input, o.raw) == ("12", "text", "a=b. c")
    for bad in ("12text=1", "12.seed", ".seed=1", "12.=1"):
        with pytest.raises(errors.RunnerError, match="NODE_ID.INPUT=VALUE"):
            overrides.Override.parse(bad)


@pytest.mark.parametrize(
    "raw, spec, expected",
    [
        ("42", ["INT", {"min": 0, "max": 100}], 42),
        ("1e2", ["INT", {"min": 0, "max": 100}], 100),
        ("-3", ["INT", {}], -3),
        ("2.5", ["FLOAT", {"min": 0.0, "max": 30.0}], 2.5),
        ("0", ["FLOAT", {"min": 0.0, "max": 30.0}], 0.0),
        ("30", ["FLOAT", {"min": 0.0, "max": 30.0}], 30.0),
        ("yes", ["BOOLEAN", {}], True),
        ("False", ["BOOLEAN", {}], False),
        ("0", ["BOOLEAN", {}], False),
        ("  spaced text ", ["STRING", {}], "  spaced text "),
        ("ddim", [["euler", "ddim"], {}], "ddim"),
        ("slow", ["COMBO", {"options": ["fast", "slow"]}], "slow"),
        ("4", [[1, 2, 4], {}], 4),
        ('{"a": 1}', ["SOMETHING_ELSE", {}], {"a": 1}),
        ("plain", ["SOMETHING_ELSE", {}], "plain"),
    ],
)
def test_coerce_by_declared_type(raw, spec, expected):
    value = overrides.coerce(raw, spec, "--set 2.x")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "raw, spec, message",
    [
        ("4.5", ["INT", {}], "is an INT"),
        ("abc", ["INT", {}], "is an INT"),
        ("nan", ["INT", {}], "is an INT"),
        ("-1", ["INT", {"min": 0, "max": 10}], "outside its range"),
        ("11", ["INT", {"min": 0, "max": 10}], "outside its range"),
        ("x", ["FLOAT", {}], "is a FLOAT"),
        ("nan", ["FLOAT", {}], "finite"),
        ("inf", ["FLOAT", {}], "finite"),
        ("-0.1", ["FLOAT", {"min": 0.0, "max": 1.0}], "outside its range"),
        ("1.1", ["FLOAT", {"min": 0.0, "max": 1.0}], "outside its range"),
        ("maybe", ["BOOLEAN", {}], "is a BOOLEAN"),
        ("heun", [["euler", "ddim"], {}], "not one of the choices: euler, ddim"),
        ("medium", ["COMBO", {"options": ["fast", "slow"]}], "not one of the choices"),
    ],
)
def test_coerce_errors_name_the_input(raw, spec, message):
    with pytest.raises(errors.RunnerError, match=message) as e:
        overrides.coerce(raw, spec, "--set 2.x (node 2, FakeSampler)")
    assert "--set 2.x" in str(e.value) and e.value.code == errors.EXIT_USAGE


def test_apply_overrides_coerces_and_copies():
    sets = [overrides.Override.parse(s) for s in ("2.seed=9", "2.cfg=3.5", "2.denoise=off", "2.text=a cat", "2.mode=slow", "3.filename_prefix=run1")]
    out = overrides.apply_overrides(API, sets, OBJECT_INFO)
    assert out["2"]["inputs"]["seed"] == 9 and out["2"]["inputs"]["cfg"] == 3.5
    assert out["2"]["inputs"]["denoise"] is False and out["2"]["inputs"]["text"] == "a cat"
    assert out["2"]["inputs"]["mode"] == "slow" and out["3"]["inputs"]["filename_prefix"] == "run1"
    assert API["2"]["inputs"]["seed"] == 5  # the input prompt is not mutated
    assert out["2"]["inputs"]["images"] == ["1", 0]


def test_apply_overrides_unknown_node_and_input():
    with pytest.raises(errors.RunnerError, match=r"no node '7'.*1 \(FakeLoad\), 2 \(FakeSampler\), 3 \(FakeSave\)"):
        overrides.apply_overrides(API, [overrides.Override.parse("7.seed=1")], OBJECT_INFO)
    with pytest.raises(errors.RunnerError, match=r"node 2, FakeSampler\): FakeSampler has no input 'sead'; its inputs: images, seed"):
        overrides.apply_overrides(API, [overrides.Override.parse("2.sead=1")], OBJECT_INFO)


def test_format_detection_and_ui_conversion():
    assert prompts.is_api_format(API) and not prompts.is_api_format(UI) and not prompts.is_api_format({})
    converted = prompts.to_api(UI, OBJECT_INFO)
    assert set(converted) == {"1", "2", "3"}  # the Note is dropped
    assert {k: v["class_type"] for k, v in converted.items()} == {k: v["class_type"] for k, v in API.items()}
    for key, value in API["2"]["inputs"].items():
        assert converted["2"]["inputs"][key] == value, key  # widgets mapped by position, "fixed" stripped
    assert prompts.to_api(API, OBJECT_INFO) == API and prompts.to_api(API, OBJECT_INFO) is not API


def test_ui_conversion_names_unknown_node_types():
    ui = json.loads(json.dumps(UI))
    ui["nodes"][1]["type"] = "NotInstalledNode"
    with pytest.raises(errors.RunnerError, match="NotInstalledNode") as e:
        prompts.to_api(ui, OBJECT_INFO)
    assert e.value.code == errors.EXIT_FAILED
    with pytest.raises(errors.RunnerError, match="neither UI format"):
        prompts.to_api({"foo": 1}, OBJECT_INFO)


def test_validation_and_execution_messages_name_the_node():
    msg = results.describe_validation_error(
        {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": ""},
        {"2": {"errors": [{"type": "value_bigger_than_max", "message": "Value 99 bigger than max of 30", "details": "cfg", "extra_info": {"input_name": "cfg"}}], "class_type": "FakeSampler"}},
        API,
    )
    assert "node 2 (FakeSampler): Value 99 bigger than max of 30: cfg" in msg
    error = results.execution_error("execution_error", {"node_id": "2", "node_type": "FakeSampler", "exception_type": "InputError", "exception_message": "latent: has 1 frame "})
    assert error.describe() == "node 2 (FakeSampler) failed: InputError: latent: has 1 frame"
    stopped = results.execution_error("execution_interrupted", {"node_id": "2", "node_type": "FakeSampler"})
    assert stopped.describe() == "node 2 (FakeSampler) failed: Interrupted: processing was interrupted"
    status = {"messages": [["execution_start", {}], ["execution_interrupted", {"node_id": "5", "node_type": "KSampler"}]]}
    assert results.error_from_status(status).describe() == "interrupted at node 5 (KSampler)"
    assert results.error_from_status({}).describe() == "the workflow did not complete (no error message from ComfyUI)"


def test_output_paths_stay_inside_out(tmp_path):
    assert results.local_target(tmp_path, {"filename": "a.png", "subfolder": "x", "type": "output"}) == tmp_path / "x" / "a.png"
    assert results.local_target(tmp_path, {"filename": "a.png", "subfolder": "", "type": "temp"}) == tmp_path / "previews" / "a.png"
    assert results.local_target(tmp_path, {"filename": "evil.sh", "subfolder": "../../..", "type": "output"}) == tmp_path / "evil.sh"
    assert results.local_target(tmp_path, {"filename": "../../x", "subfolder": "", "type": "temp"}) == tmp_path / "previews" / "x"


def test_progress_prints_nodes_and_steps():
    stream = io.StringIO()
    p = progress.ProgressPrinter(API, stream=stream)
    p.event("executing", {"node": "2", "prompt_id": "x"})
    for i in range(1, 4):
        p.event("progress", {"value": i, "max": 3, "node": "2", "prompt_id": "x"})
    p.event("executing", {"node": "3", "prompt_id": "x"})
    p.event("execution_error", {"node_id": "3", "node_type": "FakeSave", "exception_message": "disk full"})
    text = stream.getvalue()
    assert "running node 2 (FakeSampler)" in text and "running node 3 (FakeSave)" in text
    assert "3/3 node 2 (FakeSampler)" in text  # non-tty: first and last step only
    assert "2/3" not in text
    assert p.executed == ["2", "3"] and p.error.node_id == "3" and p.error.message == "disk full"


class TtyStream(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_updates_the_bar_in_place():
    stream = TtyStream()
    p = progress.ProgressPrinter(API, stream=stream)
    p.event("executing", {"node": "2"})
    for i in (1, 2):
        p.event("progress", {"value": i, "max": 2, "node": "2"})
    p.event("executing", {"node": "3"})
    p.close()
    text = stream.getvalue()
    assert text.count("\r\033[K") == 2  # the 2nd bar overwrites the 1st, the next line clears the bar
    assert "[############............] 1/2" in text and "[########################] 2/2" in text
    assert text.endswith("running node 3 (FakeSave)\n")
    quiet = TtyStream()
    q = progress.ProgressPrinter(API, stream=quiet, quiet=True)
    q.event("executing", {"node": "2"})
    assert quiet.getvalue() == "" and q.executed == ["2"]


# ------------------------------------------------------------------------------------------
# exit codes of main()
# ------------------------------------------------------------------------------------------


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_exit_codes_for_usage_and_environment(tmp_path, monkeypatch):
    code, _, err = run_main(["run", str(tmp_path / "missing.json")])
    assert code == errors.EXIT_USAGE and "does not exist" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run_main(["run", str(bad)])
    assert code == errors.EXIT_USAGE and "not valid JSON" in err
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(API))
    code, _, err = run_main(["run", str(wf), "--set", "2seed=1"])
    assert code == errors.EXIT_USAGE and "NODE_ID.INPUT=VALUE" in err
    code, _, err = run_main(["run", str(wf), "--comfyui", str(tmp_path)])
    assert code == errors.EXIT_ENV and "not a ComfyUI folder" in err
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    code, _, err = run_main(["run", str(wf)])
    assert code == errors.EXIT_ENV and "ComfyUI not found" in err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run_main(["run", str(wf), "--server", f"http://127.0.0.1:{port}"])
    assert code == errors.EXIT_ENV and "cannot reach the ComfyUI server" in err
    with pytest.raises(SystemExit) as e:  # argparse: missing workflow argument
        cli.main(["run"], out=io.StringIO(), err=io.StringIO())
    assert e.value.code == 2


def test_module_entry_point_runs_without_comfyui(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "video_enhance_kit", "run", "--help"], capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0 and "--set NODE_ID.INPUT=VALUE" in proc.stdout
    code = "import sys, video_enhance_kit.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths', 'execution', 'server', 'nodes')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert proc.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------
# server mode against a fake ComfyUI
# ------------------------------------------------------------------------------------------


class FakeComfy:
    """The parts of ComfyUI's HTTP API the runner uses; records what it was sent."""

    def __init__(self):
        self.prompts, self.uploads, self.history, self.polls = [], {}, {}, 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, payload, raw=False):
                body = payload if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                if url.path == "/object_info":
                    return self.reply(200, OBJECT_INFO)
                if url.path.startswith("/history/"):
                    fake.polls += 1
                    pid = url.path.split("/")[-1]
                    # the entry shows up only on the second poll (the prompt "runs" meanwhile)
                    return self.reply(200, {pid: fake.history[pid]} if pid in fake.history and fake.polls % 2 == 0 else {})
                if url.path == "/view":
                    if query.get("type") not in ("output", "temp"):
                        return self.reply(404, {})
                    return self.reply(200, f"{query['type']} data of {query['subfolder']}/{query['filename']}".encode(), raw=True)
                return self.reply(404, {})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if self.path == "/upload/image":
                    name = body.split(b'filename="')[1].split(b'"')[0].decode()
                    data = body.split(b"\r\n\r\n", 3)[-1].rsplit(b"\r\n--", 2)[0]
                    fake.uploads[name] = data
                    return self.reply(200, {"name": name, "subfolder": "", "type": "input"})
                if self.path == "/prompt":
                    msg = json.loads(body)
                    prompt = msg["prompt"]
                    fake.prompts.append(msg)
                    sampler = prompt["2"]["inputs"]
                    if sampler["cfg"] > 20:
                        errors = {"2": {"errors": [{"type": "value_bigger_than_max", "message": "Value bigger than max", "details": f"cfg {sampler['cfg']} > 20", "extra_info": {"input_name": "cfg"}}], "class_type": "FakeSampler", "dependent_outputs": ["3"]}}
                        return self.reply(400, {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": errors})
                    pid = f"p{len(fake.prompts)}"
                    if sampler["text"] == "boom":
                        fake.history[pid] = {"outputs": {}, "status": {"status_str": "error", "completed": False, "messages": [
                            ["execution_start", {"prompt_id": pid}],
                            ["execution_error", {"prompt_id": pid, "node_id": "2", "node_type": "FakeSampler", "exception_type": "InputError", "exception_message": "seed: the fake exploded"}],
                        ]}}
                    else:
                        fake.history[pid] = {"outputs": {
                            "3": {"images": [{"filename": f"{prompt['3']['inputs']['filename_prefix']}_00001.mp4", "subfolder": "video", "type": "output"}], "animated": [True]},
                            "9": {"images": [{"filename": "preview.png", "subfolder": "", "type": "temp"}]},
                            "10": {"text": ["PSNR  31.2\nSSIM  0.91"]},
                        }, "status": {"status_str": "success", "completed": True, "messages": []}}
                    return self.reply(200, {"prompt_id": pid, "number": 0, "node_errors": {}})
                return self.reply(404, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    with FakeComfy() as server:
        yield server


@pytest.fixture
def ui_file(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(UI))
    return path


def test_server_run_success(fake, ui_file, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run_main(["run", str(ui_file), "--server", fake.url, "--out", str(out_dir), "--set", "2.seed=77", "--set", "2.denoise=false"])
    assert code == errors.EXIT_OK, err
    sent = fake.prompts[-1]
    assert sent["prompt"]["2"]["inputs"]["seed"] == 77 and sent["prompt"]["2"]["inputs"]["denoise"] is False
    assert sent["prompt"]["2"]["inputs"]["images"] == ["1", 0] and sent["client_id"]
    # the sample clip the workflow names was uploaded, byte for byte
    assert fake.uploads["vek_sample.mp4"] == sample_clip_path("vek_sample.mp4").read_bytes()
    # outputs fetched through /view into --out, previews into --out/previews, texts printed
    saved = out_dir / "video" / "vek_00001.mp4"
    assert saved.read_bytes() == b"output data of video/vek_00001.mp4"
    preview = out_dir / "previews" / "preview.png"
    assert preview.read_bytes() == b"temp data of /preview.png"
    assert str(saved) in out and str(preview) in out and "done in" in out
    assert "node 10 (?) shows:\n  PSNR  31.2\n  SSIM  0.91\n" in out
    assert fake.polls >= 2  # no websocket on the fake server: the runner polled /history


def test_server_run_validation_error(fake, ui_file, tmp_path):
    code, _, err = run_main(["run", str(ui_file), "--server", fake.url, "--out", str(tmp_path), "--set", "2.cfg=25", "--no-websocket"])
    assert code == errors.EXIT_FAILED
    assert "failed validation" in err and "node 2 (FakeSampler): Value bigger than max: cfg 25.0 > 20" in err


def test_server_run_execution_error(fake, ui_file, tmp_path):
    code, out, err = run_main(["run", str(ui_file), "--server", fake.url, "--out", str(tmp_path), "--set", "2.text=boom", "--no-websocket"])
    assert code == errors.EXIT_FAILED
    assert "error: node 2 (FakeSampler) failed: InputError: seed: the fake exploded" in err
    assert "outputs" not in out


def test_server_set_errors_use_the_servers_object_info(fake, ui_file, tmp_path):
    code, _, err = run_main(["run", str(ui_file), "--server", fake.url, "--set", "2.sampler_name=heun"])
    assert code == errors.EXIT_USAGE and "--set 2.sampler_name (node 2, FakeSampler): 'heun' is not one of the choices: euler, dpmpp_2m, ddim" in err
    code, _, err = run_main(["run", str(ui_file), "--server", fake.url, "--set", "2.cfg=31"])
    assert code == errors.EXIT_USAGE and "outside its range [0.0, 30.0]" in err
    assert fake.prompts == []  # nothing was queued


def test_print_api(fake, ui_file):
    code, out, _ = run_main(["run", str(ui_file), "--server", fake.url, "--print-api", "--set", "2.seed=3"])
    assert code == errors.EXIT_OK
    prompt = json.loads(out)
    assert prompt["2"]["inputs"]["seed"] == 3 and prompt["3"]["class_type"] == "FakeSave" and fake.prompts == []


def test_tiny_substitution_and_missing_models(fake, tmp_path):
    api = {**API, "8": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "real.safetensors"}}}
    wf = tmp_path / "t.json"
    wf.write_text(json.dumps(api))
    code, out, err = run_main(["run", str(wf), "--server", fake.url, "--tiny", "--print-api"])
    assert code == errors.EXIT_OK, err
    prompt = json.loads(out)
    assert prompt["8"]["inputs"]["ckpt_name"] == "vek-tiny-sd15.safetensors" and api["8"]["inputs"]["ckpt_name"] == "real.safetensors"
    assert "tiny model: 8 CheckpointLoaderSimple.ckpt_name: 'real.safetensors' -> 'vek-tiny-sd15.safetensors'" in err
    without = {"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["real.safetensors"], {}]}}}}
    assert tiny.missing_choices(prompt, without) == ["node 8 ckpt_name=vek-tiny-sd15.safetensors"]
    assert tiny.missing_choices(prompt, OBJECT_INFO) == []


def test_max_steps(fake, ui_file):
    code, out, err = run_main(["run", str(ui_file), "--server", fake.url, "--print-api", "--set", "2.seed=3", "--max-steps", "1"])
    assert code == errors.EXIT_OK, err
    assert json.loads(out)["2"]["inputs"]["steps"] == 1 and "max steps: 2 FakeSampler.steps: 2 -> 1" in err
    code, _, err = run_main(["run", str(ui_file), "--server", fake.url, "--print-api", "--max-steps", "0"])
    assert code == errors.EXIT_USAGE and "--max-steps must be at least 1" in err


def test_server_interrupt_on_timeout(fake, ui_file, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(server.ServerClient, "history", lambda self, pid: None)  # never finishes
    monkeypatch.setattr(server.ServerClient, "interrupt", lambda self: calls.append("interrupt"))
    code, _, err = run_main(["run", str(ui_file), "--server", fake.url, "--out", str(tmp_path), "--timeout", "0.5"])
    assert code == errors.EXIT_FAILED and "timed out" in err and calls == ["interrupt"]


def test_doctor_on_a_server(fake, tmp_path):
    folder = tmp_path / "wfs"
    folder.mkdir()
    (folder / "ok.json").write_text(json.dumps(UI))
    bad = json.loads(json.dumps(API))
    bad["2"]["inputs"]["text"] = "boom"
    (folder / "boom.json").write_text(json.dumps(bad))
    code, out, err = run_main(["doctor", "--server", fake.url, "--workflows", str(folder), "--out", str(tmp_path / "o")])
    assert code == errors.EXIT_FAILED
    lines = out.splitlines()
    assert lines[0] == f"ComfyUI server: {fake.url}"
    assert any(line.startswith("ok.json") and " pass " in line for line in lines)
    assert any(line.startswith("boom.json") and " FAIL " in line and "node 2 (FakeSampler) failed" in line for line in lines)
    assert len(fake.prompts) == 2 and "doctor: ok.json: pass" in err


def test_server_tiny_choice_for_loaders_registered_in_the_server():
    info = {"VEK_Loader": {"input": {"required": {"ckpt_name": [["vek-tiny-x.safetensors", "other.pt"], {}]}}},
            "NoTiny": {"input": {"required": {"name": ["COMBO", {"options": ["a.pt"]}]}}}}
    prompt = {"1": {"class_type": "VEK_Loader", "inputs": {"ckpt_name": "venhancer_v2.pt"}},
              "2": {"class_type": "NoTiny", "inputs": {"name": "b.pt"}},
              "3": {"class_type": "VEK_Loader", "inputs": {"ckpt_name": "other.pt"}}}
    out, changes = tiny.server_tiny_choices(prompt, info)
    assert out["1"]["inputs"]["ckpt_name"] == "vek-tiny-x.safetensors" and prompt["1"]["inputs"]["ckpt_name"] == "venhancer_v2.pt"
    assert out["3"]["inputs"]["ckpt_name"] == "other.pt"  # a file the server has stays
    assert changes == ["1 VEK_Loader.ckpt_name: 'venhancer_v2.pt' -> 'vek-tiny-x.safetensors' (the server's tiny model)"]
    assert tiny.missing_choices(out, info) == ["node 2 name=b.pt"]


class FakeBackend(backend.Backend):
    """A stand-in for the in-process host, to test doctor's table and exit code."""

    def __init__(self, fail=("b.json",), failures=None):
        self.fail, self.failures, self.ran = fail, failures or {}, []

    def import_failures(self):
        return self.failures

    def object_info(self):
        return {**OBJECT_INFO, "VEK_Fake": OBJECT_INFO["FakeSave"]}

    def prepare(self, prompt):
        return prompt

    def place_sample_clips(self, prompt):
        pass

    def run(self, prompt, progress, out_dir):
        name = prompt["3"]["inputs"]["filename_prefix"]
        self.ran.append(name)
        if f"{name}.json" in self.fail:
            error = results.NodeError("2", "FakeSampler", "bad\nsecond line", "RuntimeError")
            return results.RunResult(False, "p", prompt, error=error, seconds=0.1)
        return results.RunResult(True, "p", prompt, files=[Path("x.mp4")], seconds=0.1)


def test_doctor_table_and_exit_code(tmp_path):
    for name in ("a", "b"):
        api = json.loads(json.dumps(API))
        api["3"]["inputs"]["filename_prefix"] = name
        (tmp_path / f"{name}.json").write_text(json.dumps(api))
    args = cli.build_parser().parse_args(["doctor", "--workflows", str(tmp_path), "--out", str(tmp_path / "o")])
    out = io.StringIO()
    backend = FakeBackend()
    assert cli.cmd_doctor(args, out=out, backend=backend) == errors.EXIT_FAILED
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[1].split() == ["workflow", "status", "seconds", "message"]
    assert any(line.startswith("a.json") and " pass " in line and "1 file(s)" in line for line in lines)
    assert any(line.startswith("b.json") and " FAIL " in line and "RuntimeError: bad | second line" in line for line in lines)
    assert "1 nodes registered" in text and text.rstrip().endswith("doctor: FAILED")
    out = io.StringIO()
    assert cli.cmd_doctor(args, out=out, backend=FakeBackend(fail=())) == errors.EXIT_OK
    assert out.getvalue().rstrip().endswith("all checks passed")
    out = io.StringIO()
    assert cli.cmd_doctor(args, out=out, backend=FakeBackend(fail=(), failures={"video_enhance_kit": "ImportError: x"})) == errors.EXIT_FAILED
    assert "import failed: video_enhance_kit: ImportError: x" in out.getvalue()
