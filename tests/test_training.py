import json
import os
from dataclasses import fields, replace

import pytest
import torch
from safetensors.torch import load_file

from fundiff import provenance, training
from fundiff.errors import FundiffError
from fundiff.models import load_model
from fundiff.models.unet import UNet, UNetConfig
from fundiff.training import loop
from helpers import synthetic_data, tiny_config


def _weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


@pytest.mark.parametrize("kind", ["class", "time", "denoiser"])
def test_resume_equals_uninterrupted(tmp_path, kind):
    data = synthetic_data(48)  # 3 steps per epoch, 9 in all
    cfg = tiny_config(kind, ema_decay=0.9)
    full = training.train(cfg, tmp_path / "full", data=data, progress=False)
    assert full.step == 9 and full.epoch == 3
    part = training.train(replace(cfg, max_steps=4), tmp_path / "part", data=data, progress=False)  # stops mid-epoch 2
    assert part.step == 4
    resumed = training.train(cfg, tmp_path / "part", data=data, progress=False, resume=True)
    assert resumed.step == 9
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = json.loads((tmp_path / "full" / "state.json").read_text())["losses"]
    lb = json.loads((tmp_path / "part" / "state.json").read_text())["losses"]
    assert la == lb and len(la) == 9


def test_training_reduces_loss_and_lr_schedule_is_the_write_ups(tmp_path):
    data = synthetic_data(64)
    cfg = tiny_config("time", hidden=8, epochs=4, lr=3e-3)
    res = training.train(cfg, tmp_path / "r", data=data, progress=False)
    assert sum(res.losses[-4:]) < sum(res.losses[:4])
    # ExponentialLR with gamma = 0.1 ** (1 / epochs), stepped per epoch
    assert loop._lr_factor(cfg, 0, 0, 16) == 1.0
    assert loop._lr_factor(cfg, 15, 3, 16) == pytest.approx(0.1**0.75)
    model, saved = load_model(tmp_path / "r")
    assert saved["train"]["kind"] == "time" and not model.training


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    data = synthetic_data(48)
    real = loop.batch_loss
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 6 else loss

    monkeypatch.setattr(loop, "batch_loss", flaky)
    with pytest.raises(FundiffError, match="step 5") as e:
        training.train(tiny_config("class"), tmp_path / "r", data=data, progress=False)
    assert "\n" not in str(e.value)
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["step"] == 4  # saved every 2 steps; step 5 never saved
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "r").values() if v.is_floating_point())
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]


def test_bad_options_are_one_line_errors(tmp_path):
    for kw, msg in [
        (dict(preset="fast"), "unknown preset 'fast'; choose one of paper, quick, flow, emoji, course-flow, tiny"),
        (dict(preset="emoji", kind="time"), "preset 'emoji' trains class models, not 'time'"),
        (dict(dataset="emoji"), "a class model on emoji needs --text words or words"),
        (dict(text="words"), "a class model on emoji needs --text"),
        (dict(kind="gan"), "unknown model kind"),
        (dict(lr=-1.0), "lr must be"),
        (dict(precision="fp8"), "unknown precision"),
    ]:
        args = dict(preset="tiny", kind="class")
        args.update(kw)
        preset, kind = args.pop("preset"), args.pop("kind")
        with pytest.raises(FundiffError, match=msg):
            training.preset_config(preset, kind, **args)


def test_one_validator_checks_both_configs_by_their_field_metadata():
    from fundiff.training.options import options_of

    checked = {f.name for f, _ in options_of(training.TrainConfig)}
    assert checked == {f.name for f in fields(training.TrainConfig)} - {"preset"}  # preset is informational
    assert {f.name for f, _ in options_of(training.ClassifierTrainConfig)} == {
        f.name for f in fields(training.ClassifierTrainConfig)
    }
    for make, msg in [
        (lambda: tiny_config(max_steps=0), "max_steps must be an integer >= 1 or None, got 0 (--max-steps)"),
        (lambda: tiny_config(T=1), "T must be an integer >= 2, got 1 (--T)"),
        (lambda: tiny_config(p_uncond=1.0), "p_uncond must be a number in [0, 1), got 1.0"),
        (lambda: tiny_config(epochs=2.5), "epochs must be an integer >= 1, got 2.5 (--epochs)"),
        (lambda: tiny_config(lr_schedule="step"), "unknown lr schedule 'step'; choose one of exponential, constant"),
        (lambda: training.ClassifierTrainConfig(lr=0), "lr must be a number > 0, got 0 (--lr)"),
        (lambda: training.ClassifierTrainConfig(weight_decay=-1.0), "weight_decay must be a number >= 0"),
        (lambda: training.ClassifierTrainConfig(precision="fp8"), "unknown precision 'fp8'; choose one of auto"),
    ]:
        with pytest.raises(FundiffError) as e:
            make()
        assert str(e.value).startswith(msg) and "\n" not in str(e.value), str(e.value)


