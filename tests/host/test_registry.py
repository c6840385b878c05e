"""The pack's entry point places the sample clip the example workflows load."""


def test_sample_clip_is_placed_once_and_never_overwritten(pack, tmp_path):
    registry = pack("nodes._registry")
    target = registry.place_sample_clip(str(tmp_path))
    assert target == tmp_path / "vek_sample.mp4"
    assert target.read_bytes() == registry.SAMPLE_CLIP.read_bytes()
    target.write_bytes(b"user's own file")
    registry.place_sample_clip(str(tmp_path))
    assert target.read_bytes() == b"user's own file"

