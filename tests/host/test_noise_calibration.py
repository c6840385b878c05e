"""Noise Calibration and Frequency Filter nodes inside real ComfyUI, with the tiny SD1.5 and Wan 2.1 models."""

import copy

import pytest
import torch

STEPS = 3
DIMS2, DIMS3 = "2d (per frame)", "3d (spatio-temporal)"
GUIDED, COND_ONLY = "guided (cfg)", "cond only (paper)"


@pytest.fixture(scope="module")
def host(comfy_host):
    """The harness's ComfyHost (tests/host/conftest.py), started once per session with the tiny models."""
    torch.set_num_threads(1)
    return comfy_host


@pytest.fixture(scope="module")
def sd15(host):
    model, clip, _vae = host.run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a sharp photo")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="blurry")
    latent = {"samples": torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    return dict(model=model, positive=pos, negative=neg, latent=latent)


@pytest.fixture(scope="module")
def wan(host):
    model, = host.run_node("UNETLoader", unet_name="vek-tiny-wan21.safetensors", weight_dtype="default")
    clip, = host.run_node("CLIPLoader", clip_name="vek-tiny-clip-l.safetensors", type="sd3")
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a sharp video")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="")
    latent = {"samples": torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(1))}
    return dict(model=model, positive=pos, negative=neg, latent=latent)


def custom_parts(host, m, sampler_name="euler", scheduler="normal"):
    noise, = host.run_node("RandomNoise", noise_seed=7)
    guider, = host.run_node("CFGGuider", model=m["model"], positive=m["positive"], negative=m["negative"], cfg=3.0)
    base, = host.run_node("KSamplerSelect", sampler_name=sampler_name)
    sigmas, = host.run_node("BasicScheduler", model=m["model"], scheduler=scheduler, steps=STEPS, denoise=0.6)
    return noise, guider, base, sigmas


def nc_sampler(host, base, iterations=3, **kw):
    args = dict(sampler=base, iterations=iterations, cutoff=1.0, mask="ideal_reference", dims=DIMS2, calibrate_with=GUIDED, order=2)
    args.update(kw)
    return host.run_node("VEK_NoiseCalibration", **args)[0]


def refine(host, m, iterations, **kw):
    args = dict(model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], seed=5, steps=STEPS,
                cfg=3.0, sampler_name="euler", scheduler="normal", denoise=0.6, iterations=iterations, cutoff=1.0,
                mask="ideal_reference", dims=DIMS2, calibrate_with=GUIDED)
    args.update(kw)
    return host.run_node("VEK_NCSDEditRefine", **args)[0]


def error_of(host):
    return host.pack_module("utils.checks").InputError


@pytest.mark.parametrize("family", ["sd15", "wan"])
def test_sampler_wrapper_iterations_0_is_plain_sdedit_bit_for_bit(host, request, family):
    m = request.getfixturevalue(family)
    noise, guider, base, sigmas = custom_parts(host, m)
    plain, _ = host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=base, sigmas=sigmas, latent_image=m["latent"])
    out, _ = host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, base, 0), sigmas=sigmas, latent_image=m["latent"])
    assert torch.equal(out["samples"], plain["samples"])


@pytest.mark.parametrize("family, dims", [("sd15", DIMS2), ("wan", DIMS3)])
def test_sampler_wrapper_calibrates_and_leaves_inputs_unchanged(host, request, family, dims):
    m = request.getfixturevalue(family)
    latent_before = m["latent"]["samples"].clone()
    options_before = copy.deepcopy(m["model"].model_options)
    noise, guider, base, sigmas = custom_parts(host, m)
    plain, _ = host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=base, sigmas=sigmas, latent_image=m["latent"])
    wrapped = nc_sampler(host, base, 3, dims=dims)
    out, _ = host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=wrapped, sigmas=sigmas, latent_image=m["latent"])
    assert out["samples"].shape == plain["samples"].shape
    assert torch.isfinite(out["samples"]).all()
    assert not torch.equal(out["samples"], plain["samples"])
    errs = wrapped.calibrator.last_errors
    assert len(errs) == 3 and errs[2] < errs[0]  # the content loss falls even on a random-weight model
    assert torch.equal(m["latent"]["samples"], latent_before)
    assert m["model"].model_options == options_before


