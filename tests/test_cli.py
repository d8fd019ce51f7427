import json

import numpy as np
import pytest
import torch
from PIL import Image

from fundiff import cli, data
from helpers import rejected as _rejected
from helpers import synthetic_data, tiny_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory.mktemp("runs"), synthetic_data(32))


def _png(path, size, mode):
    """The PNG at ``path`` as an (H, W[, C]) uint8 array, after checking its size (W, H) and mode."""
    im = Image.open(path)
    assert (im.size, im.mode) == (size, mode), (path, im.size, im.mode)
    return np.asarray(im)


def _grid_tiles(path, rows, cols, *, side=28, pad=2, scale=2):
    """The rows x cols tiles of a `fundiff sample` grid (torchvision's make_grid, padding 2, upscaled 2x
    nearest), each (side, side) uint8, row by row; the grid's size and mode are checked first."""
    g = _png(path, ((cols * (side + pad) + pad) * scale, (rows * (side + pad) + pad) * scale), "RGB")
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 0] == g[..., 2]).all()  # a gray image on three channels
    tile = lambda r, c: g[(pad + r * (side + pad)) * scale :: scale, (pad + c * (side + pad)) * scale :: scale, 0]  # noqa: E731
    return [tile(r, c)[:side, :side] for r in range(rows) for c in range(cols)]


def _api_samples(model, prompts, steps, seed):
    """What `fundiff sample` should write: the samples of the library's own calls, as uint8 (N, 28, 28)."""
    from fundiff import io, samplers
    from fundiff import timesteps as ts
    from fundiff.backends import runs as backend
    from fundiff.guidance import CFG, DEFAULT_GUIDANCE

    den = backend.load_denoiser(str(model), precision="fp32")
    m = CFG(den, DEFAULT_GUIDANCE) if den.conditional else den
    x = samplers.sample_from_noise(m, m.encode(prompts), ts.strided(den.schedule.T, steps=steps),
                                   generator=torch.Generator().manual_seed(seed),
                                   sampler=samplers.default_sampler_of(den))  # fmt: skip
    return io.to_uint8(x.clamp(0, 1))[:, 0].numpy()


def _fails(capsys, argv, match):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fundiff: error:") and "\n" not in err and match in err, err
    return err


