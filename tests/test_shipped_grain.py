"""The shipped MNIST models at their default sampling leave no background grain (a module of its own, so that
pytest-xdist runs it beside test_shipped's other slow tests)."""

import pytest
import torch

from fundiff.backends import runs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist-class", "mnist-time"])
def test_shipped_mnist_models_leave_no_background_grain_at_their_defaults(name):
    """The MNIST teachers at their own default sampling (Heun over the write-up's 35 strided steps; CFG 5 for the
    class model): 10 samples (some 6,000 background pixels) leave <= 1% of the background brighter than 0.05
    (metrics.background_grain; MNIST itself: 0%). Before their low-time fine-tune (README, Grain) they left 2.5%
    (class) and 2.3% (time) of 500; after it 0.1% and 0.2%."""
    from fundiff import DEFAULT_GUIDANCE, samplers
    from fundiff import timesteps as ts
    from fundiff.guidance import CFG
    from fundiff.metrics import background_grain

    den = runs.load_denoiser(name)
    model = CFG(den, DEFAULT_GUIDANCE) if den.kind == "class" else den
    prompts = list(den.default_prompts) if den.kind == "class" else [""] * 10
    x = samplers.sample_from_noise(
        model, model.encode(prompts), ts.for_model(den), generator=torch.Generator().manual_seed(0)
    ).clamp(0, 1)
    assert background_grain(x) <= 0.01, f"{name}: {background_grain(x):.1%} of the background is grain"