def test_refine_iterations_0_equals_ksampler_bit_for_bit(host, sd15, wan):
    for m in (sd15, wan):
        ks, = host.run_node("KSampler", model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"],
                            seed=5, steps=STEPS, cfg=3.0, sampler_name="euler", scheduler="normal", denoise=0.6)
        assert torch.equal(refine(host, m, 0)["samples"], ks["samples"])


def test_refine_changes_result_keeps_latent_fields(host, sd15):
    latent = dict(sd15["latent"], batch_index=[0, 1, 2])
    before = latent["samples"].clone()
    out0 = refine(host, dict(sd15, latent=latent), 0)
    out3 = refine(host, dict(sd15, latent=latent), 2, calibrate_with=COND_ONLY, sampler_name="dpmpp_2m")
    assert out3["batch_index"] == [0, 1, 2] and out3["samples"].shape == before.shape
    assert not torch.equal(out0["samples"], out3["samples"])
    assert torch.equal(latent["samples"], before)


def recording(host, name, seen):
    """KSamplerSelect(name) whose sampler function records the start latent it is given."""
    import comfy.samplers

    base, = host.run_node("KSamplerSelect", sampler_name=name)
    inner = base.sampler_function

    def record(model, x, sigmas, *args, **kwargs):
        seen.append(x.clone())
        return inner(model, x, sigmas, *args, **kwargs)

    return comfy.samplers.KSAMPLER(record, extra_options=dict(base.extra_options), inpaint_options=dict(base.inpaint_options))


def test_calibrated_start_does_not_depend_on_the_sampler(host, sd15):
    """The wrapped sampler, whichever it is, starts from the same calibrated latent."""
    noise, guider, _, sigmas = custom_parts(host, sd15)
    seen, plain_start = [], []
    for name in ("euler", "dpmpp_2m", "ddim", "uni_pc"):
        host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, recording(host, name, seen), 2), sigmas=sigmas, latent_image=sd15["latent"])
    host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=recording(host, "euler", plain_start), sigmas=sigmas, latent_image=sd15["latent"])
    assert len(seen) == 4
    assert all(torch.equal(seen[0], x) for x in seen[1:])
    assert not torch.allclose(seen[0], plain_start[0])  # and it is not the plain SDEdit start


def test_non_ksampler_samplers_get_the_same_calibrated_start(host, sd15):
    """A SAMPLER that is not a KSAMPLER is wrapped as a Sampler: it receives the calibrated noise for the same start."""
    noise, guider, _, sigmas = custom_parts(host, sd15)
    ks_start, eps_seen = [], []

    class Opaque:  # e.g. another pack's Sampler subclass
        def __init__(self, inner):
            self.inner = inner

        def max_denoise(self, model_wrap, sigmas):
            return self.inner.max_denoise(model_wrap, sigmas)

        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, *args):
            eps_seen.append((noise.clone(), latent_image.clone(), float(sigmas[0])))
            return self.inner.sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, *args)

    base, = host.run_node("KSamplerSelect", sampler_name="euler")
    host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, Opaque(base), 2), sigmas=sigmas, latent_image=sd15["latent"])
    host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, recording(host, "euler", ks_start), 2), sigmas=sigmas, latent_image=sd15["latent"])
    eps, latent, sigma = eps_seen[0]
    assert torch.allclose(latent + sigma * eps, ks_start[0], atol=1e-4)  # eps model: x = x0 + sigma * eps


@pytest.mark.parametrize("other", ["VEK_SharedNoiseSampler", "VEK_EarlyStopSampler"])
def test_composes_with_the_packs_sampler_wrappers_in_either_order(host, sd15, other):
    nodes = host.object_info()
    if other not in nodes:
        pytest.skip(f"{other} is not in this checkout")
    widgets = {"VEK_SharedNoiseSampler": dict(share_weight=0.5, blend_lambda=0.2, blend_mode="variance_preserving"),
               "VEK_EarlyStopSampler": dict(stop_step=0, stop_sigma=0.0, stop_fraction=0.7)}[other]
    noise, guider, _, sigmas = custom_parts(host, sd15)
    starts, outs = [], []
    for order in ("nc_inside", "nc_outside"):
        seen = []
        base = recording(host, "euler_ancestral", seen)
        if order == "nc_inside":
            sampler, = host.run_node(other, sampler=nc_sampler(host, base, 2), **widgets)
        else:
            sampler = nc_sampler(host, host.run_node(other, sampler=base, **widgets)[0], 2)
        out, _ = host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=sd15["latent"])
        starts.append(seen[0])
        outs.append(out["samples"])
    assert torch.allclose(starts[0], starts[1], atol=1e-5)
    assert torch.isfinite(outs[0]).all() and torch.allclose(outs[0], outs[1], atol=1e-3)