def test_paper_preset_is_the_write_up():
    d = training.preset_config("paper", "denoiser")
    assert (d.hidden, d.batch_size, d.epochs, d.lr, d.sigma, d.lr_schedule) == (128, 256, 5, 1e-4, 0.5, "constant")
    for kind in ("time", "class"):
        c = training.preset_config("paper", kind)
        assert (c.hidden, c.batch_size, c.epochs, c.lr, c.lr_schedule, c.T, c.p_uncond) == (
            64,
            128,
            20,
            1e-3,
            "exponential",
            300,
            0.1,
        )
    assert training.preset_config("paper", "class", epochs=3, lr=None).epochs == 3
    assert all(training.preset_config("paper", k).precision == "fp32" for k in ("denoiser", "time", "class"))
    assert all(training.preset_config("paper", k).objective == "eps" for k in ("time", "class"))
    assert training.preset_config("paper", "time").beta_schedule == "linear"


def test_flow_preset_is_flow_matching_on_the_quick_recipe():
    quick = training.preset_config("quick", "class")
    for kind in ("time", "class"):
        c = training.preset_config("flow", kind)
        assert (c.objective, c.flow_times, c.T, c.epochs) == ("flow", "logit-normal", 1000, 10)
        assert (c.hidden, c.batch_size, c.lr, c.lr_schedule, c.ema_decay) == (
            quick.hidden, quick.batch_size, quick.lr, quick.lr_schedule, quick.ema_decay
        )  # fmt: skip


def test_new_run_refuses_to_overwrite_and_resume_refuses_changed_settings(tmp_path):
    data = synthetic_data(32)
    cfg = tiny_config("class", epochs=1)
    training.train(cfg, tmp_path / "r", data=data, progress=False)
    with pytest.raises(FundiffError, match="--resume"):
        training.train(cfg, tmp_path / "r", data=data, progress=False)
    with pytest.raises(FundiffError, match="lr"):
        training.train(replace(cfg, lr=0.5), tmp_path / "r", data=data, progress=False, resume=True)


def test_ema_warm_up_forgets_the_random_init_in_a_short_run(tmp_path):
    data = synthetic_data(48)
    training.train(tiny_config("class", ema_decay=0.999, epochs=2), tmp_path / "r", data=data, progress=False)
    w = _weights(tmp_path / "r")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny_config("class").seed)  # train() initialises the UNet from this seed
        init = UNet(UNetConfig(kind="class", hidden=4, image_size=28)).state_dict()
    k = "e1.0.0.weight"
    # with a plain 0.999 decay the EMA after 6 steps would be 99.4% the init; with warm-up it follows the model
    d_model = (w["ema." + k] - w["model." + k]).norm()
    d_init = (w["ema." + k] - init[k]).norm()
    assert d_model < d_init


