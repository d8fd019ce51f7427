"""DeepFloyd IF backend (fundiff.backends.deepfloyd), offline: tiny random components of IF's real classes.

The session fixture builds a small ``UNet2DConditionModel`` with IF stage I's block types (3 in / 6 out
channels, text cross-attention, addition_embed_type "text"), a ``DDPMScheduler`` with IF's config
(``learned_range``, ``squaredcos_cap_v2``, dynamic thresholding), a tiny ``T5EncoderModel`` from a
``T5Config`` and a tokenizer built here from a small Unigram vocabulary (no hub download), saves them
with ``IFPipeline.save_pretrained`` (safetensors) and loads them through ``runs.load_denoiser``, the
path real weights take. No network, no weights. Tests needing a GPU or real weights are marked.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
import torch

# found, not imported: every pytest worker collects every module, and importing diffusers costs ~1.9 s
_MISSING = [m for m in ("diffusers", "transformers", "tokenizers") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"the IF backend needs {', '.join(_MISSING)}: pip install 'fundiff[deepfloyd]'"
)

from fundiff import cli, edits, samplers, techniques  # noqa: E402
from fundiff import timesteps as ts_lib  # noqa: E402
from fundiff.backends import deepfloyd, embeddings, runs  # noqa: E402
from fundiff.denoisers import Denoiser  # noqa: E402
from fundiff.errors import FundiffError  # noqa: E402
from fundiff.guidance import CFG  # noqa: E402

SIZE = 32  # tiny stage I resolution (IF's is 64); hybrids' kernel 33 needs more than 32 // 2
WORDS = (
    "a an the of photo high quality oil painting snowy mountain village man old people around campfire skull "
    "waterfalls lithograph rocket ship wearing hat"
).split()


def _tokenizer():
    """A T5-style Unigram tokenizer (pad 0, eos 1, unk 2; "</s>" appended) built in code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + w, -1.0 - 0.01 * i) for i, w in enumerate(WORDS)] + [
        (c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"
    ]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=77
    ), len(vocab)