def test_calibration_uses_the_sampling_patches_and_cond_only_batch(host, sd15):
    """A model patch of the sampled model runs during calibration; cond-only calls have one stream, guided two."""
    calls = []

    def wrapper(apply_model, args):
        calls.append(args["input"].shape[0])
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched = sd15["model"].clone()
    patched.set_model_unet_function_wrapper(wrapper)
    m = dict(sd15, model=patched)
    noise, guider, base, sigmas = custom_parts(host, m)
    frames = m["latent"]["samples"].shape[0]
    for mode, batch in ((GUIDED, 2 * frames), (COND_ONLY, frames)):
        calls.clear()
        host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, base, 2, calibrate_with=mode), sigmas=sigmas, latent_image=m["latent"])
        assert calls[:2] == [batch, batch]  # the two calibration calls
        assert calls[2:] == [2 * frames] * STEPS  # then the sampling steps (cond + uncond batched)
    assert sd15["model"].model_options.get("model_function_wrapper") is None


def test_refine_progress_bar_covers_calibration_and_sampling(host):
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "vek-tiny-sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a photo"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "5": {"class_type": "VEK_NCSDEditRefine", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "seed": 1, "steps": STEPS,
            "cfg": 2.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.6, "iterations": 2, "cutoff": 1.0,
            "mask": "ideal_reference", "dims": DIMS2, "calibrate_with": GUIDED}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    progress = []
    host.run_prompt(prompt, on_progress=lambda node, value, total: progress.append((node, value, total))).raise_for_error()
    mine = [(v, t) for n, v, t in progress if n == "5"]
    assert mine and all(t == 2 + STEPS for _, t in mine)
    assert [v for v, _ in mine] == list(range(1, 2 + STEPS + 1))


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(cutoff=1.5), "cutoff"), (dict(cutoff=-0.1), "cutoff"), (dict(iterations=-1), "iterations"), (dict(mask="round"), "mask")],
)
def test_bad_widget_values_name_the_input(host, sd15, kwargs, name):
    base, = host.run_node("KSamplerSelect", sampler_name="euler")
    with pytest.raises(error_of(host)) as err:
        nc_sampler(host, base, **kwargs)
    assert err.value.input_name == name
    with pytest.raises(error_of(host)) as err:
        refine(host, sd15, **{"iterations": 1, **kwargs})
    assert err.value.input_name == name


def test_bad_sampling_inputs_name_the_input(host, sd15):
    noise, guider, base, sigmas = custom_parts(host, sd15)
    InputError = error_of(host)
    ref = {"samples": torch.zeros(3, 4, 8, 10)}
    with pytest.raises(InputError, match="reference"):
        host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, base, 1, reference=ref), sigmas=sigmas, latent_image=sd15["latent"])
    for bad in (torch.tensor([5.0]), torch.tensor([1.0, 2.0, 0.0])):
        with pytest.raises(InputError, match="sigmas"):
            host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, base, 1), sigmas=bad, latent_image=sd15["latent"])
    nan_latent = {"samples": sd15["latent"]["samples"].clone()}
    nan_latent["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="latent_image"):
        refine(host, dict(sd15, latent=nan_latent), 1)
    with pytest.raises(InputError, match="latent_image"):
        host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, base, 1), sigmas=sigmas, latent_image=nan_latent)


