import pytest
import torch

from fundiff import samplers
from fundiff import timesteps as ts
from fundiff.composers import Anagram, Factorized, Hybrid, hold_band
from fundiff.denoisers import Prediction
from fundiff.errors import FundiffError
from fundiff.guidance import CFG
from fundiff.schedules import NoiseSchedule
from fundiff.traits import ModelTraits
from fundiff.views import FrequencyBands, GaussianFilter
from helpers import tiny_unet

H = 6


class Analytic:
    """eps = 0.3 x_t + cond * pattern + t / T (pattern breaks every symmetry); v = tanh(x_t) / 2 if with_v."""

    traits = ModelTraits()  # no preferences: the defaults (ddpm, eps)

    channels, image_size, value_range = 1, H, (0.0, 1.0)
    device, conditional, default_prompts = torch.device("cpu"), True, ("a",)
    traits = ModelTraits(default_sampler="ddim", dataset="analytic")  # not the defaults: wrappers must forward them

    def __init__(self, with_v=False, T=20):
        self.schedule = NoiseSchedule.linear(T)
        self.pattern = torch.arange(H * H, dtype=torch.float32).reshape(1, 1, H, H) / (H * H)
        self.with_v = with_v
        self.calls = []
        self.encoded = []  # every prompt list encode was called with

    def encode(self, prompts):
        self.encoded.append(list(prompts))
        return torch.tensor([[0.0] if p == "" else [float(len(p))] for p in prompts])

    def describe_prompt(self, prompt):
        return prompt

    def f(self, x_t, t, cond):
        eps = 0.3 * x_t + cond.reshape(-1, 1, 1, 1) * self.pattern + t.reshape(-1, 1, 1, 1) / self.schedule.T
        return eps, (torch.tanh(x_t) / 2 if self.with_v else None)

    def __call__(self, x_t, t, cond):
        self.calls.append(x_t.shape[0])
        return Prediction(*self.f(x_t, t, cond))


def _x(B=2, seed=0):
    return torch.randn(B, 1, H, H, generator=torch.Generator().manual_seed(seed))


def test_anagram_equals_hand_computed_mean_of_inverse_viewed_estimates():
    den = Analytic(with_v=True)
    x, t = _x(), torch.tensor([3, 17])
    c1, c2, c3 = den.encode(["a"]), den.encode(["bbb"]), den.encode(["cc"])
    anagram = Anagram(den, ["identity", "vflip", "negate"], [c1, c2, c3])
    got = anagram(x, t, anagram.encode(["", ""]))
    sqrt_abar = den.schedule.abar_at(t).sqrt().float().reshape(-1, 1, 1, 1)
    e1, v1 = den.f(x, t, c1.expand(2, 1))
    e2, v2 = den.f(x.flip(-2), t, c2.expand(2, 1))
    e3, v3 = den.f(sqrt_abar * 1.0 - x, t, c3.expand(2, 1))  # negate for [0, 1] data: sqrt(abar_t) (lo + hi) - x_t
    torch.testing.assert_close(got.eps, (e1 + e2.flip(-2) - e3) / 3)
    torch.testing.assert_close(got.v, (v1 + v2.flip(-2) + v3) / 3)  # variance: un-permuted, never negated
    assert den.calls == [6]  # one batched pass for all views


def test_anagram_of_identity_is_the_denoiser_and_input_is_not_mutated():
    den = Analytic()
    x, t = _x(), torch.tensor([5, 5])
    before = x.clone()
    cond = den.encode(["ab"])
    got = Anagram(den, ["identity"], [cond])(x, t, None)
    torch.testing.assert_close(got.eps, den.f(x, t, cond.expand(2, 1))[0])
    assert got.v is None and torch.equal(x, before)


def test_cfg_inside_anagram_equals_guiding_the_anagram():
    den = Analytic()
    x, t, s = _x(), torch.tensor([4, 9]), 3.0
    views, prompts = ["identity", "rot180"], ["a", "bbb"]
    inside = Anagram.from_prompts(CFG(den, s), views, prompts)(x, t, None).eps
    cond = Anagram.from_prompts(den, views, prompts)(x, t, None).eps
    null = Anagram.from_prompts(den, views, ["", ""])(x, t, None).eps
    torch.testing.assert_close(inside, null + s * (cond - null))
    assert den.calls[0] == 2 * 2 * 2  # views x (cond, uncond) x batch, one call


