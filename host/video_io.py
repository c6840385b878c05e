"""Clips on disk and in memory for the batch runner: probe, split into segment files, decode, stitch, write.

PyAV (which ComfyUI ships) does the work; frames are ``uint8 [F, H, W, 3]`` RGB tensors. Segments travel as
lossless FFV1 (RGB, ``bgr0``) in Matroska, so a segment job reads exactly the input's decoded frames; the
stitched result is written like ComfyUI's SaveVideo (H.264, yuv420p) in the container the workflow wrote
(or FFV1 when it wrote Matroska), at the frame rate of the segments' results, with the input's audio copied.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .errors import UsageError

SEGMENT_SUFFIX = ".mkv"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".gif", ".m4v")


@dataclass(frozen=True)
class VideoInfo:
    """What the runner needs to know of an input: frame count, rate, size, audio."""

    frames: int
    fps: Fraction
    width: int
    height: int
    has_audio: bool


def _open(source, what: str):
    import av

    try:
        container = av.open(str(source) if isinstance(source, Path) else source)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise UsageError(f"{what} is not a video PyAV can read: {e}") from None
    if not container.streams.video:
        container.close()
        raise UsageError(f"{what} has no video stream")
    return container


def _rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(24)


def probe(path: Path) -> VideoInfo:
    """Frame count (decoded when the container does not say), rate, size and audio of the video at ``path``."""
    import av

    with _open(path, f"input {path}") as c:
        s = c.streams.video[0]
        try:
            frames = s.frames or sum(1 for _ in c.decode(video=0))
        except av.error.FFmpegError as e:
            raise UsageError(f"input {path}: cannot decode its video: {e}") from None
        if frames < 1:
            raise UsageError(f"input {path} holds no video frame")
        return VideoInfo(frames, _rate(s), s.codec_context.width, s.codec_context.height, bool(c.streams.audio))


def check_video(path: Path) -> None:
    """Raise :class:`UsageError` unless ``path`` holds a video whose first frame decodes."""
    import av

    with _open(path, f"input {path}") as c:
        try:
            next(iter(c.decode(video=0)))
        except (StopIteration, av.error.FFmpegError) as e:
            raise UsageError(f"input {path}: no video frame decodes ({e or 'empty'})") from None


class _Encoder:
    """One open output video: ``add(frame_uint8_hwc)``, ``close() -> bytes or None`` (written to ``target``)."""

    def __init__(self, target, fps: Fraction, width: int, height: int, codec: str, fmt: str | None = None):
        import av

        self.av, self.target = av, target
        self.container = av.open(target, "w", format=fmt)
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"

    def add(self, frame) -> None:
        image = self.av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=self.stream.pix_fmt)
        self.container.mux(self.stream.encode(image))

    def close(self):
        self.container.mux(self.stream.encode(None))
        self.container.close()
        return self.target.getvalue() if isinstance(self.target, io.BytesIO) else None


def split_segments(path: Path, plan: list, folder: Path) -> list[Path]:
    """One lossless clip (FFV1 Matroska) in ``folder`` per :class:`~video_enhance_kit.utils.segments.Segment`.

    The input is decoded once, front to back; a frame goes to every segment that covers it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / f"{path.stem}_seg{i:03d}{SEGMENT_SUFFIX}" for i in range(len(plan))]
    open_: dict[int, _Encoder] = {}
    closed: set[int] = set()
    with _open(path, f"input {path}") as c:
        rate = _rate(c.streams.video[0])
        for index, frame in enumerate(c.decode(video=0)):
            image = frame.to_ndarray(format="rgb24")
            for i, seg in enumerate(plan):
                if seg.start <= index < seg.end:
                    if i not in open_:
                        open_[i] = _Encoder(str(targets[i]), rate, image.shape[1], image.shape[0], "ffv1", "matroska")
                    open_[i].add(image)
                if index == seg.end - 1 and i in open_:
                    open_.pop(i).close()
                    closed.add(i)
    for enc in open_.values():
        enc.close()
    if len(closed) != len(plan):
        raise UsageError(f"input {path}: fewer frames than planned ({plan[-1].end}); it may be damaged")
    return targets


