"""benchmarks/_venhancer_scale.py: fp8 storage halves the stored weights and keeps the network running; meta weight memory."""

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def scale():
    sys.path.insert(0, str(BENCH))  # the benchmarks import their siblings (_bench, bench_venhancer_tiles) by name
    try:
        import _venhancer_scale

        yield _venhancer_scale
    finally:
        sys.path.remove(str(BENCH))


def test_fp8_storage_halves_weights_and_stays_close(scale):
    T = scale.T
    inputs = T.make_inputs(5, 8, 8, "cpu")
    ref_model = T.build("cpu")
    fp16_bytes = scale.weight_bytes(ref_model) // 2
    fp8 = scale.fp8_storage(T.build("cpu"), torch.float32)
    assert scale.stored_bytes(fp8) == pytest.approx(fp16_bytes / 2, rel=0.01)
    assert all(v.dtype == torch.float8_e4m3fn for m in fp8.modules() for v in getattr(m, "_fp8", {}).values())
    t = torch.full((1,), 500)
    conds = {"hint": inputs.latents[:, :, ::2], "mask_cond": inputs.mask_cond, "t_hint": torch.full((1,), 199.0), "s_cond": torch.full((1,), 8.0)}
    with torch.no_grad():
        a, b = fp8(inputs.latents, t, inputs.context, **conds), ref_model(inputs.latents, t, inputs.context, **conds)
    err = float(scale.relative_rms(a, b))
    assert torch.isfinite(a).all() and 1e-4 < err < 0.5  # 8-bit weights: close, not equal


def test_weight_memory_of_the_official_network_on_meta_is_half_in_fp8(scale):
    row = scale.weight_memory()
    assert row["ratio"] == "0.500" and row["fp16"] == "3.8 GiB"