def test_hybrid_is_lowpass_of_one_plus_highpass_of_other():
    den = Analytic(with_v=True)
    x, t = _x(), torch.tensor([2, 11])
    f = GaussianFilter(kernel_size=3, sigma=1.0)
    lo, hi = den.encode(["a"]), den.encode(["bbbb"])
    got = Hybrid(den, lo, hi, f)(x, t, None)
    e_lo, v_lo = den.f(x, t, lo.expand(2, 1))
    e_hi, v_hi = den.f(x, t, hi.expand(2, 1))
    torch.testing.assert_close(got.eps, f.lowpass(e_lo) + f.highpass(e_hi))
    torch.testing.assert_close(got.v, (f.lowpass(v_lo) + f.highpass(v_hi)).clamp(-1, 1))
    same = Hybrid(den, lo, lo, f)(x, t, None)
    torch.testing.assert_close(same.eps, e_lo, rtol=0, atol=1e-6)  # lowpass + highpass = whole


def test_frequency_bands_sum_to_the_identity_and_two_are_lowpass_and_highpass():
    """Property: for random images and filters, f_low + f_mid + f_high (and f_low + f_high) is the image, to float
    rounding; every band is a real part of it (none is the whole or nothing); two bands are GaussianFilter's split."""
    g = torch.Generator().manual_seed(3)
    for trial in range(6):
        x = torch.randn(2, 3, 16, 12, generator=g) * 4 + 1
        s_low = 1.0 + 3 * float(torch.rand((), generator=g))
        s_mid = s_low * (0.2 + 0.6 * float(torch.rand((), generator=g)))
        low, mid = GaussianFilter(2 * (trial % 3) + 7, s_low), GaussianFilter(2 * (trial % 2) + 3, s_mid)
        three = FrequencyBands((low, mid)).split(x)
        assert len(three) == 3
        torch.testing.assert_close(three[0] + three[1] + three[2], x, rtol=0, atol=1e-5)
        torch.testing.assert_close(three[1], mid.lowpass(x) - low.lowpass(x))
        for band in three:
            assert band.shape == x.shape and not torch.allclose(band, x, atol=1e-2) and band.abs().max() > 1e-2
        two = FrequencyBands((low,)).split(x)
        assert torch.equal(two[0], low.lowpass(x)) and torch.equal(two[1], low.highpass(x))  # bit for bit
    assert FrequencyBands().split(x) == [x]
    with pytest.raises(FundiffError, match="blur less and less"):
        FrequencyBands((GaussianFilter(5, 1.0), GaussianFilter(5, 2.0)))


def test_two_prompt_factorized_is_todays_hybrid_bit_for_bit():
    den = Analytic(with_v=True)
    x, t = _x(), torch.tensor([2, 11])
    f = GaussianFilter(kernel_size=3, sigma=1.0)
    lo, hi = den.encode(["a"]), den.encode(["bbbb"])
    e_lo, v_lo = den.f(x, t, lo.expand(2, 1))
    e_hi, v_hi = den.f(x, t, hi.expand(2, 1))
    for model in (Hybrid(den, lo, hi, f), Factorized(den, [lo, hi], FrequencyBands((f,)))):
        got = model(x, t, None)
        assert torch.equal(got.eps, f.lowpass(e_lo) + f.highpass(e_hi))  # today's formula, same bits
        assert torch.equal(got.v, (f.lowpass(v_lo) + f.highpass(v_hi)).clamp(-1, 1))