def decode(data: bytes, what: str = "result"):
    """``(frames uint8 [F, H, W, 3] tensor, fps)`` of a video held in memory."""
    import numpy as np
    import torch

    with _open(io.BytesIO(data), what) as c:
        rate = _rate(c.streams.video[0])
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return torch.from_numpy(np.stack(frames)), rate


def _copy_audio(source: Path, target: Path) -> None:
    """Mux ``source``'s first audio stream (its packets, no re-encoding) beside ``target``'s video."""
    import av

    tmp = target.with_name(f".{target.name}.audio{target.suffix}")
    with av.open(str(source)) as src, av.open(str(target)) as vid, av.open(str(tmp), "w") as out:
        v_in, a_in = vid.streams.video[0], src.streams.audio[0]
        v_out, a_out = out.add_stream_from_template(v_in), out.add_stream_from_template(a_in)
        for stream_in, stream_out, container in ((v_in, v_out, vid), (a_in, a_out, src)):
            for packet in container.demux(stream_in):
                if packet.dts is None:
                    continue
                packet.stream = stream_out
                out.mux(packet)
    tmp.replace(target)


def write_video(target: Path, frames, fps: Fraction, audio_from: Path | None = None) -> None:
    """Write ``frames`` (uint8 ``[F, H, W, 3]``) to ``target`` (H.264 yuv420p; FFV1 for .mkv), audio copied."""
    codec = "ffv1" if target.suffix.lower() == SEGMENT_SUFFIX else "h264"
    tmp = target.with_name(f".{target.name}.part{target.suffix}")
    enc = _Encoder(str(tmp), fps, frames.shape[2] - frames.shape[2] % 2 if codec == "h264" else frames.shape[2],
                   frames.shape[1] - frames.shape[1] % 2 if codec == "h264" else frames.shape[1], codec)
    for frame in frames.numpy():
        enc.add(frame[:enc.stream.height, :enc.stream.width])
    enc.close()
    if audio_from is not None:
        _copy_audio(audio_from, tmp)
    tmp.replace(target)


def stitch_results(results: list[bytes], plan: list, target: Path, audio_from: Path | None = None) -> int:
    """Decode each segment's result video, stitch with :func:`utils.segments.stitch`, write ``target``; frames written."""
    import torch

    from ..utils.segments import stitch

    decoded = [decode(data, f"result of segment {i}") for i, data in enumerate(results)]
    fps = decoded[0][1]
    clip = stitch([frames.to(torch.float32) for frames, _ in decoded], plan)
    write_video(target, clip.round().clamp(0, 255).to(torch.uint8), fps, audio_from)
    return clip.shape[0]


def _with_tone(path: Path, seconds: float) -> None:
    """Add ``seconds`` of a mono AAC tone beside ``path``'s video (packets copied)."""
    import av
    import numpy as np

    tmp = path.with_name(f".{path.name}.tone{path.suffix}")
    with av.open(str(path)) as src, av.open(str(tmp), "w") as out:
        video = out.add_stream_from_template(src.streams.video[0])
        audio = out.add_stream("aac", rate=8000, layout="mono")
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video
                out.mux(packet)
        tone = (0.1 * np.sin(np.arange(int(8000 * seconds)) / 5)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        frame.sample_rate = 8000
        out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    tmp.replace(path)


def synthetic_clip(path: Path, frames: int = 12, size: tuple[int, int] = (16, 24), seed: int = 0, audio: bool = False,
                   fps: Fraction = Fraction(12)):
    """A random clip at ``path`` (lossless for .mkv), optionally with a tone; returns its frames (uint8 numpy).

    For tests and benchmarks of the batch runner.
    """
    import numpy as np
    import torch

    pixels = np.random.default_rng(seed).integers(0, 256, (frames, *size, 3), dtype=np.uint8)
    write_video(Path(path), torch.from_numpy(pixels), fps)
    if audio:
        _with_tone(Path(path), frames / fps)
    return pixels


__all__ = ["SEGMENT_SUFFIX", "VIDEO_SUFFIXES", "VideoInfo", "check_video", "decode", "probe", "split_segments", "stitch_results",
           "synthetic_clip", "write_video"]
