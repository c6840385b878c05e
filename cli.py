"""Headless runner: ``python -m video_enhance_kit run|doctor``.

``run WORKFLOW.json`` runs a UI-format (graph editor) or API-format workflow

- in-process (default): ComfyUI is located (``--comfyui PATH``, ``COMFYUI_PATH``, or the pack sitting
  in ``ComfyUI/custom_nodes``) and driven through :mod:`video_enhance_kit.host`;
- on a running server (``--server http://127.0.0.1:8188``): GET /object_info, POST /prompt, progress
  over the websocket (or by polling /history), outputs fetched through /view into ``--out``.

``--set NODE_ID.INPUT=VALUE`` overrides an input; the value is coerced by the input's declared type in
/object_info (INT, FLOAT, BOOLEAN, STRING, COMBO). ``doctor`` checks an installation: finds ComfyUI,
loads the pack, runs every example workflow with tiny models and prints a table.

This module holds the arguments and the commands only; everything else is in the host package, which
imports nothing from ComfyUI until an in-process host is started, so ``--help``, argument parsing and
server mode work without it.

Exit codes: 0 success, 1 the workflow failed (validation or execution; the message names the node),
2 usage error (bad arguments, unreadable workflow, bad ``--set``), 3 environment error (ComfyUI not
found or cannot start, server unreachable, comfy-cli missing for a UI-format workflow).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from .host.backend import Backend, InProcessBackend
from .host.errors import (
    EXIT_ENV,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    HostError,
    RunnerError,
    UsageError,
)
from .host.locate import (
    PACK_ROOT,
    comfyui_version,
    describe_missing_comfyui,
    find_comfyui,
)
from .host.overrides import Override, apply_overrides
from .host.progress import ProgressPrinter
from .host.prompt import cap_steps, to_api
from .host.results import text_outputs
from .host.server import ServerBackend
from .nodes._registry import PREFIX

__all__ = ["EXIT_ENV", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "cmd_doctor", "cmd_run", "main"]


def load_workflow(path: str | Path) -> dict:
    """Read a workflow JSON file (UI or API format)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"workflow file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read workflow file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"workflow file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"workflow file {path} holds a JSON {type(data).__name__}, expected an object (UI or API format)")
    return data


def locate_comfyui(explicit: str | None = None) -> Path:
    """The ComfyUI root: ``--comfyui``, else ``COMFYUI_PATH``, else the folder whose custom_nodes holds this pack."""
    root = find_comfyui(explicit)
    if root is None:
        raise HostError(describe_missing_comfyui(explicit) + " (or run on a server with --server http://127.0.0.1:8188)")
    return root


