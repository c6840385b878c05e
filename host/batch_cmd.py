"""``python -m video_enhance_kit batch WORKFLOW --inputs PATH...``: the driver of a batch on Ray.

Plans the jobs (one per input, or one per segment with ``--segment-frames``), skips what ``--resume`` finds
done, starts the pool (:mod:`.batch`), writes each job's outputs under ``--out/INPUT_NAME/`` exactly once as
its outcome arrives (or moves what the worker wrote there with ``--shared-out``), stitches segmented inputs
(:func:`.video_io.stitch_results`) and appends one manifest line per finished job (:mod:`.manifest`).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from ..utils.checks import InputError
from ..utils.segments import FrameRule, plan_segments
from .batch_jobs import (
    InputNode,
    Job,
    expand_inputs,
    find_input_node,
    frame_rule,
    output_names,
)
from .batch_worker import ComfyRunnerFactory, Outcome
from .errors import EXIT_FAILED, EXIT_OK, UsageError
from .manifest import MANIFEST_NAME, Manifest, completed, file_entry, settings_key
from .video_io import VIDEO_SUFFIXES, check_video, probe, split_segments, stitch_results

PARTIAL, SEGMENTS = ".partial", ".segments"


def batch_settings(args, node: InputNode) -> dict:
    """Everything besides the workflow that changes what a job computes (the resume key's settings)."""
    return {"input_node": f"{node.node_id}.{node.name}", "overrides": list(args.overrides), "tiny": args.tiny,
            "max_steps": args.max_steps, "segment_frames": args.segment_frames, "overlap": args.overlap}


def _write(target: Path, blob: bytes) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(blob)
    os.replace(tmp, target)
    return target


def _inside(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UsageError(f"an output named {rel!r} would land outside {root}")
    return target


class BatchRun:
    """The driver's state: jobs, their outcomes, the outputs written and the manifest."""

    def __init__(self, args, node: InputNode, key: str, err):
        self.args, self.node, self.key, self.err = args, node, key, err
        self.out = Path(args.out).resolve()
        self.manifest = Manifest(self.out / MANIFEST_NAME)
        self.prompt_ref = None
        self.plans: dict[Path, tuple[list, list[Job], dict]] = {}
        self.failed: list[str] = []
        self.done: list[str] = []
        self.bar = None
        self.rule = FrameRule()

    # -- planning ----------------------------------------------------------------------------

    def plan(self, inputs: list[Path]) -> list[Job]:
        """Jobs for ``inputs`` (each checked to be a video); segmented inputs split into clips now."""
        names, jobs = output_names(inputs), []
        for i, path in enumerate(inputs):
            if not self.args.segment_frames:
                check_video(path)
                jobs.append(Job(f"j{i:03d}", path, names[path], source=path))
                continue
            jobs += self._segment_jobs(f"j{i:03d}", path, names[path])
        return jobs

    def _segment_jobs(self, job_id: str, path: Path, name: str) -> list[Job]:
        info = probe(path)
        try:
            plan = plan_segments(info.frames, self.args.segment_frames, self.args.overlap, self.rule)
        except InputError as e:
            raise UsageError(f"--segment-frames / --overlap: {e}") from None
        if len(plan) == 1:
            return [Job(job_id, path, name, source=path)]
        clips = split_segments(path, plan, self.out / SEGMENTS / job_id)
        jobs = [Job(f"{job_id}s{k:02d}", path, name, (k, s.start, s.end), clip) for k, (s, clip) in
                enumerate(zip(plan, clips, strict=True))]
        self.plans[path] = (plan, jobs, {"audio": info.has_audio, "results": {}, "seconds": 0.0})
        return jobs

    # -- sending and receiving ---------------------------------------------------------------

    def submit(self, actor, job: Job):
        shared = str(self._partial(job)) if self.args.shared_out else None
        return actor.run.remote(job.id, job.label, self.prompt_ref, self.node, job.file_name,
                                job.source.read_bytes(), shared)

    def _partial(self, job: Job) -> Path:
        return self.out / PARTIAL / f"{job.id}-a{job.attempts}"

    def _files(self, job: Job, outcome: Outcome) -> dict[str, bytes]:
        if not outcome.shared:
            return outcome.files
        folder = self._partial(job)
        files = {rel: (folder / rel).read_bytes() for rel in outcome.shared}
        shutil.rmtree(folder, ignore_errors=True)
        return files

    def _place(self, job: Job, outcome: Outcome) -> list[Path]:
        """The job's outputs under --out/NAME/: moved from the shared folder, or written from the bytes."""
        root = self.out / job.name
        if not outcome.shared:
            return [_write(_inside(root, rel), blob) for rel, blob in sorted(outcome.files.items())]
        folder, placed = self._partial(job), []
        for rel in sorted(outcome.shared):
            target = _inside(root, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder / rel, target)
            placed.append(target)
        shutil.rmtree(folder, ignore_errors=True)
        return placed

    def accept(self, job: Job, outcome: Outcome) -> None:
        """Take a job's outcome (once): place outputs, append its manifest line, stitch when segments are in."""
        if job.segment is not None:
            self._accept_segment(job, outcome)
            return
        outputs = [] if outcome.error else self._place(job, outcome)
        self._finish(job, outcome.seconds, outputs, outcome.error, outcome.worker)

    def _accept_segment(self, job: Job, outcome: Outcome) -> None:
        plan, jobs, state = self.plans[job.input]
        state["results"][job.segment[0]] = (self._files(job, outcome) if not outcome.error else None, outcome.error)
        state["seconds"] += outcome.seconds
        self._record(job, "failed" if outcome.error else "done", outcome.seconds, [], outcome.error, outcome.worker)
        if job.source is not None:
            job.source.unlink(missing_ok=True)
        if len(state["results"]) == len(plan):
            self._stitch(job, plan, state)

    def _stitch(self, job: Job, plan: list, state: dict) -> None:
        results = [state["results"][k] for k in range(len(plan))]
        errors = [(k, e) for k, (_, e) in enumerate(results) if e]
        if errors:
            k, e = errors[0]
            error = dict(e, message=f"segment {k} ({plan[k].start}-{plan[k].end}): {e['message']}")
            self._finish(job, state["seconds"], [], error, "-")
            return
        files = [f for f, _ in results]
        videos = [rel for rel in files[0] if Path(rel).suffix.lower() in VIDEO_SUFFIXES and all(rel in f for f in files)]
        if not videos:
            error = {"node_id": None, "node_type": None, "type": "NoVideo", "message": "the segments' results hold "
                     "no video to stitch: segmenting needs a workflow that saves a video (e.g. SaveVideo)"}
            self._finish(job, state["seconds"], [], error, "-")
            return
        outputs = self._stitched_outputs(job, plan, files, videos, state["audio"])
        self._finish(job, state["seconds"], outputs, None, "-")

    def _stitched_outputs(self, job: Job, plan: list, files: list[dict], videos: list[str], audio: bool) -> list[Path]:
        root = self.out / job.name
        outputs = []
        for rel in videos:
            target = _inside(root, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            stitch_results([f[rel] for f in files], plan, target, job.input if audio else None)
            outputs.append(target)
        for k, f in enumerate(files):
            outputs += [_write(_inside(root, f"segments/{k:03d}/{rel}"), blob) for rel, blob in sorted(f.items())
                        if rel not in videos]
        return outputs

    # -- the manifest ------------------------------------------------------------------------

    def _record(self, job: Job, status: str, seconds: float, outputs: list[Path], error: dict | None,
                worker: str) -> None:
        self.manifest.append({
            "input": str(job.input), "input_size": job.input.stat().st_size, "name": job.name, "status": status,
            "seconds": round(seconds, 3), "outputs": [file_entry(p, self.out) for p in outputs], "error": error,
            "settings": self.key, "attempts": job.attempts, "worker": worker,
            "segment": list(job.segment) if job.segment else None})

    def _finish(self, job: Job, seconds: float, outputs: list[Path], error: dict | None, worker: str) -> None:
        whole = Job(job.id.split("s")[0], job.input, job.name, attempts=job.attempts)
        self._record(whole, "failed" if error else "done", seconds, outputs, error, worker)
        (self.failed if error else self.done).append(job.name)
        if self.bar is not None:
            self.bar.done += 1
            self.bar.failed += bool(error)
            self.bar.note(f"{job.name}: failed: {error['message']}" if error else
                          f"{job.name}: done in {seconds:.1f} s, {len(outputs)} file(s) in {self.out / job.name}")

    def cleanup(self) -> None:
        for folder in (PARTIAL, SEGMENTS):
            shutil.rmtree(self.out / folder, ignore_errors=True)


def _todo(args, run: BatchRun, inputs: list[Path], err) -> list[Path]:
    if not args.resume:
        return inputs
    done = completed(run.manifest.records(), run.out, run.key)
    skipped = [p for p in inputs if str(p) in done]
    if skipped:
        err.write(f"resume: {len(skipped)} input(s) already done with these settings: "
                  f"{', '.join(p.name for p in skipped)}\n")
    return [p for p in inputs if str(p) not in done]


def cmd_batch(args, workflow: dict, out=sys.stdout, err=sys.stderr, factory=None, stats: dict | None = None) -> int:
    """Run the batch; 0 when every job is done, 1 when one failed, 130 when interrupted.

    ``factory`` builds each worker's runner (default :class:`ComfyRunnerFactory`); ``stats`` (a dict) receives
    ``seconds`` (from the pool's start), ``startup_s`` (per worker), ``done`` and ``failed``.
    """
    from .batch import (
        BatchBar,
        Pool,
        ProgressBoard,
        import_ray,
        run_jobs,
        start_ray,
        worker_resources,
    )

    node = find_input_node(workflow, args.input_node)
    if args.retries < 0:
        raise UsageError(f"--retries {args.retries}: use 0 or more")
    run = BatchRun(args, node, settings_key(workflow, batch_settings(args, node)), err)
    run.rule = frame_rule(workflow)
    todo = _todo(args, run, expand_inputs(args.inputs), err)
    if not todo:
        out.write("batch: nothing to do\n")
        return EXIT_OK
    jobs = run.plan(todo)
    ray = import_ray()
    owned = not ray.is_initialized()
    start_ray(args.ray, args.verbose, timeout=args.connect_timeout)
    t0, interrupted, pool = time.perf_counter(), False, None
    try:
        n, resources = worker_resources(ray, args.workers)
        factory = factory or ComfyRunnerFactory(args.comfyui, args.tiny, args.max_steps,
                                                None if resources["num_gpus"] else resources["num_cpus"], args.verbose)
        board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        pool = Pool(ray, factory, resources, board)
        pool.start(n)
        run.prompt_ref = ray.put(_prepared(ray, pool, workflow, args.overrides))
        run.bar = BatchBar(len(todo), err, quiet=args.quiet)
        run_jobs(pool, jobs, run.submit, run.accept, args.retries, run.bar)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pool is not None:
            pool.shutdown()
        if owned:
            ray.shutdown()
        run.cleanup()
    seconds = time.perf_counter() - t0
    if stats is not None:
        stats.update(seconds=seconds, startup_s=[i["startup_s"] for i in pool.info.values()] if pool else [],
                     done=len(run.done), failed=len(run.failed))
    return _summary(run, pool, len(todo), seconds, interrupted, out)


def _prepared(ray, pool, workflow: dict, overrides: list[str]) -> dict:
    """The API prompt, converted (and ``--set`` applied) by a worker: the driver needs no ComfyUI."""
    first = next(iter(pool.actors.values()))
    try:
        return ray.get(first.prepare.remote(workflow, list(overrides)))
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else e
        if isinstance(cause, UsageError):
            raise UsageError(str(cause)) from None
        raise


def _summary(run: BatchRun, pool, total: int, seconds: float, interrupted: bool, out) -> int:
    starts = [i["startup_s"] for i in (pool.info.values() if pool else [])]
    startup = f", worker start-up {sum(starts) / len(starts):.1f} s each" if starts else ""
    out.write(f"batch: {len(run.done)} done, {len(run.failed)} failed of {total} in {seconds:.1f} s "
              f"on {len(starts)} worker(s){startup}; manifest {run.manifest.path}\n")
    if interrupted:
        out.write(f"interrupted: {total - len(run.done) - len(run.failed)} input(s) not finished; "
                  "the manifest holds the finished ones (run again with --resume)\n")
        return 130
    return EXIT_FAILED if run.failed else EXIT_OK


__all__ = ["BatchRun", "batch_settings", "cmd_batch"]