def _unet(*, in_channels: int, sample_size: int, **extra):
    """IF's UNet block types at toy width (diffusers' own IF test components)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        layers_per_block=1,
        block_out_channels=[32, 64],
        down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        in_channels=in_channels,
        out_channels=6,
        cross_attention_dim=32,
        encoder_hid_dim=32,
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
        **extra,
    )


def _if_scheduler(**kw):
    """IF-I's scheduler config: cosine schedule, learned_range variance, dynamic thresholding (ratio 0.95, max 1.5)."""
    from diffusers import DDPMScheduler

    cfg = dict(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        variance_type="learned_range",
        prediction_type="epsilon",
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.5,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    return DDPMScheduler(**(cfg | kw))


@pytest.fixture(scope="session")
def tiny_if(tmp_path_factory) -> Path:
    """A tiny IF stage I folder (model_index.json, safetensors), built once per session."""
    from diffusers import IFPipeline
    from transformers import T5Config, T5EncoderModel

    tokenizer, vocab_size = _tokenizer()
    torch.manual_seed(0)
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    torch.manual_seed(0)
    unet = _unet(in_channels=3, sample_size=SIZE)
    pipe = IFPipeline(
        tokenizer=tokenizer,
        text_encoder=t5,
        unet=unet,
        scheduler=_if_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    folder = tmp_path_factory.mktemp("weights") / "IF-I-tiny"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_stage2(tmp_path_factory) -> Path:
    """A tiny IF stage II folder (IFSuperResolutionPipeline, 2x upscaling, no text encoder)."""
    from diffusers import DDPMScheduler, IFSuperResolutionPipeline

    torch.manual_seed(0)
    unet = _unet(
        in_channels=6,
        sample_size=2 * SIZE,
        class_embed_type="timestep",
        mid_block_scale_factor=1.414,
        time_embedding_act_fn="gelu",
        time_embedding_dim=32,
    )
    pipe = IFSuperResolutionPipeline(
        tokenizer=None,
        text_encoder=None,
        unet=unet,
        scheduler=_if_scheduler(),
        image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    folder = tmp_path_factory.mktemp("weights2") / "IF-II-tiny"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture
def den(tiny_if):
    return runs.load_denoiser(tiny_if, device="cpu", precision="auto")


def _pipeline(cls, folder, **scheduler_kw):
    """A diffusers IF pipeline from the same folder, its scheduler's config changed by ``scheduler_kw``."""
    from diffusers import DDPMScheduler

    pipe = cls.from_pretrained(folder, use_safetensors=True, safety_checker=None, watermarker=None)
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, **scheduler_kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- the denoiser -----------------------------------------------------------------------------------------
def test_if_folder_loads_as_a_denoiser_with_the_models_own_schedule(den, tiny_if):
    from diffusers import DDPMScheduler

    assert isinstance(den, deepfloyd.IFDenoiser) and isinstance(den, Denoiser)
    assert (den.channels, den.image_size, den.value_range) == (3, SIZE, (-1.0, 1.0))
    assert den.conditional and den.default_prompts == ("a high quality photo",) and den.schedule.T == 1000
    assert den.unet.dtype == torch.float32  # fp32 on the CPU
    theirs = DDPMScheduler.from_pretrained(tiny_if, subfolder="scheduler").alphas_cumprod.double()
    assert torch.allclose(den.schedule.abar, theirs, rtol=1e-5, atol=1e-7)


def test_if_traits_carry_its_pipeline_timesteps_and_technique_defaults_and_wrappers_forward_them(den, tiny_if):
    from diffusers import DDPMScheduler

    traits = den.traits
    assert traits.technique_defaults is deepfloyd.IF_DEFAULTS
    assert (traits.technique_defaults.hybrid_kernel_size, traits.technique_defaults.hybrid_sigma) == (33, 2.0)
    assert (traits.default_sampler, traits.objective, traits.dataset) == ("ddpm", "eps", None)
    assert traits.autocast_dtype is None and traits.channels_last is False  # IF runs in its own dtype
    theirs = DDPMScheduler.from_pretrained(tiny_if, subfolder="scheduler")
    theirs.set_timesteps(7)
    assert traits.pipeline_timesteps(7) == [int(t) for t in theirs.timesteps]  # IFPipeline's, not strided
    assert traits.pipeline_timesteps(7) != ts_lib.strided(1000, steps=7)  # the fallback differs: the check can fail
    for wrapper in (CFG(den, 5.0), deepfloyd.DynamicThresholding(CFG(den, 5.0)), deepfloyd.DynamicThresholding(den)):
        assert wrapper.traits is traits
    for gone in ("technique_defaults", "default_sampler", "pipeline_timesteps", "objective", "dataset"):
        assert not hasattr(den, gone), gone  # one source: den.traits


def test_prediction_splits_eps_and_learned_variance(den):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, SIZE, SIZE, generator=g)
    t = torch.tensor([999, 10])
    cond = den.encode(["a rocket ship", ""])
    assert cond.shape == (2, 77, 32) and cond.dtype == torch.float32
    pred = den(x, t, cond)
    raw = den.unet(x, t, encoder_hidden_states=cond).sample
    assert pred.eps.shape == pred.v.shape == (2, 3, SIZE, SIZE)
    assert torch.equal(pred.eps, raw[:, :3]) and torch.equal(pred.v, raw[:, 3:])
    assert torch.equal(den(x, t, cond).eps, pred.eps)  # deterministic


def test_embeddings_match_ifpipeline_encode_prompt(den, tiny_if):
    from diffusers import IFPipeline

    pipe = _pipeline(IFPipeline, tiny_if)
    pos, neg = pipe.encode_prompt("A Rocket Ship", do_classifier_free_guidance=True, device="cpu", clean_caption=False)
    assert torch.allclose(den.encode(["A Rocket Ship"]), pos, atol=1e-6)
    assert torch.allclose(den.encode([""]), neg, atol=1e-6)


# -- equivalence with diffusers --------------------------------------------------------------------------
def _max_diff(a, b) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("steps", [4, 10])
def test_text_to_image_equals_ifpipeline(den, tiny_if, steps):
    """fundiff's DDPM loop (CFG 5, learned variance) == IFPipeline on the scheduler's own timesteps, same
    embeddings and generator seed. IF's scheduler thresholds x0_hat; the write-up's loop does not, so this
    compares with thresholding and clipping off (the next test covers them)."""
    from diffusers import IFPipeline

    pipe = _pipeline(IFPipeline, tiny_if, thresholding=False, clip_sample=False)
    cond, null = den.encode(["a rocket ship"]), den.encode([""])
    theirs = pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=null,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    ts = den.traits.pipeline_timesteps(steps)
    assert ts == [int(t) for t in pipe.scheduler.timesteps]
    ours = samplers.sample_from_noise(CFG(den, 5.0), cond, ts, generator=torch.Generator().manual_seed(0))
    diff = _max_diff(ours, theirs)
    print(f"IFPipeline vs fundiff, {steps} steps: max abs diff {diff:.2e}")
    assert diff <= 1e-4


def test_text_to_image_with_ifs_thresholding_equals_ifpipeline(den, tiny_if):
    """With IF's own scheduler config (dynamic thresholding 0.95 / 1.5), DynamicThresholding(CFG(den)) == IFPipeline."""
    from diffusers import IFPipeline

    pipe = _pipeline(IFPipeline, tiny_if)
    assert pipe.scheduler.config.thresholding
    cond, null = den.encode(["a rocket ship"]), den.encode([""])
    kw = dict(num_inference_steps=10, guidance_scale=5.0, output_type="pt")
    theirs = pipe(prompt_embeds=cond, negative_prompt_embeds=null, generator=torch.Generator().manual_seed(0), **kw)
    assert float(theirs.images.abs().max()) <= 1.0  # thresholded x0_hat at the last step
    model = deepfloyd.DynamicThresholding.from_scheduler_config(CFG(den, 5.0), den.scheduler.config)
    assert isinstance(model, deepfloyd.DynamicThresholding) and model.ratio == 0.95 and model.max_value == 1.5
    ts = den.traits.pipeline_timesteps(10)
    ours = samplers.sample_from_noise(model, cond, ts, generator=torch.Generator().manual_seed(0))
    diff = _max_diff(ours, theirs.images)
    print(f"IFPipeline (thresholding) vs fundiff: max abs diff {diff:.2e}")
    assert diff <= 1e-4
    plain = samplers.sample_from_noise(CFG(den, 5.0), cond, ts, generator=torch.Generator().manual_seed(0))
    assert _max_diff(plain, theirs.images) > 1e-2  # thresholding matters here: the comparison can fail


def test_sdedit_equals_ifimg2imgpipeline(den, tiny_if):
    """SDEdit (edits.sdedit from timesteps[i_start]) == IFImg2ImgPipeline at strength s: the pipeline starts at
    index i_start = steps - int(steps * s) of its scheduler's timesteps, noises the image with the first draw of
    the generator (scheduler.add_noise = q_sample) and runs the same loop. Thresholding off as above."""
    from diffusers import IFImg2ImgPipeline

    pipe = _pipeline(IFImg2ImgPipeline, tiny_if, thresholding=False, clip_sample=False)
    x_0 = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    cond, null = den.encode(["an oil painting of a snowy mountain village"]), den.encode([""])
    steps, strength = 10, 0.6
    theirs = pipe(
        image=x_0,
        prompt_embeds=cond,
        negative_prompt_embeds=null,
        strength=strength,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    i_start = steps - int(steps * strength)
    ours = edits.sdedit(
        CFG(den, 5.0),
        x_0,
        i_start,
        den.traits.pipeline_timesteps(steps),
        cond=cond,
        generator=torch.Generator().manual_seed(0),
    )
    diff = _max_diff(ours, theirs)
    print(f"IFImg2ImgPipeline vs fundiff SDEdit: max abs diff {diff:.2e}")
    assert diff <= 1e-4


# -- prompts: cache and files ----------------------------------------------------------------------------
def _no_t5(*args, **kwargs):
    raise AssertionError("T5 was loaded although every prompt was cached")


def test_embeddings_are_cached_and_a_second_run_never_loads_t5(tiny_if, tmp_path, monkeypatch):
    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path / "cache"))
    first = runs.load_denoiser(tiny_if)
    a = first.encode(["a rocket ship", "a rocket ship"])
    assert first.prompts.t5_loads == 1
    a = torch.cat([a[:1], first.encode([""]), first.encode(["a rocket ship"])])  # the null prompt came along
    assert first.prompts.t5_loads == 1
    files = sorted((tmp_path / "cache" / "embeddings").glob("*.safetensors"))
    assert len(files) == 2  # one per distinct prompt
    monkeypatch.setattr(deepfloyd, "_load_t5", _no_t5)
    second = runs.load_denoiser(tiny_if)
    b = second.encode(["a rocket ship", "", "A rocket ship "])  # IF's preprocessing: same prompt
    assert second.prompts.t5_loads == 0
    assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="T5 was loaded"):
        second.encode(["a skull"])  # not cached: would need T5