def configure_logging(verbose: bool, err=None) -> None:
    """ComfyUI logs start-up warnings (e.g. its audio nodes without torchaudio) and node tracebacks
    through the root logger: show them only with ``--verbose`` (the runner prints its own one-line
    error; a handler on the root logger keeps logging's last-resort printer quiet, and records still
    reach the host's collectors)."""
    root = logging.getLogger()
    if any(getattr(h, "_vek_cli", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(err or sys.stderr)
    handler.setLevel(logging.INFO if verbose else logging.CRITICAL)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._vek_cli = True
    root.addHandler(handler)
    if verbose:
        root.setLevel(logging.INFO)


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


def _add_run_parser(sub) -> None:
    run = sub.add_parser("run", help="run a workflow (UI or API format) in-process or on a server",
                         description="Run a UI-format or API-format workflow in-process (default) or on a running ComfyUI server.")
    run.add_argument("workflow", type=Path, help="workflow JSON file (UI format as saved by ComfyUI, or API format)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE_ID.INPUT=VALUE",
                     help="override an input, e.g. --set 3.seed=42 (repeatable); the value is coerced by the input's type")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--comfyui", metavar="PATH", help="ComfyUI folder for in-process runs (default: COMFYUI_PATH, or the custom_nodes this pack sits in)")
    where.add_argument("--server", metavar="URL", help="run on a running ComfyUI server instead, e.g. http://127.0.0.1:8188")
    run.add_argument("--out", type=Path, default=Path("out"), help="folder for the outputs (default: ./out)")
    run.add_argument("--tiny", action="store_true", help="substitute tiny random-weight models for the model files the workflow names (a smoke test without downloads; with --server, the server must list them)")
    run.add_argument("--max-steps", type=int, default=None, metavar="N", help="cap every sampler's steps at N (a quick preview or smoke test)")
    run.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (server mode)")
    run.add_argument("--no-websocket", action="store_true", help="server mode: poll /history instead of following the websocket")
    run.add_argument("--print-api", action="store_true", help="print the API-format prompt (after --set) and exit")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    run.add_argument("-v", "--verbose", action="store_true", help="show ComfyUI's log (start-up warnings, node messages)")


def _add_doctor_parser(sub) -> None:
    doctor = sub.add_parser("doctor", help="check an installation: find ComfyUI, load the pack, run every example workflow with tiny models",
                            description="Find ComfyUI, load the pack, run every example workflow with tiny models, print a table.")
    where = doctor.add_mutually_exclusive_group()
    where.add_argument("--comfyui", metavar="PATH", help="ComfyUI folder (default: COMFYUI_PATH, or the custom_nodes this pack sits in)")
    where.add_argument("--server", metavar="URL", help="check a running server instead (through POST /prompt); it must list the tiny models (see README)")
    doctor.add_argument("--timeout", type=float, default=None, help="server mode: give up on a workflow after this many seconds")
    doctor.add_argument("--workflows", type=Path, default=PACK_ROOT / "example_workflows", help="folder of workflows to run (default: the pack's example_workflows)")
    doctor.add_argument("--out", type=Path, default=None, help="folder for the outputs (default: a temporary folder)")
    doctor.add_argument("--max-steps", type=int, default=3, metavar="N", help="cap every sampler's steps at N (default 3, as the host tests do: every node still runs)")
    doctor.add_argument("-v", "--verbose", action="store_true", help="show ComfyUI's log")


def _add_batch_parser(sub) -> None:
    batch = sub.add_parser("batch", help="run a workflow on many videos (or a long one in segments) on a Ray pool",
                           description="Run a workflow once per input video on a pool of Ray actors, each holding one "
                                       "in-process ComfyUI (needs pip install \"video-enhance-kit[ray]\").")
    batch.add_argument("workflow", type=Path, help="workflow JSON file (UI or API format) with one video-loading node")
    batch.add_argument("--inputs", nargs="+", type=Path, required=True, metavar="PATH", help="input videos or folders of videos")
    batch.add_argument("--ray", nargs="?", default=None, const=None, metavar="ADDRESS", help="join the Ray cluster at ADDRESS (e.g. 10.0.0.5:6379, or auto); without an address a local instance starts")
    batch.add_argument("--workers", type=int, default=None, metavar="N", help="number of workers (default: one per GPU, else 1 on CPU)")
    batch.add_argument("--input-node", default=None, metavar="ID.INPUT", help="the input that takes the video (default: the workflow's LoadVideo / VHS_LoadVideo* node)")
    batch.add_argument("--out", type=Path, default=Path("out"), help="outputs go to OUT/INPUT_NAME/, the manifest to OUT/manifest.jsonl (default: ./out)")
    batch.add_argument("--shared-out", action="store_true", help="workers write outputs into --out themselves (a folder every machine of the cluster sees at the same path)")
    batch.add_argument("--resume", action="store_true", help="skip inputs the manifest shows done with the same workflow and settings")
    batch.add_argument("--retries", type=int, default=1, metavar="N", help="times a job is sent again when its worker dies (default 1)")
    batch.add_argument("--segment-frames", type=int, default=None, metavar="N", help="split each input into segments of N frames (4k+1 for Wan workflows), stitched back with a cross-fade")
    batch.add_argument("--overlap", type=int, default=8, metavar="K", help="frames neighbouring segments share (default 8), cross-faded linearly")
    batch.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE_ID.INPUT=VALUE", help="override an input (repeatable), as for run")
    batch.add_argument("--comfyui", metavar="PATH", help="ComfyUI folder on the workers (default: COMFYUI_PATH, or the custom_nodes this pack sits in)")
    batch.add_argument("--tiny", action="store_true", help="substitute tiny random-weight models (a smoke test without downloads)")
    batch.add_argument("--max-steps", type=int, default=None, metavar="N", help="cap every sampler's steps at N")
    batch.add_argument("--connect-timeout", type=float, default=10.0, metavar="S", help="give up on a cluster address that does not answer within S seconds (default 10)")
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    batch.add_argument("-v", "--verbose", action="store_true", help="show Ray's and ComfyUI's logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m video_enhance_kit",
        description="Run ComfyUI workflows headless and check a video-enhance-kit installation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,doctor,batch}")
    _add_run_parser(sub)
    _add_doctor_parser(sub)
    _add_batch_parser(sub)
    return parser


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------


def _run_backend(args, err) -> Backend:
    if args.server:
        return ServerBackend(args.server, use_websocket=not args.no_websocket, timeout=args.timeout, tiny=args.tiny)
    configure_logging(args.verbose, err)
    return InProcessBackend(locate_comfyui(args.comfyui), tiny=args.tiny, err=err, verbose=args.verbose)


def _run_prompt(args, backend: Backend, workflow: dict, overrides: list[Override], err) -> dict:
    """The prompt to run: converted, ``--set`` applied, prepared by the backend, steps capped."""
    object_info = backend.object_info()
    prompt = backend.prepare(apply_overrides(to_api(workflow, object_info), overrides, object_info))
    for change in backend.substitutions:
        err.write(f"tiny model: {change}\n")
    if args.max_steps is not None:
        prompt, changes = cap_steps(prompt, args.max_steps)
        for change in changes:
            err.write(f"max steps: {change}\n")
    return prompt


def _print_result(result, prompt: dict, out) -> None:
    out.write(f"done in {result.seconds:.1f} s (prompt {result.prompt_id})\n")
    shown: dict[str, str] = {}
    for node_id, text in text_outputs(result.outputs):
        label = f"node {node_id} ({prompt.get(node_id, {}).get('class_type', '?')})"
        if text in shown:
            out.write(f"{label} shows the same text as {shown[text]}\n")
            continue
        shown[text] = label
        out.write(f"{label} shows:\n" + "".join(f"  {line}\n" for line in text.rstrip().splitlines()))
    if result.files:
        out.write("outputs:\n" + "".join(f"  {p}\n" for p in result.files))
    else:
        out.write("the workflow wrote no output files\n")


def cmd_run(args, out=sys.stdout, err=sys.stderr, backend: Backend | None = None) -> int:
    workflow = load_workflow(args.workflow)
    overrides = [Override.parse(s) for s in args.overrides]
    backend = backend or _run_backend(args, err)
    for name, message in backend.import_failures().items():
        err.write(f"warning: {name} failed to import: {message}\n")
    prompt = _run_prompt(args, backend, workflow, overrides, err)
    if args.print_api:
        out.write(json.dumps(prompt, indent=2) + "\n")
        return EXIT_OK
    backend.place_sample_clips(prompt)
    args.out.mkdir(parents=True, exist_ok=True)
    result = backend.run(prompt, ProgressPrinter(prompt, stream=err, quiet=args.quiet), args.out)
    if not result.success:
        hint = "" if args.server or args.verbose else " (run with -v for ComfyUI's log)"
        err.write(f"error: {result.error_text}{hint}\n")
        return EXIT_FAILED
    _print_result(result, prompt, out)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------------------------


def format_table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]

    def line(r) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def _doctor_backend(args, out, err) -> Backend:
    if getattr(args, "server", None):
        out.write(f"ComfyUI server: {args.server}\n")
        return ServerBackend(args.server, timeout=args.timeout, tiny=True)
    comfyui = locate_comfyui(args.comfyui)
    out.write(f"ComfyUI: {comfyui} ({comfyui_version(comfyui)})\n")
    configure_logging(args.verbose, err)
    return InProcessBackend(comfyui, tiny=True, err=err, verbose=args.verbose)


def _report_pack(backend: Backend, object_info: dict, out) -> bool:
    """Print what loaded; True if the pack is broken (an import failure, or no node)."""
    failures = backend.import_failures()
    ours = sorted(k for k in object_info if k.startswith(PREFIX))
    builtin = backend.builtin_failures()
    if builtin:
        out.write(f"note: ComfyUI's own {', '.join(builtin)} did not import (not this pack; e.g. no torchaudio)\n")
    for name, message in failures.items():
        out.write(f"import failed: {name}: {message}\n")
    out.write(f"video-enhance-kit: {len(ours)} nodes registered\n")
    return bool(failures) or not ours


def _doctor_one(path: Path, args, backend: Backend, object_info: dict, out_dir: Path) -> tuple[str, str]:
    try:
        prompt = backend.prepare(to_api(load_workflow(path), object_info))
        if args.max_steps is not None:
            prompt = cap_steps(prompt, args.max_steps)[0]
        backend.place_sample_clips(prompt)
        result = backend.run(prompt, ProgressPrinter(prompt, quiet=True), out_dir)
        return ("pass", f"{len(result.files)} file(s)") if result.success else ("FAIL", result.error_text)
    except RunnerError as e:
        return "FAIL", str(e)
    except Exception as e:  # noqa: BLE001  doctor reports every workflow, whatever breaks
        return "FAIL", f"{type(e).__name__}: {e}"


def cmd_doctor(args, out=sys.stdout, err=sys.stderr, backend: Backend | None = None) -> int:
    backend = backend or _doctor_backend(args, out, err)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="vek_doctor_"))
    object_info = backend.object_info()
    failed = _report_pack(backend, object_info, out)
    rows, workflows = [], sorted(Path(args.workflows).glob("*.json"))
    if not workflows:
        out.write(f"no workflows in {args.workflows}\n")
        failed = True
    for path in workflows:
        err.write(f"doctor: running {path.name} ...\n")
        err.flush()
        start = time.monotonic()
        status, message = _doctor_one(path, args, backend, object_info, out_dir)
        failed |= status != "pass"
        seconds = time.monotonic() - start
        err.write(f"doctor: {path.name}: {status} ({seconds:.1f} s)\n")
        rows.append((path.name, status, f"{seconds:.1f}", message.replace("\n", " | ")))
    if rows:
        out.write(format_table(rows, ("workflow", "status", "seconds", "message")) + "\n")
    out.write("doctor: " + ("FAILED" if failed else "all checks passed") + "\n")
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        if args.command == "batch":
            from .host.batch_cmd import cmd_batch

            return cmd_batch(args, load_workflow(args.workflow), out, err)
        return cmd_run(args, out, err) if args.command == "run" else cmd_doctor(args, out, err)
    except RunnerError as e:
        err.write(f"error: {e}\n")
        return e.code
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
