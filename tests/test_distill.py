"""`fundiff distill`: the teacher's pairs, the reflow student, its built-in guidance and its own timesteps."""

import pytest
import torch

from fundiff import samplers, training
from fundiff import timesteps as ts
from fundiff.backends import runs
from fundiff.checkpoints import load_config, read_tensors
from fundiff.errors import FundiffError
from fundiff.guidance import CFG, scale_for
from fundiff.training import distill as dl
from helpers import rejected, synthetic_data, tiny_config

T = 20


def _tiny_flow_run(tmp_path_factory, kind: str):
    """A tiny flow ``kind`` model (T = 20), one epoch on synthetic squares."""
    root = tmp_path_factory.mktemp(f"{kind}-teacher")
    cfg = tiny_config(kind, objective="flow", flow_times="uniform", epochs=1, T=T)
    training.train(cfg, root / "run", data=synthetic_data(32), progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return _tiny_flow_run(tmp_path_factory, "class")


def _cfg(teacher, **kw) -> dl.DistillConfig:
    base = dict(teacher=str(teacher), pairs=24, teacher_steps=2, steps=2, epochs=2, batch_size=8, guidance=2.0)
    return dl.DistillConfig(**(base | kw))


def _distill(cfg: dl.DistillConfig, out, **kw):
    den = runs.load_denoiser(cfg.teacher, precision="fp32")
    return dl.distill(cfg, out, den, load_config(runs.resolve(cfg.teacher))["train"], progress=False, **kw)


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "run"
    _distill(_cfg(teacher), out)
    return out


def test_the_pairs_are_the_guided_teachers_samples_of_seeded_noise(teacher, student):
    tensors, _ = read_tensors(dl.chunk_path(student, 0))
    cfg = _cfg(teacher)
    n_cond, n_null = dl.chunk_plan(cfg, 10)[0]
    assert (n_cond, n_null) == (22, 2) and tensors["y"].tolist() == [k % 10 for k in range(22)] + [10, 10]
    x_T = torch.randn((24, 1, 28, 28), generator=torch.Generator().manual_seed(cfg.seed))
    assert torch.equal(tensors["x_T"], x_T)
    den = runs.load_denoiser(str(teacher), precision="fp32")
    steps = ts.resolve(T, steps=2)
    want = samplers.sample(CFG(den, 2.0), x_T[:3], steps, cond=den.one_hot([0, 1, 2]), sampler="dpm++")
    torch.testing.assert_close(tensors["x_0"][:3], want.clamp(0, 1), atol=1e-5, rtol=0)
    null = samplers.sample(den, x_T[22:], steps, cond=den.encode(["", ""]), sampler="dpm++")
    torch.testing.assert_close(tensors["x_0"][22:], null.clamp(0, 1), atol=1e-5, rtol=0)


def test_the_student_samples_in_its_own_steps_with_guidance_built_in(student):
    den = runs.load_denoiser(str(student), precision="fp32")
    assert den.traits.guidance == 2.0 and den.traits.default_sampler == "euler"
    # its own spacing, time_shift 0.25 (timesteps.shifted): not strided's 19, 0 (a step of nothing), nor 19, 9
    assert ts.for_model(den) == [19, 3] == ts.shifted(T, 2, 0.25)
    assert ts.for_model(den, steps=4) == [19, 8, 3, 1] and ts.for_model(den, stride=7) == ts.strided(T, stride=7)
    assert scale_for(den) == 2.0 and scale_for(den, 2) == 2.0
    with pytest.raises(FundiffError, match="CFG s=2 built in"):
        scale_for(den, 5.0)
    x, t, c = torch.randn(2, 1, 28, 28), torch.tensor([19, 19]), den.one_hot([3, 4])
    torch.testing.assert_close(CFG(den, 2.0)(x, t, c).eps, den(x, t, c).eps)  # one call: the student's own


def test_the_student_starts_as_its_teacher_and_learns(teacher, student):
    t_w, _ = runs.load(str(teacher))
    s_w, _ = runs.load(str(student))
    before = dict(t_w.named_parameters())
    moved = [k for k, v in s_w.named_parameters() if not torch.equal(v, before[k])]
    assert moved and len(moved) == len(before)


def test_resume_regenerates_the_missing_chunks_and_equals_the_uninterrupted_run(teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "CHUNK", 8)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _distill(_cfg(teacher, epochs=1), whole)
    den = runs.load_denoiser(str(teacher), precision="fp32")
    cfg = _cfg(teacher, epochs=1)
    cut.mkdir()
    (cut / dl.PAIRS_DIR).mkdir()
    from fundiff.atomic import atomic_write_json

    atomic_write_json(cut / dl.PAIRS_DIR / "distill.json", cfg.to_dict())
    dl.make_pairs(den, cfg, cut, progress=False)
    dl.chunk_path(cut, 2).unlink()  # stopped during the last chunk
    _distill(cfg, cut, resume=True)
    for k in range(3):
        assert read_tensors(dl.chunk_path(cut, k))[0]["x_0"].equal(read_tensors(dl.chunk_path(whole, k))[0]["x_0"])
    a, _ = runs.load(str(whole))
    b, _ = runs.load(str(cut))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_techniques_run_on_a_student(student, tmp_path):
    from fundiff import techniques

    den = runs.load_denoiser(str(student), precision="fp32")
    fig = techniques.sampling_figure(den, ["3", "7"], n=2, out=tmp_path)
    assert list(fig.images) == ["CFG s=2"]  # its own scale only: no unguided row
    x_0 = torch.rand(1, 1, 28, 28)
    sd = techniques.sdedit_figure(den, x_0, i_starts=[0, 1], prompt="3", timesteps=ts.for_model(den, steps=4))
    assert set(sd.images) == {"i_start=0", "i_start=1", "x_0"}
    with pytest.raises(FundiffError, match="built in"):
        techniques.sampling_figure(den, ["3"], n=1, guidance=5.0)


def test_distill_cli_errors_are_one_line_and_write_nothing(capsys, teacher, student, tmp_path):
    out = tmp_path / "x"
    rejected(capsys, ["distill", "--teacher", str(teacher), "--pairs", "0", "--out", str(out)], "--pairs")
    rejected(capsys, ["distill", "--teacher", str(student), "--out", str(out)], "distilled student already")
    rejected(capsys, ["distill", "--teacher", str(teacher), "--teacher-sampler", "nope", "--out", str(out)], "nope")
    rejected(capsys, ["distill", "--teacher", str(teacher), "--out", str(student)], "not empty")
    rejected(capsys, ["distill", "--teacher", str(teacher), "--out", str(out), "--resume"], "no distillation")
    rejected(capsys, ["sample", "--model", str(student), "--guidance", "5", "--out", str(out)], "built in")
    assert not out.exists()


def test_sdedits_default_starts_are_the_write_ups_fractions_of_the_steps_taken():
    from fundiff.figures import sdedit_starts

    assert sdedit_starts(35, 1000) == [1, 3, 5, 7, 10, 20] == sdedit_starts(len(ts.default(300)), 300)
    assert sdedit_starts(2, 1000) == [0, 1] and sdedit_starts(1, 1000) == [0] and sdedit_starts(8, 1000) == [0, 1, 2, 5]


def test_iterative_denoisings_default_start_is_the_write_ups_fraction_of_the_steps_taken(student, tmp_path):
    from fundiff import techniques
    from fundiff.figures import iterative_start

    assert iterative_start(35, 1000) == 10 and iterative_start(2, 1000) == 1 and iterative_start(1, 1000) == 0
    den = runs.load_denoiser(str(student), precision="fp32")
    fig = techniques.denoise_figure(den, torch.rand(1, 1, 28, 28), out=tmp_path)  # the student's 2 steps: i_start 1
    assert fig.paths and all(p.is_file() for p in fig.paths)


def test_shifted_timesteps_move_toward_the_clean_end_and_shift_1_is_trailing():
    """tau' = s tau / (1 + (s - 1) tau) on tau = (N - i) / N, t = round(T tau') - 1 (the SD3 time shift)."""
    assert ts.shifted(1000, 2, 0.25) == [999, 199] and ts.shifted(1000, 4, 0.25) == [999, 428, 199, 76]
    assert ts.shifted(1000, 1, 0.25) == [999]  # the first step is always from pure noise
    assert all(ts.shifted(1000, n, 1.0) == ts.trailing(1000, n) for n in (1, 2, 3, 7, 50))
    with pytest.raises(FundiffError, match="repeated timesteps"):
        ts.shifted(20, 15, 0.05)
    with pytest.raises(FundiffError, match="time shift must be a positive number"):
        ts.shifted(1000, 2, 0.0)


@pytest.fixture(scope="module")
def time_teacher(tmp_path_factory):
    return _tiny_flow_run(tmp_path_factory, "time")


def test_a_time_model_distills_on_unconditional_pairs_and_has_no_guidance(time_teacher, tmp_path):
    den = runs.load_denoiser(str(time_teacher), precision="fp32")
    assert dl.guidance_for(den, None) == 1.0 == dl.guidance_for(den, 1.0)
    with pytest.raises(FundiffError, match="a time model takes no guidance"):
        dl.guidance_for(den, 2.0)
    cfg = _cfg(time_teacher, guidance=1.0)
    assert dl.chunk_plan(cfg, 0) == [(0, 24)]  # every pair unconditional
    out = tmp_path / "run"
    _distill(cfg, out)
    tensors, _ = read_tensors(dl.chunk_path(out, 0))
    x_T = torch.randn((24, 1, 28, 28), generator=torch.Generator().manual_seed(cfg.seed))
    want = samplers.sample(den, x_T, ts.resolve(T, steps=2), cond=den.encode([""] * 24), sampler="dpm++")
    torch.testing.assert_close(tensors["x_0"], want.clamp(0, 1), atol=1e-5, rtol=0)
    assert tensors["y"].eq(0).all()
    student = runs.load_denoiser(str(out), precision="fp32")
    assert student.kind == "time" and student.traits.student and student.traits.guidance is None
    assert ts.for_model(student) == [19, 3] and student.traits.default_sampler == "euler"
    x = samplers.sample(student, torch.randn(2, 1, 28, 28), ts.for_model(student), cond=student.encode(["", ""]))
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    with pytest.raises(FundiffError, match="distilled student already"):
        dl.check_teacher(student, str(out))


def test_distill_cli_on_a_time_model_refuses_guidance(capsys, time_teacher, tmp_path):
    out = tmp_path / "x"
    rejected(capsys, ["distill", "--teacher", str(time_teacher), "--guidance", "2", "--out", str(out)], "no guidance")
    assert not out.exists()