def test_a_cli_run_loads_t5_at_most_once_and_encodes_the_null_prompt_once(tiny_if, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path / "cache"))
    loads, real = [], deepfloyd._load_t5
    monkeypatch.setattr(deepfloyd, "_load_t5", lambda *a, **kw: loads.append(1) or real(*a, **kw))
    argv = ["generate", "--model", str(tiny_if), "--prompt", "a skull", "--n", "1", "--out", str(tmp_path / "g")]
    _run([*argv, "--steps", "2"], capsys)
    assert len(loads) == 1  # "a skull" and "" together
    _run([*argv, "--steps", "3"], capsys)
    assert len(loads) == 1  # all cached now
    den = runs.load_denoiser(tiny_if)
    calls = {}
    for steps in (2, 6):
        counted = []
        den.prompts = _Counting(den.prompts, counted)
        techniques.sampling_figure(den, ["a skull"], n=1, timesteps=den.traits.pipeline_timesteps(steps))
        den.prompts = den.prompts.inner
        calls[steps] = len(counted)
    assert calls[2] == calls[6] == 3  # prompts at scale 1 and 5, the null prompt once: not per step


class _Counting:
    def __init__(self, inner, counted):
        self.inner, self.counted = inner, counted

    def __call__(self, prompts):
        self.counted.append(list(prompts))
        return self.inner(prompts)