def test_frequency_filter_nodes(host):
    gen = torch.Generator().manual_seed(3)
    latent = {"samples": torch.randn(2, 4, 3, 8, 8, generator=gen), "batch_index": [0]}
    low, = host.run_node("VEK_FrequencyFilterLatent", latent=latent, mode="low_pass", cutoff=0.5, mask="ideal", dims=DIMS3, order=2)
    high, = host.run_node("VEK_FrequencyFilterLatent", latent=latent, mode="high_pass", cutoff=0.5, mask="ideal", dims=DIMS3, order=2)
    assert torch.allclose(low["samples"] + high["samples"], latent["samples"], atol=1e-5)
    assert low["batch_index"] == [0] and "batch_index" in latent
    other = {"samples": torch.randn(2, 4, 3, 8, 8, generator=gen)}
    merged, = host.run_node("VEK_FrequencyMergeLatent", low_from=latent, high_from=other, cutoff=0.5, mask="ideal", dims=DIMS2, order=2)
    fft = host.pack_module("utils.fft")
    assert torch.allclose(fft.low_pass(merged["samples"], 0.5, "ideal"), fft.low_pass(latent["samples"], 0.5, "ideal"), atol=1e-5)

    image = torch.rand(4, 16, 12, 3, generator=gen)
    img_low, = host.run_node("VEK_FrequencyFilterImage", images=image, mode="low_pass", cutoff=0.3, mask="gaussian", dims=DIMS2, order=2)
    img_high, = host.run_node("VEK_FrequencyFilterImage", images=image, mode="high_pass", cutoff=0.3, mask="gaussian", dims=DIMS2, order=2)
    assert img_low.shape == image.shape and 0 <= float(img_low.min()) and float(img_low.max()) <= 1
    assert abs(float(img_high.mean()) - 0.5) < 0.02  # high band is centred on mid-grey
    assert float(img_low.std()) < float(image.std())
    img_merged, = host.run_node("VEK_FrequencyMergeImage", low_from=image, high_from=image, cutoff=0.3, mask="ideal", dims=DIMS2, order=2)
    assert torch.allclose(img_merged, image, atol=1e-5)

    InputError = error_of(host)
    with pytest.raises(InputError, match="high_from"):
        host.run_node("VEK_FrequencyMergeImage", low_from=image, high_from=image[:, :8], cutoff=0.3, mask="ideal", dims=DIMS2, order=2)
    with pytest.raises(InputError, match="images"):
        host.run_node("VEK_FrequencyFilterImage", images=image[:1], mode="low_pass", cutoff=0.3, mask="ideal", dims=DIMS3, order=2)
    with pytest.raises(InputError, match="latent"):
        host.run_node("VEK_FrequencyFilterLatent", latent={"samples": torch.zeros(4, 8, 8)}, mode="low_pass", cutoff=0.3, mask="ideal", dims=DIMS2, order=2)
    with pytest.raises(InputError, match="cutoff"):
        host.run_node("VEK_FrequencyFilterLatent", latent=latent, mode="low_pass", cutoff=2.0, mask="ideal", dims=DIMS2, order=2)


def test_noise_rule_is_read_off_the_model(host, sd15, wan):
    """(a, s) come from the model's own noise_scaling: eps/v -> (1, sigma), flow -> (1 - sigma, sigma)."""
    model_rule = host.pack_module("nodes._sampling").model_rule
    noising = host.pack_module("samplers.noising")
    eps_ms, flow_ms = sd15["model"].get_model_object("model_sampling"), wan["model"].get_model_object("model_sampling")
    assert model_rule(eps_ms)(torch.tensor(3.0)) == pytest.approx((1.0, 3.0))
    assert model_rule(eps_ms, max_denoise=True)(torch.tensor(3.0)) == pytest.approx((1.0, 10.0 ** 0.5))
    assert model_rule(flow_ms)(torch.tensor(0.7)) == pytest.approx((0.3, 0.7))
    # a float sigma is evaluated in float64: exactly the core's rules (EVS's DDIM inversion relies on it)
    for sigma in (0.0, 0.1234567, 0.7, 1.0, 14.6):
        assert model_rule(eps_ms)(sigma) == noising.kdiffusion_rule(sigma)
        assert model_rule(flow_ms)(sigma) == noising.flow_rule(sigma)
    # a float32 tensor sigma is evaluated as the sampler noises, in float32
    a, _ = model_rule(flow_ms)(torch.tensor(0.1234567))
    assert a == float(1 - torch.tensor(0.1234567)) != noising.flow_rule(float(torch.tensor(0.1234567)))[0]

    class Squared:  # a rule that is not x = a*x0 + s*eps
        def noise_scaling(self, sigma, noise, latent, max_denoise=False):
            return latent**2 + sigma * noise

    with pytest.raises(error_of(host), match="model"):
        model_rule(Squared())(torch.tensor(1.0))
    with pytest.raises(error_of(host), match="model"):
        model_rule(Squared())(1.0)