def test_a_run_folder_is_trained_by_one_process_at_a_time(tmp_path):
    run = tmp_path / "r"
    data = synthetic_data(32)
    with training.run_lock(run):  # another "process": flock locks conflict between open files, even in one process
        assert (run / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(FundiffError, match=f"being trained by another process \\(pid {os.getpid()}\\)") as e:
            training.train(tiny_config("class", epochs=1), run, data=data, progress=False)
        assert "\n" not in str(e.value) and "--out" in str(e.value)
        assert [p.name for p in run.iterdir()] == [".lock"]  # the second one wrote nothing
    assert not (run / ".lock").exists()
    training.train(tiny_config("class", epochs=1), run, data=data, progress=False)  # free again
    assert (run / "state.json").exists() and not (run / ".lock").exists()


def test_recorded_command_and_machine_hold_no_absolute_paths(tmp_path, monkeypatch):
    from fundiff import cli, data
    from fundiff.devices import cpu_name

    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(32))
    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path / "cache"))  # "tiny" is --precision auto: timed, cached
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "r"
    argv = ["train", "class", "--preset", "tiny", "--out", str(run), "--data-dir=/srv/mnist", "--no-progress"]
    assert cli.main(argv + ["--max-steps", "1", "--device", "cpu"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["command"].startswith("fundiff train class --preset tiny --out runs/r --data-dir=.../mnist ")
    assert str(tmp_path) not in (run / "config.json").read_text()
    assert cfg["machine"]["cpu"] == cpu_name() and cfg["machine"]["cpu"] not in ("x86_64", "aarch64", "")


def test_portable_command_rewrites_absolute_paths():
    argv = ["--out", "/home/u/proj/runs/a", "--data-dir=/home/u/data", "/tmp/x/y", "rel/z", "/home/u/proj"]
    got = provenance.portable_command(argv, cwd="/home/u/proj", home="/home/u")
    assert got == "--out runs/a --data-dir=~/data .../y rel/z ."


def test_training_and_sampling_agree_on_time_normalisation_and_the_null_class():
    from fundiff.denoisers import UNetDenoiser
    from fundiff.schedules import NoiseSchedule

    cfg = tiny_config("class", T=20, p_uncond=0.5)
    model = UNet(UNetConfig(kind="class", hidden=4))
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args))
    schedule = NoiseSchedule.from_name(cfg.beta_schedule, cfg.T)
    x0, y = synthetic_data(512)
    x0 = x0.unsqueeze(1).float() / 255
    training.batch_loss(model, cfg, schedule, x0, y, torch.Generator().manual_seed(0))
    _, t_train, c_train = seen.pop()
    t_int = (t_train * (cfg.T - 1)).round()
    assert (t_int.min(), t_int.max()) == (0, cfg.T - 1) and torch.equal(t_train, t_int / (cfg.T - 1))
    den = UNetDenoiser(model, schedule, class_names=[str(k) for k in range(10)])
    den(x0, t_int.long(), den.encode([""] * len(x0)))
    _, t_sample, c_null = seen.pop()
    assert torch.equal(t_sample, t_train)  # same t / (T - 1), 0 at t = 0 and 1 at t = T - 1
    assert torch.equal(c_null, torch.zeros(len(x0), 10))
    dropped = (c_train == 0).all(1)  # training's "no class" rows are exactly sampling's null vector
    assert 0 < dropped.sum() < len(x0) and torch.equal(c_train[dropped], c_null[dropped])
    assert torch.equal(c_train[~dropped], torch.nn.functional.one_hot(y[~dropped], 10).float())


def test_progress_in_a_log_prints_lines_not_redraws(capsys):
    bar = training.Progress(10, desc="train class", interval=3600)  # stderr is captured: not a terminal
    for _ in range(4):
        bar.update(epoch=1, loss="0.1000")
    bar.line()  # e.g. at an epoch end
    bar.close()
    err = capsys.readouterr().err
    assert err == "train class: step 4/10, epoch 1, loss 0.1000\n"  # one line, no tqdm redraws ("\r")
    bar = training.Progress(3, desc="d", interval=0.0)
    for _ in range(3):
        bar.update()
    assert capsys.readouterr().err.splitlines() == ["d: step 1/3", "d: step 2/3", "d: step 3/3"]
    training.Progress(3, desc="d", enabled=False).update()
    assert capsys.readouterr().err == ""


# -- measured precision (devices.choose_precision) ---------------------------------------------
def _tiny_net():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 1, 1))


def _batch(n):
    return lambda: (torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)),)


@pytest.fixture()
def fake_timer(tmp_path, monkeypatch):
    """devices._measure replaced: fp32 channels_last is fastest; records the candidates of each call."""
    from fundiff import devices

    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path / "cache"))
    calls = []

    def measure(model, batch, device, candidates, **kw):
        calls.append(dict(candidates, **kw))
        fake = {"fp32": 3.0, "fp32 channels_last": 1.0, "bf16": 4.0, "bf16 channels_last": 2.0}
        return {name: fake[name] for name in candidates}

    monkeypatch.setattr(devices, "_measure", measure)
    return calls