def test_embeddings_file_is_used_before_t5_and_read_without_pickle(tiny_if, tmp_path, monkeypatch):
    emb = {"a lithograph of a skull": torch.randn(1, 77, 32), "": torch.zeros(77, 32)}
    path = tmp_path / "prompt_embeds_dict.pth"
    torch.save(emb, path)
    monkeypatch.setattr(deepfloyd, "_load_t5", _no_t5)
    den = runs.load_denoiser(tiny_if, embeddings=path)
    got = den.encode(["a lithograph of a skull", ""])
    assert torch.equal(got[0], emb["a lithograph of a skull"][0]) and torch.equal(got[1], emb[""])
    assert den.prompts.t5_loads == 0

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(FundiffError, match="dict of tensors"):
        embeddings.load_embeddings_file(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"a rocket ship": torch.zeros(1, 77, 4096)}, wrong)  # made for the real IF
    with pytest.raises(FundiffError, match="width 4096"):
        runs.load_denoiser(tiny_if, embeddings=wrong).encode(["a rocket ship"])


# -- safe loading and errors -----------------------------------------------------------------------------
def test_a_folder_without_safetensors_weights_is_refused(tiny_if, tmp_path):
    folder = tmp_path / "IF-pickle"
    shutil.copytree(tiny_if, folder)
    for f in (folder / "unet").glob("*.safetensors"):
        f.rename(f.with_name("diffusion_pytorch_model.bin"))
    with pytest.raises(FundiffError, match="no .safetensors weights.*safetensors only") as e:
        runs.load_denoiser(folder)
    assert "\n" not in str(e.value)


