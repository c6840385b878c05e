"""GPU check: time ratios, seconds per call and peak memory of full-size random-weight networks in fp16 on one CUDA GPU.

Measures, each inside this one process (timings and memory do not depend on weight values):

- ``nc_sdedit``: the SD1.5 UNet (ComfyUI's class, full size: 320 channels, mult 1-2-4-4, 2 res blocks,
  context 768) at 64x64 latents, 16 frames, CFG 7.5: NC-SDEdit (the pack's Noise Calibration sampler
  wrapper, N = 3) against plain SDEdit, both DDIM at 10 steps of denoise 0.6 through ComfyUI's
  ``CFGGuider.sample`` (what SamplerCustomAdvanced runs): time ratio (theory (10 + 3) / 10) and peak memory.
- ``slr_attention``: the same UNet patched by the pack's SLR temporal attention (cross-neighbour and
  trajectory attention, trajectories from the start) against the unpatched UNet, 8 / 16 / 32 frames:
  time of the third sampling step (the first with all three trajectory candidates), its ratio, and the
  peak memory of the 3-step run.
- ``venhancer``: the pack's VEnhancer network (models/venhancer.py, default = official config, 2.0 B
  params) in fp16 at 720p output (latent 90x160), 32 and 64 frames, through the faithful sampler
  (samplers/venhancer.py, 32-frame windows with 50 % overlap, CFG 7.5, 2 normal-mode steps): seconds per
  model call and the run's peak memory above the weights.

It prints one table and writes it as JSON (``--out DIR``: ``DIR/gpu_check.json`` and ``DIR/gpu_check.txt``,
rewritten after each part so a cut-short run still leaves its rows). Without CUDA it refuses with one line
and exit code 2, unless given ``--toy``, which runs the same code paths on CPU at toy sizes (one-level
SD1.5 UNet, 8x8 latents, 2-4 frames, 2 steps; a 2-level VEnhancer of width 32 with 4-frame windows).
Exit codes: 0 every part ran, 1 a part failed (its row says why), 2 no CUDA, 3 ComfyUI missing or unable to start.

Usage::

    python benchmarks/gpu_check.py [--comfyui PATH] [--out DIR] [--parts venhancer sd15] [--toy]
    python benchmarks/gpu_check.py --stage /path/to/ComfyUI   # prepare .comfyui/ and .whl/ for the GPU machine

ComfyUI is found as the pack's host finds it (``--comfyui``, else ``$COMFYUI_PATH``, else the ComfyUI whose
custom_nodes holds the pack); only the SD1.5 parts need it.

On the lent GPU machine, whose only inputs are this working tree (no ComfyUI, no downloads; its
python3 3.12 has torch 2.11 but not torchsde, av or kornia, which booting ComfyUI and the pack import):

1. Here, once: ``python benchmarks/gpu_check.py --stage /work/ComfyUI``. It copies ComfyUI's source
   (no models, tests, API nodes or tokenizer data: 3.6 MiB) into ``.comfyui/ComfyUI`` and downloads the
   wheels of torchsde, trampoline, av, kornia and kornia_rs for CPython 3.12 into ``.whl/`` (41.1 MiB),
   both git-ignored, and prints their sizes (``du -sh``: 4.7 M + 42 M + the 2.0 M tree; the limit is 64 MiB).
2. There, one ``run`` call with ``carry: [".comfyui", ".whl"]`` and ``timeout_s`` 480::

       python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \\
         && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 \\
         && python3 benchmarks/gpu_check.py --comfyui .comfyui/ComfyUI --out $OUT

   ``gpu_check.json`` and ``gpu_check.txt`` come back from ``$OUT``. More in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

REFUSAL = "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); run it on a CUDA machine, or pass --toy for the CPU toy run"
PARTS = ("venhancer", "sd15")
#: The keys of every row (raw numbers; None where a figure does not apply), in table order. The JSON rows may
#: carry more (``trajectory_calls_per_run`` of slr_attention; ``error`` of a part that failed).
ROW_KEYS = ("check", "case", "frames", "ours_s", "baseline_s", "ratio", "expected_ratio", "ours_peak_bytes",
            "baseline_peak_bytes", "calls", "s_per_call", "windows", "rounds", "finite")


@dataclass(frozen=True)
class Sizes:
    """Every size the check uses; :data:`TOY` shrinks them for the CPU run."""

    toy: bool = False
    latent: int = 64  # SD1.5 latent side (512 px)
    nc_frames: int = 16
    steps: int = 10  # SDEdit steps actually run
    iterations: int = 3  # Noise Calibration N
    denoise: float = 0.6
    cfg: float = 7.5
    slr_frames: tuple[int, ...] = (8, 16, 32)
    slr_steps: int = 3  # the last one is timed
    ve_frames: tuple[int, ...] = (32, 64)
    ve_latent: tuple[int, int] = (90, 160)  # 720 x 1280 output
    ve_chunk: int = 32
    ve_steps: int = 2  # normal-mode steps (2 model calls per window and step with CFG)
    repeats: int = 3
    warmup: int = 1


TOY = Sizes(toy=True, latent=8, nc_frames=2, steps=2, slr_frames=(2, 3, 4), ve_frames=(4, 8), ve_latent=(6, 8),
            ve_chunk=4, repeats=1, warmup=0)


def ensure_package() -> None:
    """Make ``video_enhance_kit`` importable from this working tree when the pack is not pip-installed."""
    if importlib.util.find_spec("video_enhance_kit") is not None:
        return
    link_dir = Path(tempfile.mkdtemp(prefix="vek-package-"))  # a folder holding video_enhance_kit -> this tree, on sys.path
    (link_dir / "video_enhance_kit").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(link_dir))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toy", action="store_true", help="toy sizes on CPU (the same code paths; for tests)")
    p.add_argument("--out", default=str(ROOT / "out" / "gpu_check"), help="folder for gpu_check.json / .txt")
    p.add_argument("--comfyui", default=None, help="ComfyUI root (default: $COMFYUI_PATH)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per comparison (default 3, toy 1)")
    p.add_argument("--steps", type=int, default=None, help="SDEdit steps of the NC comparison (default 10)")
    p.add_argument("--slr-frames", type=int, nargs="+", default=None)
    p.add_argument("--venhancer-frames", type=int, nargs="+", default=None)
    p.add_argument("--stage", metavar="COMFYUI", default=None, help="copy ComfyUI's source and the missing wheels for the GPU machine, then exit")
    return p.parse_args(argv)


def sizes_from(args) -> Sizes:
    sizes = TOY if args.toy else Sizes()
    changes = {"repeats": args.repeats, "steps": args.steps, "slr_frames": args.slr_frames and tuple(args.slr_frames),
               "ve_frames": args.venhancer_frames and tuple(args.venhancer_frames)}
    return replace(sizes, **{k: v for k, v in changes.items() if v})


# ---------------------------------------------------------------------------------------- output
def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if key.endswith("_bytes"):
        from _bench import format_bytes

        return format_bytes(value)
    if key in ("ours_s", "baseline_s", "s_per_call"):
        return f"{value:.4f}" if value < 1 else f"{value:.2f}"
    if key in ("ratio", "expected_ratio"):
        return f"{value:.3f}"
    return str(value)


HEADERS = {"ours_s": "ours s", "baseline_s": "baseline s", "expected_ratio": "expected", "ours_peak_bytes": "ours peak",
           "baseline_peak_bytes": "baseline peak", "s_per_call": "s/call"}


def table_text(rows: list[dict]) -> str:
    """The one table: a column per :data:`ROW_KEYS` entry (an ``error`` column when a part failed)."""
    import io

    from _bench import print_table

    keys = list(ROW_KEYS) + (["error"] if any(r.get("error") for r in rows) else [])
    cells = [{HEADERS.get(k, k): _fmt(k, r.get(k)) for k in keys} for r in rows]
    return print_table(cells, file=io.StringIO())


def environment(sizes: Sizes, device: str) -> dict:
    """What ran where: device name, torch and CUDA versions, dtype, sizes."""
    import torch

    name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    return {"device": device, "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "dtype": "float16" if device == "cuda" else "float32", "sizes": asdict(sizes)}


def write_results(out: Path, env: dict, rows: list[dict], errors: list[str]) -> str:
    """Write ``gpu_check.json`` and ``gpu_check.txt`` under ``out``; return the table text."""
    out.mkdir(parents=True, exist_ok=True)
    text = table_text(rows)
    payload = {**env, "columns": list(ROW_KEYS), "rows": rows, "errors": errors, "table": text}
    (out / "gpu_check.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (out / "gpu_check.txt").write_text(text + "\n")
    return text


# ------------------------------------------------------------------------------------------ main
def run_part(name: str, sizes: Sizes, device: str, args) -> list[dict]:
    """Rows of one part (``venhancer`` needs no ComfyUI; ``sd15`` boots it)."""
    if name == "venhancer":
        from _gpu_venhancer import venhancer_rows

        return venhancer_rows(sizes, device)
    from _gpu_sd15 import sd15_rows

    return sd15_rows(sizes, device, args.comfyui)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stage:
        from _gpu_stage import stage

        return stage(Path(args.stage), ROOT)
    import torch

    if not args.toy and not torch.cuda.is_available():
        print(REFUSAL, file=sys.stderr)
        return 2
    ensure_package()
    from _gpu_sd15 import EnvironmentProblem  # imports no ComfyUI

    sizes = sizes_from(args)
    device = "cpu" if args.toy else "cuda"
    if args.toy:
        torch.set_num_threads(1)
    env = environment(sizes, device)
    print(f"gpu_check on {env['device_name']} ({device}, {env['dtype']}), torch {env['torch']}", flush=True)
    rows: list[dict] = []
    errors: list[str] = []
    start = time.perf_counter()
    for name in args.parts:
        try:
            rows += [{**dict.fromkeys(ROW_KEYS), **row} for row in run_part(name, sizes, device, args)]
        except EnvironmentProblem as exc:
            print(f"gpu_check: {exc}", file=sys.stderr)
            write_results(Path(args.out), env, rows, errors + [str(exc)])
            return 3
        except Exception as exc:  # noqa: BLE001  one failed part must not cost the other's figures
            traceback.print_exc()
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            rows.append({**dict.fromkeys(ROW_KEYS), "check": name, "case": "failed", "error": f"{type(exc).__name__}: {exc}"[:200]})
        env["seconds"] = round(time.perf_counter() - start, 1)
        write_results(Path(args.out), env, rows, errors)
    print(write_results(Path(args.out), env, rows, errors))
    print(f"{env['seconds']} s; written to {Path(args.out) / 'gpu_check.json'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