def test_reference_equal_to_the_latent_changes_nothing_and_a_different_one_is_used(host, sd15):
    noise, guider, _, sigmas = custom_parts(host, sd15)
    starts = {}
    for key, ref in (("none", None), ("same", {"samples": sd15["latent"]["samples"].clone()}),
                     ("other", {"samples": sd15["latent"]["samples"].flip(-1)})):
        seen = []
        extra = {} if ref is None else {"reference": ref}
        host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=nc_sampler(host, recording(host, "euler", seen), 2, **extra),
                      sigmas=sigmas, latent_image=sd15["latent"])
        starts[key] = seen[0]
    assert torch.allclose(starts["none"], starts["same"], atol=1e-5)
    # with another reference the start is noised from it: its low band follows the reference's (flipped) layout
    fft = host.pack_module("utils.fft")
    low = lambda t: fft.low_pass(t, 0.25, "ideal")
    ref_in = sd15["model"].model.process_latent_in(sd15["latent"]["samples"].flip(-1))
    assert float((low(starts["other"]) - low(ref_in)).norm()) < float((low(starts["other"]) - low(ref_in.flip(-1))).norm())


def test_empty_sigmas_name_the_input(host, sd15):
    """SamplerCustomAdvanced returns the latent untouched for empty sigmas; called directly, the calibration names them."""
    mod = host.pack_module("nodes.noise_calibration")
    with pytest.raises(error_of(host), match="sigmas"):
        mod.Calibrator(2).calibrate(None, None, torch.tensor([]), {}, sd15["latent"]["samples"], start_noise=sd15["latent"]["samples"])


def test_ksampler_wrapping_helper(host):
    """One re-wrap for every SAMPLER wrapper: a new KSAMPLER with copies of the options; others are refused by name."""
    import comfy.samplers

    sampling = host.pack_module("nodes._sampling")
    inner = comfy.samplers.sampler_object("ddim")  # a KSAMPLER with inpaint option random=True

    def fn(model, x, sigmas, **kw):
        return inner.sampler_function(model, x, sigmas, **kw)

    wrapped = sampling.wrap_ksampler(inner, fn)
    assert isinstance(wrapped, comfy.samplers.KSAMPLER) and wrapped.sampler_function is fn
    assert wrapped.inpaint_options == inner.inpaint_options == {"random": True}
    assert wrapped.inpaint_options is not inner.inpaint_options and wrapped.extra_options is not inner.extra_options
    assert sampling.check_ksampler(inner) is inner
    for call in (lambda s: sampling.wrap_ksampler(s, fn), lambda s: sampling.check_ksampler(s, " (no hook)", "use another")):
        with pytest.raises(error_of(host), match="input 'sampler': a Sampler cannot be wrapped"):
            call(comfy.samplers.Sampler())
    with pytest.raises(error_of(host), match=r"wrapped \(no hook\)\. Fix: use another"):
        sampling.check_ksampler(comfy.samplers.Sampler(), " (no hook)", "use another")


def test_progress_helper_counts_and_checks_cancel(host, monkeypatch):
    import comfy.model_management as mm
    import comfy.utils

    common = host.pack_module("nodes._common")
    bars = []

    class Recorder:
        def __init__(self, total, node_id=None):
            self.total, self.values = total, []
            bars.append(self)

        def update_absolute(self, value, total=None, preview=None):
            self.values.append((value, total))

    monkeypatch.setattr(comfy.utils, "ProgressBar", Recorder)
    progress = common.Progress(5)
    progress.tick()
    progress.call()
    progress.at(4)
    progress.tick()
    assert bars[0].total == 5 and bars[0].values == [(1, 5), (2, 5), (4, 5), (5, 5)]
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            progress.call()
    finally:
        mm.interrupt_current_processing(False)
    assert len(bars[0].values) == 4  # Cancel is checked before the tick


def test_ranges_feed_the_schema_and_the_checks(host):
    """The node's numbers live in one RANGES table: the schema's min/max and the node's own checks read it."""
    nodes = host.object_info()
    nc = host.pack_module("nodes.noise_calibration")
    spec = {**nodes["VEK_NCSDEditRefine"]["input"]["required"]}
    for name, (low, high) in nc.RANGES.items():
        if name in spec:
            assert (spec[name][1]["min"], spec[name][1]["max"]) == (low, high), name
    common = host.pack_module("nodes._common")
    common.check_ranges(nc.RANGES, steps=1, cutoff=1.0)
    for bad in ({"steps": 0}, {"steps": 2.5}, {"cutoff": 1.01}, {"denoise": 0.0}):
        with pytest.raises(error_of(host), match=next(iter(bad))):
            common.check_ranges(nc.RANGES, **bad)
