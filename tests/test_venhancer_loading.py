"""VEnhancer checkpoint loading: .pt (weights only), safetensors (fp32/fp16), strict key checks, refusals."""

import os

import pytest
import torch
from safetensors.torch import save_file
from video_enhance_kit.models import venhancer as V
from video_enhance_kit.models import venhancer_loading as L

TINY = V.VEnhancerConfig(
    model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1, head_dim=16, context_dim=32, temporal_heads=2
)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = V.build_venhancer(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def same_weights(a, b, atol=0.0):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k].float(), sb[k].float(), atol=atol) for k in sa)


def test_official_config_inferred_from_the_official_layout():
    sd = V.build_venhancer(device="meta").state_dict()
    assert L.infer_config(sd) == V.OFFICIAL_CONFIG


def test_pt_with_state_dict_wrapper_loads(tmp_path, tiny):
    path = tmp_path / "venhancer_tiny.pt"
    torch.save({"state_dict": tiny.state_dict(), "step": torch.tensor(3)}, path)
    model = L.load_venhancer(str(path), dtype=torch.float32, config=TINY)
    assert same_weights(model, tiny)


def test_plain_pt_loads_with_config_inferred(tmp_path):
    cfg = V.VEnhancerConfig(model_channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1, context_dim=32, temporal_heads=1)
    model = V.build_venhancer(cfg)
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    loaded = L.load_venhancer(str(path), dtype=torch.float32)
    assert loaded.cfg == cfg and same_weights(loaded, model)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_needing_code_execution_is_refused(tmp_path, tiny):
    path = tmp_path / "evil.pt"
    sd = dict(tiny.state_dict())
    sd["payload"] = Evil()
    torch.save(sd, path)
    with pytest.raises(L.CheckpointError, match="refused.*code execution"):
        L.load_venhancer(str(path))


def test_missing_key_is_named(tmp_path, tiny):
    sd = dict(tiny.state_dict())
    del sd["out.2.bias"]
    path = tmp_path / "missing.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(L.CheckpointError, match=r"missing keys \(1\): out\.2\.bias"):
        L.load_venhancer(str(path), config=TINY)


def test_extra_key_is_named(tmp_path, tiny):
    sd = dict(tiny.state_dict())
    sd["model.extra.weight"] = torch.zeros(2)
    path = tmp_path / "extra.pt"
    torch.save(sd, path)
    with pytest.raises(L.CheckpointError, match=r"unexpected keys \(1\): model\.extra\.weight"):
        L.load_venhancer(str(path), config=TINY)


def test_shape_mismatch_is_named(tmp_path, tiny):
    sd = dict(tiny.state_dict())
    sd["out.2.bias"] = torch.zeros(5)
    path = tmp_path / "shape.pt"
    torch.save(sd, path)
    with pytest.raises(L.CheckpointError, match=r"out\.2\.bias \(5,\) != \(4,\)"):
        L.load_venhancer(str(path), config=TINY)


def test_fp16_safetensors_load_in_each_dtype(tmp_path, tiny):
    path = tmp_path / "venhancer_fp16.safetensors"
    L.save_venhancer(tiny, str(path), dtype=torch.float16)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        model = L.load_venhancer(str(path), dtype=dtype)
        assert model.cfg == TINY
        assert all(p.dtype == dtype for p in model.parameters())
        assert same_weights(model, tiny, atol=2e-2)


def test_fp16_safetensors_without_metadata(tmp_path):
    model = V.build_venhancer(V.VEnhancerConfig(model_channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1, context_dim=32, temporal_heads=1))
    path = tmp_path / "conv.safetensors"
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = L.load_venhancer(str(path), dtype=torch.float16)
    assert loaded.cfg == model.cfg


def test_not_a_venhancer_checkpoint(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(2)}, str(path))
    with pytest.raises(L.CheckpointError, match="not a VEnhancer checkpoint"):
        L.load_venhancer(str(path))
    with pytest.raises(L.CheckpointError, match="unknown checkpoint format"):
        (tmp_path / "x.gguf").write_bytes(b"0")
        L.load_venhancer(str(tmp_path / "x.gguf"))


def test_legacy_non_zip_pt_loads(tmp_path, tiny):
    path = tmp_path / "legacy.pt"
    torch.save(tiny.state_dict(), path, _use_new_zipfile_serialization=False)
    assert same_weights(L.load_venhancer(str(path), dtype=torch.float32, config=TINY), tiny)