def test_precision_is_measured_once_then_cached(fake_timer, tmp_path):
    from fundiff.devices import choose_precision, precision_cache_path

    cpu = torch.device("cpu")
    first = choose_precision(_tiny_net(), _batch(8), cpu, mode="train", threads=2)
    assert (first.dtype, first.channels_last, first.source) == (None, True, "measured") and len(fake_timer) == 1
    assert precision_cache_path() == tmp_path / "cache" / "precision.json" and precision_cache_path().is_file()
    again = choose_precision(_tiny_net(), _batch(8), cpu, mode="train", threads=2)
    assert (again.dtype, again.channels_last, again.source) == (None, True, "cached") and len(fake_timer) == 1
    for other in [  # a different thread count, batch size or mode is timed anew
        dict(model=_tiny_net(), make_batch=_batch(8), mode="train", threads=1),
        dict(model=_tiny_net(), make_batch=_batch(16), mode="train", threads=2),
        dict(model=_tiny_net(), make_batch=_batch(8), mode="infer", threads=2),
    ]:
        n = len(fake_timer)
        assert choose_precision(device=cpu, **other).source == "measured" and len(fake_timer) == n + 1


def test_forced_precision_and_memory_format_bypass_the_timing(fake_timer):
    from fundiff.devices import choose_precision, precision_cache_path

    cpu = torch.device("cpu")
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        c = choose_precision(_tiny_net(), _batch(8), cpu, mode="train", precision=precision, channels_last=False)
        assert (c.dtype, c.channels_last, c.source) == (dtype, False, "forced")
    assert choose_precision(_tiny_net(), _batch(8), cpu, mode="infer", precision="fp32").channels_last is False
    assert not fake_timer and not precision_cache_path().exists()
    c = choose_precision(_tiny_net(), _batch(8), cpu, mode="train", channels_last=False)  # only dtypes compared
    assert set(fake_timer[0]) >= {"fp32", "bf16"} and not {"fp32 channels_last"} & set(fake_timer[0])
    assert (c.dtype, c.channels_last) == (None, False)


def test_precision_on_cuda_is_not_timed(fake_timer, monkeypatch):
    from fundiff.devices import choose_precision

    gpu = torch.device("cuda")
    for bf16, mode, dtype in [(True, "train", torch.bfloat16), (False, "infer", torch.float16), (False, "train", None)]:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda bf16=bf16: bf16)
        c = choose_precision(_tiny_net(), _batch(8), gpu, mode=mode)
        assert (c.dtype, c.channels_last, c.source) == (dtype, False, "cuda")
    assert not fake_timer


@pytest.mark.precision_timing
def test_precision_timing_leaves_the_model_and_process_alone(tmp_path, monkeypatch):
    from fundiff.devices import choose_precision

    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path))
    net = _tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    c = choose_precision(net, _batch(4), torch.device("cpu"), mode="train", threads=2, budget_s=0.0)
    assert c.source == "measured" and set(c.timings) == {"fp32", "fp32 channels_last", "bf16", "bf16 channels_last"}
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BatchNorm stats too
    assert all(p.grad is None for p in net.parameters()) and net[0].weight.is_contiguous()
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads


def test_auto_precision_training_records_and_resumes_with_the_choice(fake_timer, tmp_path):
    data = synthetic_data(48)
    cfg = tiny_config("class", precision="auto", max_steps=2)
    training.train(cfg, tmp_path / "r", data=data, progress=False, extra_config={"machine": {"precision": "?"}})
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["precision"]["precision"] == "fp32" and saved["precision"]["channels_last"] is True
    assert saved["precision"]["source"] == "measured" and saved["machine"]["precision"] == "float32"
    assert saved["train"]["channels_last"] is None and len(fake_timer) == 1
    (tmp_path / "cache" / "precision.json").unlink()  # resuming reuses the recorded choice, no new timing
    res = training.train(replace(cfg, max_steps=3), tmp_path / "r", data=data, progress=False, resume=True)
    assert res.step == 3 and len(fake_timer) == 1
