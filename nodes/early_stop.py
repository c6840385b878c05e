"""ZVRD early-stopping sampling as ComfyUI nodes: Early Stop Sampler (SAMPLER) and Early Stop Sigmas (SIGMAS)."""

from __future__ import annotations

from comfy_api.latest import io

from ..samplers.early_stop import early_stop_sigmas, early_stopping_sampler
from ..utils.checks import Range
from ._sampling import KSAMPLER_FIX, check_ksampler, wrap_ksampler

CATEGORY = "video-enhance-kit/zvrd"
STOP_STEP = Range(0, 10000, integer=True)
STOP_SIGMA = Range(0.0, 1000.0)
STOP_FRACTION = Range(0.01, 1.0)


def _stop_inputs():
    return [
        io.Int.Input("stop_step", default=0, **STOP_STEP.bounds,
                     tooltip="Stop after this many steps and return that step's x0 prediction (T_ES). 0 = use stop_sigma or "
                             "stop_fraction instead."),
        io.Float.Input("stop_sigma", default=0.0, **STOP_SIGMA.bounds, step=0.001,
                       tooltip="Stop at the first step whose target noise level is at or below this sigma (0 = off). "
                               "Used when stop_step is 0."),
        io.Float.Input("stop_fraction", default=0.9, **STOP_FRACTION.bounds, step=0.01,
                       tooltip="Fraction of the schedule's steps to run when stop_step and stop_sigma are 0 (1 = no early "
                               "stop). The paper gives no T_ES; 0.9 skips the last tenth, where flickering fine detail and "
                               "the input's noise are re-created."),
    ]


def _check(stop_step, stop_sigma, stop_fraction):
    """The node's ranges (also for API calls that bypass ComfyUI's validation)."""
    STOP_STEP.check(stop_step, "stop_step")
    STOP_SIGMA.check(stop_sigma, "stop_sigma")
    STOP_FRACTION.check(stop_fraction, "stop_fraction")


class EarlyStopSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_EarlyStopSampler",
            display_name="Early Stop Sampler (ZVRD)",
            category=CATEGORY,
            description="Wraps a SAMPLER so sampling stops early (ZVRD's early-stopping strategy) and the x0 prediction of "
                        "the last step run is the result: the late steps, which add flickering detail and re-create noise, "
                        "are skipped. Works with every k-diffusion sampler and any scheduler.",
            inputs=[io.Sampler.Input("sampler", tooltip="The sampler to wrap, e.g. KSamplerSelect."), *_stop_inputs()],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, sampler, stop_step, stop_sigma, stop_fraction) -> io.NodeOutput:
        _check(stop_step, stop_sigma, stop_fraction)
        check_ksampler(sampler, fix=f"{KSAMPLER_FIX}, or use Early Stop Sigmas")
        fn = early_stopping_sampler(sampler.sampler_function, stop_step, stop_sigma, stop_fraction)
        return io.NodeOutput(wrap_ksampler(sampler, fn))


class EarlyStopSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_EarlyStopSigmas",
            display_name="Early Stop Sigmas (ZVRD)",
            category=CATEGORY,
            description="Cuts a schedule after the early-stopping step (ZVRD). Sample with the result and take "
                        "SamplerCustomAdvanced's denoised_output: it is the x0 prediction at the stop step.",
            inputs=[io.Sigmas.Input("sigmas", tooltip="The full schedule, e.g. from BasicScheduler."), *_stop_inputs()],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, sigmas, stop_step, stop_sigma, stop_fraction) -> io.NodeOutput:
        _check(stop_step, stop_sigma, stop_fraction)
        return io.NodeOutput(early_stop_sigmas(sigmas, stop_step, stop_sigma, stop_fraction))


NODES = [EarlyStopSampler, EarlyStopSigmas]