def test_three_prompt_hybrid_is_the_sum_of_its_bands_and_equal_prompts_give_the_plain_estimate():
    den = Analytic(with_v=True)
    x, t = _x(), torch.tensor([4, 15])
    low, mid = GaussianFilter(5, 1.5), GaussianFilter(3, 0.6)
    bands = FrequencyBands((low, mid))
    c1, c2, c3 = den.encode(["a"]), den.encode(["bbb"]), den.encode(["cc"])
    got = Factorized(den, [c1, c2, c3], bands)(x, t, None)
    (e1, v1), (e2, v2), (e3, v3) = (den.f(x, t, c.expand(2, 1)) for c in (c1, c2, c3))
    torch.testing.assert_close(got.eps, low.lowpass(e1) + (mid.lowpass(e2) - low.lowpass(e2)) + mid.highpass(e3))
    torch.testing.assert_close(got.v, (low.lowpass(v1) + mid.lowpass(v2) - low.lowpass(v2) + mid.highpass(v3)))
    assert den.calls == [6]  # the three parts in one batched call
    assert not torch.allclose(got.eps, e1, atol=1e-3)  # the prompts differ: so does the composite
    same = Factorized(den, [c2, c2, c2], bands)(x, t, None)
    torch.testing.assert_close(same.eps, e2, rtol=0, atol=1e-6)
    torch.testing.assert_close(same.v, v2, rtol=0, atol=1e-6)
    with pytest.raises(FundiffError, match="one prompt per band"):
        Factorized(den, [c1, c2], bands)


def test_hold_band_puts_the_given_images_band_noised_to_t_prev_in_place_of_x_t_prevs():
    den = Analytic()
    f = GaussianFilter(3, 1.0)
    x_prev, x0_hat, x_ref = _x(2, seed=1), _x(2, seed=2), _x(1, seed=3)
    hold = hold_band(den.schedule, x_ref, f.lowpass, generator=torch.Generator().manual_seed(5))
    last = hold(3, 0, -1, x_prev, x0_hat)  # to the clean image: the image itself
    torch.testing.assert_close(last, f.highpass(x_prev) + f.lowpass(x_ref).expand(2, -1, -1, -1))
    noise = torch.randn(2, 1, H, H, generator=torch.Generator().manual_seed(5))
    mid = hold(1, 12, 7, x_prev, x0_hat)
    ref_t = den.schedule.q_sample(x_ref.expand(2, -1, -1, -1), 7, noise)
    torch.testing.assert_close(mid, f.highpass(x_prev) + f.lowpass(ref_t))
    with pytest.raises(FundiffError, match="one image or one per sample"):
        hold_band(den.schedule, _x(3), f.lowpass, generator=None)(0, 1, 0, x_prev, x0_hat)


def test_composers_reject_mismatched_and_unknown_inputs():
    den = Analytic()
    c = den.encode(["a"])
    with pytest.raises(FundiffError, match="one prompt per view"):
        Anagram(den, ["identity", "vflip"], [c])
    with pytest.raises(FundiffError, match="unknown view"):
        Anagram(den, ["identity", "sideways"], [c, c])
    with pytest.raises(FundiffError, match="batch size"):
        Anagram(den, ["identity"], [den.encode(["a", "b", "c"])])(_x(2), torch.tensor([1, 1]), None)
    with pytest.raises(FundiffError, match="null prompts"):
        Anagram(den, ["identity"], [c]).encode(["a"])


def test_unknown_prompt_is_a_one_line_error():
    with pytest.raises(FundiffError) as e:
        Anagram.from_prompts(tiny_unet(), ["identity", "rot180"], ["6", "elephant"])
    assert "\n" not in str(e.value) and "elephant" in str(e.value)


