"""The registry inside ComfyUI: the sample clip placed on load, the TINY declarations as the features define them."""


def test_sample_clip_is_placed_by_the_one_rule(pack, tmp_path):
    registry = pack("nodes._registry")
    target = registry.place_sample_clip(str(tmp_path))
    assert target == tmp_path / "vek_sample.mp4"
    assert target.read_bytes() == registry.SAMPLE_CLIP.read_bytes()
    mtime = target.stat().st_mtime_ns
    registry.place_sample_clip(str(tmp_path))
    assert target.stat().st_mtime_ns == mtime  # an up-to-date copy is left alone
    target.write_bytes(b"a stale or truncated clip")
    registry.place_sample_clip(str(tmp_path))
    assert target.read_bytes() == registry.SAMPLE_CLIP.read_bytes()  # a different size is replaced


def test_static_tiny_declarations_equal_the_imported_ones(pack):
    """The host reads TINY without importing the feature; it is the same data the feature module holds."""
    registry = pack("nodes._registry")
    declared = registry.tiny_declarations()
    imported = {m.__name__.rsplit(".", 1)[-1]: m.TINY for m in registry.feature_modules() if hasattr(m, "TINY")}
    assert declared == imported and declared