def test_hub_ids_resolve_through_the_hf_cache_and_fail_offline_with_instructions(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    for model in deepfloyd.STAGE_I_IDS:
        with pytest.raises(FundiffError, match="accept its licence.*huggingface-cli login.*local folder") as e:
            runs.resolve(model)
        assert "\n" not in str(e.value)
    with pytest.raises(FundiffError, match="not found: give a run folder"):
        runs.resolve("runs/mnist-class-missing")  # a path, never a hub id


def test_hub_id_uses_the_snapshot_folder(tiny_if, monkeypatch):
    calls = []

    def snapshot(repo_id, **kw):
        calls.append((repo_id, kw))
        return str(tiny_if)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    assert runs.resolve("DeepFloyd/IF-I-M-v1.0") == tiny_if
    repo, kw = calls[0]
    assert repo == "DeepFloyd/IF-I-M-v1.0"
    assert "unet/*fp16*.safetensors*" in kw["allow_patterns"] and "*.bin" in kw["ignore_patterns"]


def test_bad_options_are_one_line_errors(tiny_if, tiny_stage2, tmp_path):
    with pytest.raises(FundiffError, match="needs --device cuda"):
        runs.load_denoiser(tiny_if, offload=True)
    with pytest.raises(FundiffError, match="stage II upscaler"):
        runs.load_denoiser(tiny_stage2)
    with pytest.raises(FundiffError, match="apply to DeepFloyd IF models"):
        runs.load_denoiser("mnist-class", embeddings=tmp_path / "e.pth")
    with pytest.raises(FundiffError, match="not found"):
        embeddings.load_embeddings_file(tmp_path / "missing.pth")


# -- stage II -------------------------------------------------------------------------------------------
def test_stage_two_upscales_with_the_same_embeddings(den, tiny_stage2):
    from fundiff.backends import deepfloyd_stage2

    up = deepfloyd_stage2.upscale_fn(den, tiny_stage2, steps=2, seed=0)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    big = up(x, ["a rocket ship", "a man wearing a hat"])
    assert big.shape == (2, 3, 2 * SIZE, 2 * SIZE) and torch.isfinite(big).all()
    assert torch.equal(up(x, ["a rocket ship", "a man wearing a hat"]), big)  # seeded


# -- the CLI on the tiny folder -----------------------------------------------------------------------------
@pytest.fixture
def photo(tmp_path):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    arr = (torch.rand(40, 48, 3, generator=g) * 255).to(torch.uint8).numpy()
    path = tmp_path / "photo.png"
    Image.fromarray(arr, "RGB").save(path)
    return path


def _run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_every_part_a_command_runs_on_the_tiny_if_folder(tiny_if, tiny_stage2, photo, tmp_path, capsys, monkeypatch):
    common = ["--model", str(tiny_if), "--device", "cpu", "--steps", "3"]
    commands = {
        "setup": ["--num-steps", "2", "3", "--upscale", str(tiny_stage2), "--upscale-steps", "2"],
        "noise": ["--image", str(photo)],
        "blur": ["--image", str(photo)],
        "denoise": ["--image", str(photo), "--i-start", "1", "--every", "1"],
        "generate": ["--n", "2", "--prompt", "a rocket ship", "--upscale", str(tiny_stage2), "--upscale-steps", "2"],
        "sdedit": ["--image", str(photo), "--i-start", "1", "2"],
        "inpaint": ["--image", str(photo), "--n", "1", "--method", "repaint", "--jump-length", "1", "--resample", "2"],
        "anagram": ["--n", "1"],
        "hybrid": ["--n", "1"],
    }
    for name, extra in commands.items():
        argv = [name, *common, "--out", str(tmp_path / name), *extra]
        if name in ("setup", "noise", "blur"):  # setup has its own --num-steps; noise and blur do not sample
            argv.remove("--steps"), argv.remove("3")
        out = _run(argv, capsys)
        figure = {"denoise": "one_step", "sdedit": "handdrawn"}.get(name, name)  # sdedit of --image files
        assert "wrote" in out and (tmp_path / name / f"{figure}.png").is_file(), name
    from PIL import Image

    assert Image.open(tmp_path / "generate" / "generate" / "a-rocket-ship-cfg-s=5_sample-1.png").size == (SIZE, SIZE)
    assert (tmp_path / "generate" / "generate_upscaled.png").is_file()
    assert (tmp_path / "setup" / "setup_upscaled.png").is_file()
    # every prompt of these runs is cached now: a later run never loads T5
    monkeypatch.setattr(deepfloyd, "_load_t5", _no_t5)
    _run(["anagram", *common, "--n", "1", "--out", str(tmp_path / "again")], capsys)


def test_cli_errors_on_if_are_one_line(tiny_if, tmp_path, capsys):
    def fails(argv, match):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and match in err, err

    base = ["--model", str(tiny_if), "--device", "cpu", "--steps", "2", "--out", str(tmp_path)]
    fails(["sdedit", *base, "--i-start", "1"], "pass --image")
    if not torch.cuda.is_available():
        fails(["generate", "--model", "DeepFloyd/IF-I-XL-v1.0", "--device", "cuda"], "no CUDA GPU is available")
    fails(["generate", *base, "--offload"], "needs --device cuda")
    fails(
        ["generate", "--model", "mnist-class", "--upscale", str(tiny_if), "--steps", "2", "--out", str(tmp_path)],
        "IF --model",
    )


# -- figures on IF: shapes, range, determinism --------------------------------------------------------------
def test_if_figures_are_deterministic_and_in_range(den):
    ts = den.traits.pipeline_timesteps(3)
    a = techniques.sampling_figure(den, ["a rocket ship"], n=2, timesteps=ts, seed=5)
    b = techniques.sampling_figure(den, ["a rocket ship"], n=2, timesteps=ts, seed=5)
    c = techniques.sampling_figure(den, ["a rocket ship"], n=2, timesteps=ts, seed=6)
    x = a.images["CFG s=5"]
    assert x.shape == (2, 3, SIZE, SIZE) and torch.isfinite(x).all()
    assert torch.equal(x, b.images["CFG s=5"]) and not torch.equal(x, c.images["CFG s=5"])
    h = techniques.hybrid_figure(den, "a skull", "waterfalls", kernel_size=33, sigma=2.0, n=1, timesteps=ts)
    assert h.images["x_0"].shape == (1, 3, SIZE, SIZE)
    s = techniques.setup_figure(den, ["a rocket ship", "a man wearing a hat"], steps=(2, 3))
    assert set(s.images) == {"2 steps", "3 steps"} and s.images["2 steps"].shape == (2, 3, SIZE, SIZE)


def test_dynamic_thresholding_keeps_x0_hat_in_range(den):
    model = deepfloyd.DynamicThresholding(den, ratio=0.95, max_value=1.5)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 3
    t = torch.tensor([500, 500])
    x0 = den.schedule.x0_from_eps(x, t, model(x, t, den.encode(["", ""])).eps)
    assert float(x0.abs().max()) <= 1 + 1e-4


# -- GPU and real weights (skipped without them) -----------------------------------------------------------
@pytest.mark.gpu
def test_tiny_pipeline_in_fp16_on_cuda(tiny_if):
    """fp16 on CUDA (the backend's default there) against fp32 on the CPU, same noise: close, finite."""
    from diffusers import IFPipeline

    den = runs.load_denoiser(tiny_if, device="cuda", precision="auto")
    assert den.unet.dtype == torch.float16
    cond = den.encode(["a rocket ship"])
    ts = den.traits.pipeline_timesteps(10)
    ours = samplers.sample_from_noise(
        CFG(den, 5.0), cond, ts, generator=torch.Generator("cuda").manual_seed(0), device="cuda"
    )
    pipe = _pipeline(IFPipeline, tiny_if, thresholding=False, clip_sample=False).to("cuda", torch.float16)
    theirs = pipe(
        prompt_embeds=cond.half(),
        negative_prompt_embeds=den.encode([""]).half(),
        num_inference_steps=10,
        guidance_scale=5.0,
        generator=torch.Generator("cuda").manual_seed(0),
        output_type="pt",
    ).images
    diff = _max_diff(ours, theirs.float())
    print(f"fp16 CUDA, IFPipeline vs fundiff: max abs diff {diff:.2e}")
    assert torch.isfinite(ours).all() and diff < 2e-2


@pytest.mark.gpu
def test_offload_on_cuda_moves_the_unet_out_of_t5s_way(tiny_if, tmp_path, monkeypatch):
    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path))  # nothing cached: T5 must load
    den = runs.load_denoiser(tiny_if, device="cuda", offload=True)
    assert den.unet.device.type == "cpu"
    x = samplers.sample_from_noise(
        CFG(den, 5.0),
        den.encode(["a rocket ship"]),
        den.traits.pipeline_timesteps(3),
        generator=torch.Generator("cuda").manual_seed(0),
        device="cuda",
    )
    assert den.unet.device.type == "cuda" and x.device.type == "cuda" and torch.isfinite(x).all()
    den.encode(["a skull"])  # T5 again: the UNet leaves the GPU first
    assert den.unet.device.type == "cpu" and den.prompts.t5_loads == 2  # "" came with the first prompt


REAL = os.environ.get("FUNDIFF_IF_WEIGHTS")  # a local IF stage I folder or hub id whose weights are present


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason="set FUNDIFF_IF_WEIGHTS to an IF stage I folder or cached hub id")
def test_real_if_generates_64x64_images():
    den = runs.load_denoiser(REAL, device="cuda", precision="auto")
    fig = techniques.sampling_figure(den, ["a high quality photo"], n=1, guidance=7.0)
    x = fig.images["CFG s=7"]
    assert x.shape == (1, 3, 64, 64) and torch.isfinite(x).all() and float(x.abs().max()) < 3