def test_sample_class_grid_and_folder(runs, tmp_path, capsys):
    assert (
        cli.main(
            [
                "sample",
                "--model",
                str(runs["class"]),
                "--n",
                "2",
                "--steps",
                "5",
                "--out",
                str(tmp_path / "g.png"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert len(_grid_tiles(tmp_path / "g.png", 10, 2)) == 20  # 10 rows (one per digit) of 2 samples
    assert (
        cli.main(
            [
                "sample",
                "--model",
                str(runs["class"]),
                "--n",
                "2",
                "--class",
                "3",
                "seven",
                "--steps",
                "4",
                "--out",
                str(tmp_path / "f"),
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert names == ["3_000.png", "3_001.png", "7_000.png", "7_001.png", "grid.png"]
    files = [_png(tmp_path / "f" / name, (28, 28), "L") for name in names[:4]]
    tiles = _grid_tiles(tmp_path / "f" / "grid.png", 2, 2)  # a row per class, in the order asked for
    assert all(np.array_equal(a, b) for a, b in zip(files, tiles))
    want = _api_samples(runs["class"], ["3", "3", "7", "7"], 4, seed=20040805)  # the default seed
    assert all(np.array_equal(a, b) for a, b in zip(files, want))


def test_sample_writes_the_samples_of_its_seed(runs, tmp_path):
    """--seed 7 writes the grid of the library's samples from generator seed 7 (byte for byte the same twice);
    seed 8 writes other samples."""
    for name, seed in (("a.png", "7"), ("b.png", "7"), ("c.png", "8")):
        argv = ["sample", "--model", str(runs["time"]), "--n", "3", "--steps", "4", "--seed", seed]
        assert cli.main(argv + ["--precision", "fp32", "--device", "cpu", "--out", str(tmp_path / name)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png"]
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    tiles = _grid_tiles(tmp_path / "a.png", 1, 3)
    assert all(np.array_equal(a, b) for a, b in zip(tiles, _api_samples(runs["time"], [""] * 3, 4, seed=7)))
    assert not all(np.array_equal(a, b) for a, b in zip(tiles, _grid_tiles(tmp_path / "c.png", 1, 3)))


def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, capsys):
    out = tmp_path / "x.png"
    _fails(capsys, ["sample", "--model", str(runs["time"]), "--class", "3", "--out", str(out)], "time-conditioned")
    _fails(capsys, ["sample", "--model", str(runs["class"]), "--class", "dragon", "--out", str(out)], "unknown prompt")
    _fails(capsys, ["sample", "--model", str(runs["denoiser"]), "--out", str(out)], "needs a 'time' or 'class' model")
    _fails(capsys, ["sample", "--model", str(tmp_path / "nope"), "--out", str(out)], "not found")
    _fails(capsys, ["sample", "--model", str(runs["class"]), "--out", str(tmp_path / "x.jpg")], ".png")
    _fails(capsys, ["sample", "--model", str(runs["class"]), "--steps", "500", "--out", str(out)], "at most T=20")
    _fails(capsys, ["denoise-sweep", "--model", str(runs["class"])], "one-step denoiser")
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit):  # argparse rejects unknown choices with the allowed list
        cli.main(["train", "class", "--preset", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_denoise_sweep(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(40, seed=3))
    assert (
        cli.main(["denoise-sweep", "--model", str(runs["denoiser"]), "--n-eval", "40", "--out", str(tmp_path / "s")])
        == 0
    )
    out = capsys.readouterr().out
    assert "PSNR" in out and "0.50" in out
    from fundiff.backends import runs as backend
    from fundiff.evaluation import SWEEP_SIGMAS, denoise_sweep

    sigmas = [f"{s:g}" for s in SWEEP_SIGMAS]
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == sorted(["sweep.png", "noising.png", "metrics.json"] + [f"sigma_{s}.png" for s in sigmas])
    for name in files:
        if name.endswith(".png"):
            assert Image.open(tmp_path / "s" / name).mode in ("RGB", "RGBA")  # a figure or plot, not a bare grid
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert (metrics["n_eval"], metrics["seed"]) == (40, 20040805)
    model, _ = backend.load(str(runs["denoiser"]))
    x = data.to_unit_float(synthetic_data(40, seed=3)[0])
    rows, _ = denoise_sweep(model, x, SWEEP_SIGMAS, generator=torch.Generator().manual_seed(20040805))
    assert len(metrics["rows"]) == len(rows)
    for got, want in zip(metrics["rows"], rows):  # the library's sweep with the same seed
        assert got == pytest.approx(want.__dict__, rel=1e-6)
    assert metrics["rows"][0]["mse_noisy"] == 0 and all(
        a["mse_noisy"] < b["mse_noisy"] for a, b in zip(metrics["rows"], metrics["rows"][1:])
    )


def test_shipped_models_are_never_written_into(tmp_path, capsys, monkeypatch):
    """Default outputs of a shipped model go to out/NAME/..., not into the installed package."""
    from fundiff.backends import runs

    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(40, seed=3))
    monkeypatch.chdir(tmp_path)
    shipped = runs.resolve("mnist-denoiser")
    before = sorted(p.name for p in shipped.iterdir())
    assert cli.main(["denoise-sweep", "--model", "mnist-denoiser", "--n-eval", "10", "--n-show", "2"]) == 0
    metrics = json.loads((tmp_path / "out" / "mnist-denoiser" / "sweep" / "metrics.json").read_text())
    assert metrics["n_eval"] == 10 and len(metrics["rows"]) == 7  # the default sigmas
    assert sorted(p.name for p in shipped.iterdir()) == before


def test_denoise_checks_everything_before_writing(runs, tmp_path, capsys):
    out = tmp_path / "d"
    base = ["denoise", "--model", str(runs["class"]), "--out", str(out)]
    _fails(capsys, base + ["--steps", "5", "--i-start", "10"], "i_start must be in 0..4")
    _fails(capsys, base + ["--sampler", "dpm++", "--eta", "0.5"], "takes no eta")
    assert not out.exists()


def test_train_command_writes_run_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(32))
    run = tmp_path / "run"
    argv = [
        "train",
        "class",
        "--preset",
        "tiny",
        "--epochs",
        "10",
        "--batch-size",
        "16",
        "--out",
        str(run),
        "--no-progress",
        "--max-steps",
        "3",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 0
    assert {"config.json", "model.safetensors", "state.json", "state.safetensors", "loss.png"} <= {
        p.name for p in run.iterdir()
    }
    assert cli.main(argv[:-4] + ["--resume", "--max-steps", "5", "--no-progress"]) == 0
    assert "to step 5" in capsys.readouterr().out
    _fails(capsys, argv, "already holds a run")


def test_train_flags_are_the_config_fields_flags():
    """`fundiff train`'s options are built from TrainConfig's field metadata: the same flags as ever,
    None (the preset's value) unless given, the field's own default for --seed."""
    from fundiff import DEFAULT_SEED
    from fundiff.training import TrainConfig
    from fundiff.training.options import options_of

    flags = {f.name: opt.flag for f, opt in options_of(TrainConfig) if opt.flag is not None}
    assert set(flags.values()) == {
        "--dataset", "--hidden", "--batch-size", "--epochs", "--lr", "--lr-schedule", "--sigma", "--pure-noise", "--T",
        "--beta-schedule", "--objective", "--loss-weight", "--flow-times", "--ema", "--max-steps", "--seed",
        "--precision", "--channels-last", "--sample-epochs", "--save-every", "--text", "--train-images",
        "--time-conditioning", "--film", "--class-map", "--patch", "--name-share", "--warmup-steps", "--low-times",
    }  # fmt: skip
    args = vars(cli.build_parser().parse_args(["train", "class"]))
    assert args["seed"] == DEFAULT_SEED
    assert all(args[name] is None for name in flags if name != "seed")
    given = ["--ema", "0.5", "--no-channels-last", "--sample-epochs", "1,2", "--objective", "flow", "--T", "40"]
    args = vars(cli.build_parser().parse_args(["train", "time", *given]))
    assert (args["ema_decay"], args["channels_last"], args["sample_epochs"], args["objective"], args["T"]) == (
        0.5, False, (1, 2), "flow", 40
    )  # fmt: skip


def test_train_classifier_refuses_the_unets_flags_by_their_names(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _rejected(capsys, ["train", "classifier", "--ema", "0.9"], "--ema does not apply to a classifier; drop it")
    _rejected(capsys, ["train", "classifier", "--resume", "--T", "30"], "--resume, --T do not apply to a classifier")
    assert not list(tmp_path.iterdir())


def test_help_on_every_command(capsys):
    for cmd in (
        ["--help"],
        ["train", "--help"],
        ["sample", "--help"],
        ["denoise-sweep", "--help"],
        ["data", "fetch", "--help"],
        ["export", "--help"],
        ["evaluate", "--help"],
        ["anagram", "--help"],
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(cmd)
        assert e.value.code == 0
        assert "show this help" in capsys.readouterr().out


def test_export_makes_a_small_shipped_model_that_samples_like_the_run(runs, tmp_path, capsys):
    assert cli.main(["export", "--model", str(runs["class"]), "--name", "tiny-class", "--dest", str(tmp_path)]) == 0
    shipped = tmp_path / "tiny-class"
    assert {p.name for p in shipped.iterdir()} == {"config.json", "model.safetensors", "card.json"}
    assert (
        shipped.joinpath("model.safetensors").stat().st_size
        < runs["class"].joinpath("model.safetensors").stat().st_size
    )
    import json

    card = json.loads((shipped / "card.json").read_text())
    assert card["kind"] == "class" and card["train"]["preset"] == "tiny"
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert cli.main(["sample", "--model", str(runs["class"]), "--n", "1", "--steps", "3", "--out", str(a)]) == 0
    assert cli.main(["sample", "--model", str(shipped), "--n", "1", "--steps", "3", "--out", str(b)]) == 0
    assert Image.open(a).size == Image.open(b).size == (64, 604)  # 10 classes x 1 sample, upscaled 2x
    diff = np.abs(np.asarray(Image.open(a), dtype=float) - np.asarray(Image.open(b), dtype=float))
    assert diff.mean() < 8  # bf16 weights: nearly the same picture
    _fails(capsys, ["export", "--model", str(runs["class"]), "--name", "../evil", "--dest", str(tmp_path)], "--name")


def _mask(path, size, fill_rows=0):
    from PIL import Image, ImageDraw

    im = Image.new("L", size, 0)
    if fill_rows:
        ImageDraw.Draw(im).rectangle([0, 0, size[0] - 1, fill_rows - 1], fill=255)
    im.save(path)
    return str(path)


BAD_FLAGS = [  # (argv, what the one-line message says); all refused before anything is loaded or written
    (["sample", "--model", "mnist-class", "--guidance", "nan", "--out", "o.png"], "expected a finite number"),
    (["sample", "--model", "mnist-class", "--guidance", "inf", "--out", "o.png"], "expected a finite number"),
    (["sample", "--model", "mnist-class", "--seed", "-1", "--out", "o.png"], "--seed: expected an integer in 0.."),
    (["generate", "--guidance", "nan"], "expected a finite number"),
    (["evaluate", "--model", "mnist-class", "--guidance", "nan"], "expected a finite number"),
    (["evaluate", "--model", "mnist-class", "--sweep", "1,nan"], "finite numbers"),
    (["denoise-sweep", "--model", "mnist-denoiser", "--sigmas", "0.5,-1"], "numbers >= 0"),
    (["train", "class", "--lr", "0"], "--lr: expected a number > 0"),
    (["train", "class", "--lr", "nan"], "--lr: expected a number > 0"),
    (["train", "classifier", "--lr", "-1"], "--lr: expected a number > 0"),
    (["train", "denoiser", "--sigma", "-0.5"], "--sigma: expected a number >= 0"),
    (["train", "class", "--save-every", "-1"], "--save-every: expected an integer >= 0"),
    (["train", "class", "--seed", "-1"], "--seed: expected an integer in 0.."),
    (["train", "class", "--ema", "1"], "--ema: expected a number in [0, 1)"),
    (["train", "class", "--ema", "nan"], "--ema: expected a number in [0, 1)"),
    (["train", "time", "--T", "1"], "--T: expected an integer >= 2"),
    (["train", "class", "--channels-last", "--max-steps", "0"], "--max-steps: expected an integer >= 1"),
    (["hybrid", "--kernel-size", "4"], "odd"),
    (["hybrid", "--sigma", "0"], "--sigma: expected a number > 0"),
    (["anagram", "--view", "rot90:x"], "quarter turns"),
    (["anagram", "--view", "sideways"], "rot90:K"),
    (["export", "--model", "mnist-class", "--name", "x", "--wall-s", "-5"], "--wall-s: expected a number >= 0"),
    (["sample", "--model", "mnist-class", "--threads", "0", "--out", "o.png"], "--threads: expected an integer >= 1"),
    (["sample", "--model", "mnist-class", "--eta", "5", "--out", "o.png"], "--eta: expected a number in [0, 1]"),
    (["sdedit", "--eta", "nan"], "--eta: expected a number in [0, 1]"),
    (["generate", "--sampler", "rk4"], "invalid choice: 'rk4'"),
    (["sample", "--model", "mnist-class", "--sampler", "dpm++", "--eta", "0.5", "--out", "o.png"], "takes no eta"),
    (["generate", "--sampler", "ddpm", "--eta", "0.5"], "takes no eta"),
]


@pytest.mark.parametrize("argv,match", BAD_FLAGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_errors_and_write_nothing(argv, match, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _rejected(capsys, argv, match)
    assert not list(tmp_path.iterdir())


def test_inpaint_masks_must_fit_the_image_unless_asked(runs, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["inpaint", "--model", str(runs["class"]), "--steps", "2", "--n", "1", "--out", str(out)]
    seven = ["--image", "seven"]  # a shipped 200x200 drawing
    for argv, match in [
        (seven + ["--mask", _mask(tmp_path / "black.png", (200, 200))], "no pixel to fill"),
        (seven + ["--mask", _mask(tmp_path / "wide.png", (300, 200), 100)], "is 300x200 but image 'seven' is 200x200"),
        (seven + ["--mask", _mask(tmp_path / "small.png", (100, 100), 50)], "is 100x100 but image 'seven' is 200x200"),
        (seven + ["--mask-fit"], "--mask-fit applies to a --mask image"),
    ]:
        _rejected(capsys, common + argv, match)
    assert not out.exists()
    assert cli.main(common + seven + ["--mask", str(tmp_path / "small.png"), "--mask-fit"]) == 0  # asked to fit
    assert (out / "inpaint.png").is_file() and Image.open(out / "inpaint.png").mode == "RGB"  # the labeled figure


def test_anagram_with_a_parametric_view(runs, tmp_path):
    out = tmp_path / "ana"
    argv = ["anagram", "--model", str(runs["class"]), "--prompts", "6", "9", "--view", "rot90:2", "--steps", "2"]
    assert cli.main(argv + ["--n", "1", "--out", str(out)]) == 0
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == ["anagram.png", "anagram/identity-6_sample-1.png", "anagram/rot90-2-9_sample-1.png"]
    six = _png(out / files[1], (28, 28), "L")
    nine = _png(out / files[2], (28, 28), "L")
    assert np.array_equal(nine, np.rot90(six, 2)) and not np.array_equal(six, nine)  # one image, two views


def test_train_classifier_is_a_train_kind_not_a_command(capsys):
    _rejected(capsys, ["train-classifier"], "invalid choice: 'train-classifier'")


def test_sample_defaults_to_the_models_own_prompts(tmp_path):
    """fashion-class has no classes named "0".."9": the default rows are its default_prompts (its class names)."""
    out = tmp_path / "f"
    argv = ["sample", "--model", "fashion-class", "--n", "1", "--steps", "2", "--precision", "fp32", "--out", str(out)]
    assert cli.main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 11 and "Ankle_boot_000.png" in names and "T-shirt-top_000.png" in names
    assert len(_grid_tiles(out / "grid.png", 10, 1)) == 10 and _png(out / "Bag_000.png", (28, 28), "L").any()


@pytest.mark.parametrize("sampler", [["--sampler", "ddim", "--eta", "0.5"], ["--sampler", "dpm++"], ["--eta", "0"]])
def test_every_sampler_reaches_sample_and_the_techniques(runs, tmp_path, sampler):
    model = ["--model", str(runs["class"]), "--steps", "3"]
    assert cli.main(["sample", *model, "--n", "1", "--out", str(tmp_path / "s.png"), *sampler]) == 0
    assert cli.main(["sdedit", *model, "--image", "seven", "--i-start", "1", "--out", str(tmp_path), *sampler]) == 0
    assert len(_grid_tiles(tmp_path / "s.png", 10, 1)) == 10
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png"))
    assert files == ["handdrawn.png", "handdrawn/image-0_i-start-1-t=10.png", "handdrawn/image-0_original.png", "s.png"]
    original = _png(tmp_path / files[2], (28, 28), "L")
    edited = _png(tmp_path / files[1], (28, 28), "L")
    assert original.any() and not np.array_equal(original, edited)  # the drawing, and its edit