def test_anagram_and_hybrid_samples_with_a_unet_keep_their_symmetries():
    """Whole DDIM (eta 0) samples with a UNet: the anagram (identity: 6, rot180: 9) from x_T, turned by 180
    degrees, is the anagram (identity: 9, rot180: 6) from the turned x_T (its two views are one image); a hybrid
    of a prompt with itself samples as that prompt under CFG alone (lowpass + highpass = identity). DDPM samples
    of either depend on the seed. (The untrained UNet hardly reads its class: prompts are not told apart here.)"""
    den = tiny_unet()
    steps = ts.strided(20, steps=4)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(7))

    def ddim(model, x):
        return samplers.sample(model, x, steps, cond=model.encode(["", ""]), sampler="ddim")

    def rot180(x):
        return x.flip(-2, -1)

    cfg = CFG(den, 5.0)
    anagram = Anagram.from_prompts(cfg, ["identity", "rot180"], ["6", "9"])
    a = ddim(anagram, x_T)
    assert a.shape == (2, 1, 28, 28) and torch.isfinite(a).all()
    swapped = ddim(Anagram.from_prompts(cfg, ["identity", "rot180"], ["9", "6"]), rot180(x_T))
    torch.testing.assert_close(swapped, rot180(a), rtol=0, atol=1e-5)
    assert not torch.allclose(a, rot180(a), atol=1e-3)  # the image itself is no symmetric one

    hybrid = Hybrid.from_prompts(cfg, "0", "1", GaussianFilter(5, 1.0))
    alone = samplers.sample(cfg, x_T, steps, cond=cfg.encode(["0", "0"]), sampler="ddim")
    same = ddim(Hybrid.from_prompts(cfg, "0", "0", GaussianFilter(5, 1.0)), x_T)
    torch.testing.assert_close(same, alone, rtol=0, atol=1e-5)
    three = FrequencyBands((GaussianFilter(5, 1.5), GaussianFilter(3, 0.7)))
    torch.testing.assert_close(ddim(Factorized.from_prompts(cfg, ["0"] * 3, three), x_T), alone, rtol=0, atol=1e-5)

    for model in (anagram, hybrid):

        def run(seed, model=model):
            g = torch.Generator().manual_seed(seed)
            return samplers.sample_from_noise(model, model.encode(["", ""]), steps, generator=g)

        assert not torch.equal(run(7), run(8))


def test_cfg_of_a_composer_is_refused_and_composers_refuse_call_time_prompts():
    den = Analytic()
    f = GaussianFilter(kernel_size=3, sigma=1.0)
    anagram = Anagram.from_prompts(den, ["identity", "rot180"], ["a", "bb"])
    hybrid = Hybrid.from_prompts(den, "a", "bb", f)
    for composer, name in ((anagram, "Anagram"), (hybrid, "Hybrid")):
        assert composer.conditional is False
        with pytest.raises(FundiffError, match=rf"wrap the base model instead: {name}\(CFG\(den, s\)") as e:
            CFG(composer, 5.0)
        assert "\n" not in str(e.value)
        with pytest.raises(FundiffError, match="takes its prompts at construction"):
            composer(_x(), torch.tensor([1, 1]), den.encode(["a", "a"]))  # would be ignored: refused
        got = composer(_x(), torch.tensor([1, 1]), composer.encode(["", ""]))  # the (B, 0) placeholder is fine
        torch.testing.assert_close(got.eps, composer(_x(), torch.tensor([1, 1]), None).eps)


def test_cfg_encodes_the_null_prompt_once_per_sampling():
    den = Analytic()
    model = CFG(den, 3.0)
    cond = model.encode(["a", "bb", "a"])
    den.encoded.clear()
    samplers.sample_from_noise(model, cond, ts.strided(20, steps=5), generator=torch.Generator().manual_seed(0))
    assert den.encoded == [[""]]  # once, not once per step (5 steps)
    assert den.calls == [6] * 5  # and each step is one batched cond + uncond pass


def test_cfg_of_an_unconditional_model_is_refused():
    time_model = tiny_unet(kind="time")
    assert time_model.conditional is False and time_model.default_prompts == ("",)
    with pytest.raises(FundiffError, match="unconditional model"):
        CFG(time_model, 5.0)


def test_cfg_anagram_and_hybrid_report_the_wrapped_models_traits():
    den = Analytic()
    f = GaussianFilter(kernel_size=3, sigma=1.0)
    wrappers = {
        "CFG": CFG(den, 3.0),
        "Anagram": Anagram.from_prompts(den, ["identity", "rot180"], ["a", "bb"]),
        "Hybrid": Hybrid.from_prompts(den, "a", "bb", f),
        "Anagram(CFG)": Anagram.from_prompts(CFG(den, 3.0), ["identity", "negate"], ["a", "bb"]),
        "Hybrid(CFG)": Hybrid.from_prompts(CFG(den, 3.0), "a", "bb", f),
    }
    for name, w in wrappers.items():
        assert w.traits is den.traits, name
        assert (w.traits.default_sampler, w.traits.dataset) == ("ddim", "analytic"), name
        assert samplers.default_sampler_of(w) == "ddim", name
    plain = tiny_unet()
    assert Anagram.from_prompts(plain, ["identity"], ["3"]).traits.default_sampler == "ddpm"  # not the Analytic's
