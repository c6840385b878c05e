"""Video layout conversions and frame-pair helpers (utils/video.py)."""

import pytest
import torch

from video_enhance_kit.utils import video as V
from video_enhance_kit.utils.checks import InputError


def test_image_frames_roundtrip(gen):
    img = torch.rand(5, 8, 12, 3, generator=gen)
    frames = V.image_to_frames(img)
    assert frames.shape == (5, 3, 8, 12)
    assert torch.equal(frames[2, 1], img[2, :, :, 1])
    assert torch.equal(V.frames_to_image(frames), img)


def test_video_frames_roundtrip(gen):
    vid = torch.randn(2, 16, 3, 4, 6, generator=gen)
    frames = V.video_to_frames(vid)
    assert frames.shape == (6, 16, 4, 6)
    assert torch.equal(frames[4], vid[1, :, 1])  # batch-major: video 1, frame 1
    assert torch.equal(V.frames_to_video(frames, 2), vid)
    f, b = V.to_frames(vid)
    assert b == 2 and torch.equal(V.from_frames(f, b), vid)
    f4, b4 = V.to_frames(frames)
    assert b4 is None and f4 is frames
    assert V.frame_count(vid) == 3 and V.frame_count(frames) == 6


def test_streams_split_is_stream_major(gen):
    x = torch.randn(6, 4, 2, 2, generator=gen)  # cond frames 0..2, then uncond frames 0..2
    s = V.split_streams(x, 2)
    assert s.shape == (2, 3, 4, 2, 2)
    assert torch.equal(s[1, 0], x[3])
    assert torch.equal(V.merge_streams(s), x)


def test_split_streams_error_names_batch():
    with pytest.raises(InputError, match="latent batch"):
        V.split_streams(torch.zeros(5, 4, 2, 2), 2)


@pytest.mark.parametrize(
    "boundary,offset,expected",
    [("reflect", -1, [1, 0, 1, 2]), ("reflect", 1, [1, 2, 3, 2]), ("clamp", -1, [0, 0, 1, 2]), ("clamp", 1, [1, 2, 3, 3])],
)
def test_neighbour_index(boundary, offset, expected):
    assert V.neighbour_index(4, offset, boundary).tolist() == expected


def test_neighbour_index_single_frame():
    assert V.neighbour_index(1, 1).tolist() == [0]


def test_frame_pairs():
    x = torch.arange(4.0)
    prev, nxt = V.frame_pairs(x)
    assert prev.tolist() == [0, 1, 2] and nxt.tolist() == [1, 2, 3]


def test_wrong_rank_message_names_input():
    with pytest.raises(InputError, match=r"input 'image': expected a 4-D tensor \[F, H, W, C\], got shape \(8, 8\)"):
        V.image_to_frames(torch.zeros(8, 8))
