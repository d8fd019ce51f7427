import argparse
import json
import math

import pytest
import torch
from torch import nn

from fundiff import data, metrics
from fundiff.cli.eval import register
from fundiff.errors import FundiffError
from fundiff.models.classifier import ClassifierConfig
from fundiff.training import ClassifierTrainConfig, train_classifier
from fundiff.views import GaussianFilter
from helpers import PixelClassifier, synthetic_data, tiny_runs


class FlatFeatures(nn.Module):
    """A stand-in classifier whose features are the flattened image: (N,d,1,1) "images" are feature vectors."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def features(self, x):
        return x.flatten(1)


def _direct_fid(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), symmetric matrix roots via eigh, float64."""
    f1, f2 = f1.double(), f2.double()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = torch.cov(f1.T), torch.cov(f2.T)
    w, v = torch.linalg.eigh(s1)
    root1 = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    tr_sqrt = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * tr_sqrt)


def test_fid_pinned_one_dimensional_value():
    # 1-D Gaussians: FID = (m1 - m2)^2 + (s1 - s2)^2. real {-1, 1}: m=0, var=2; fake {1, 5}: m=3, var=8
    real = torch.tensor([-1.0, 1.0]).reshape(2, 1, 1, 1)
    fake = torch.tensor([1.0, 5.0]).reshape(2, 1, 1, 1)
    assert metrics.fid(FlatFeatures().eval(), real, fake) == pytest.approx(
        9 + (math.sqrt(2) - math.sqrt(8)) ** 2, rel=1e-6
    )


def test_fid_agrees_with_direct_computation():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 6, 1, 1, generator=g)
    b = (torch.randn(200, 6, generator=g) @ torch.randn(6, 6, generator=g) * 0.7 + 0.3).reshape(200, 6, 1, 1)
    expected = _direct_fid(a.flatten(1), b.flatten(1))
    assert expected > 1
    assert metrics.fid(FlatFeatures().eval(), a, b, batch_size=64) == pytest.approx(expected, rel=1e-5)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(200, 8, 1, 1, generator=g)
    clf = PixelClassifier().eval()
    assert abs(metrics.fid(FlatFeatures().eval(), x, x)) < 1e-5
    shifts = [metrics.fid(FlatFeatures().eval(), x, x + s) for s in (0.05, 0.1, 0.2)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]
    assert shifts[1] == pytest.approx(8 * 0.1**2, rel=1e-3)  # a pure mean shift: |delta mu|^2
    with pytest.raises(FundiffError, match="at least 2"):
        metrics.fid(clf, x[:1], x)
    with pytest.raises(FundiffError, match="training mode"):
        metrics.fid(PixelClassifier().train(), x, x)


def test_fid_meter_reuses_the_real_statistics():
    g = torch.Generator().manual_seed(6)
    real, a, b = (torch.rand(60, 5, 1, 1, generator=g) for _ in range(3))
    meter = metrics.FID(FlatFeatures().eval(), real, batch_size=16)
    assert meter(a) == pytest.approx(metrics.fid(FlatFeatures().eval(), real, a), rel=1e-6)
    assert meter(b) == pytest.approx(_direct_fid(real.flatten(1), b.flatten(1)), rel=1e-5)  # a's features are gone
    assert meter(a) == pytest.approx(_direct_fid(real.flatten(1), a.flatten(1)), rel=1e-5)


def test_reference_fid_uses_a_seeded_train_subset():
    g = torch.Generator().manual_seed(2)
    train = torch.randint(0, 256, (100, 8, 1, 1), generator=g, dtype=torch.uint8)
    meter = metrics.FID(FlatFeatures().eval(), torch.rand(50, 8, 1, 1, generator=g))
    a = metrics.reference_fid(meter, train, n=40, generator=torch.Generator().manual_seed(5))
    b = metrics.reference_fid(meter, train.float() / 255, n=40, generator=torch.Generator().manual_seed(5))
    idx = torch.randperm(100, generator=torch.Generator().manual_seed(5))[:40]
    assert a == pytest.approx(b, rel=1e-6) and a == pytest.approx(meter(train[idx].float() / 255), rel=1e-6) and a > 0
    with pytest.raises(FundiffError, match="2..100"):
        metrics.reference_fid(meter, train, n=101, generator=torch.Generator())


def test_per_class_accuracy_bookkeeping():
    clf = PixelClassifier().eval()
    predicted = torch.tensor([0, 0, 1, 1, 1, 2, 9])
    target = torch.tensor([0, 1, 1, 1, 2, 2, 9])
    images = (predicted.float() / 10).reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    acc = metrics.class_accuracy(clf, images, target, num_classes=10, batch_size=3)
    assert acc.counts == (1, 3, 2, 0, 0, 0, 0, 0, 0, 1)
    assert acc.per_class[:3] == pytest.approx((1.0, 2 / 3, 0.5)) and acc.per_class[9] == 1.0
    assert all(math.isnan(a) for a in acc.per_class[3:9])
    assert acc.overall == pytest.approx(5 / 7)
    assert acc.to_dict(["zero"] + [str(k) for k in range(1, 10)])["per_class"]["zero"] == 1.0
    assert metrics.class_histogram(clf, images, num_classes=10) == (2, 3, 1, 0, 0, 0, 0, 0, 0, 1)


def test_psnr_pinned_values():
    assert metrics.psnr(0.01) == pytest.approx(20.0) and metrics.psnr(1.0) == 0.0
    assert metrics.psnr(0.0) == math.inf


def _blur(x: torch.Tensor, f: GaussianFilter) -> torch.Tensor:
    return f.lowpass(x).clamp(0, 1)


def test_blur_search_finds_the_known_blur():
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    truth = GaussianFilter(5, 1.5)
    best, mse = metrics.best_blur(_blur(x, truth), x)
    assert best == truth and mse < 1e-12
    best, mse = metrics.best_blur(x, x)
    assert best.kernel_size == 1 and mse == 0  # nothing to undo: the identity wins
    target = _blur(x, GaussianFilter(7, 2.2))  # not on the grid: the grid's best by brute force
    grid = [GaussianFilter(k, s) for k in (3, 5, 7) for s in (1.0, 2.0, 3.0)]
    brute = min(grid, key=lambda b: float(((_blur(x, b) - target) ** 2).mean()))
    assert metrics.best_blur(target, x, kernels=(3, 5, 7), sigmas=(1.0, 2.0, 3.0))[0] == brute


def test_blur_baseline_rows():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(6, 1, 28, 28, generator=g)
    noisy = {0.0: x.clone(), 0.5: x + 0.5 * torch.randn(x.shape, generator=g)}
    rows = metrics.blur_baseline(
        torch.rand(6, 1, 28, 28, generator=g), x, noisy, generator=torch.Generator().manual_seed(0)
    )
    assert [r.sigma for r in rows] == [0.0, 0.5]
    assert rows[0].blur.kernel_size == 1 and rows[0].mse == 0 and rows[0].psnr == math.inf
    assert rows[1].blur.kernel_size > 1 and rows[1].mse < float(((noisy[0.5].clamp(0, 1) - x) ** 2).mean())


# -- the CLI -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    d = synthetic_data(32)
    out = tiny_runs(root, d)
    cfg = ClassifierTrainConfig(max_steps=4, batch_size=16, precision="fp32")
    train_classifier(
        cfg,
        root / "clf",
        data=d,
        test_data=synthetic_data(16, seed=1),
        progress=False,
        model_config=ClassifierConfig(width=4, features=8),
    )
    out["clf"] = root / "clf"
    return out


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(
        data,
        "load_split",
        lambda name, root=None, train=True: synthetic_data(40 if train else 30, seed=3 if train else 4),
    )
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cmds = register(sub)

    def run(*argv):
        args = parser.parse_args(list(argv))
        return cmds[args.command](args)

    return run


def test_evaluate_class_model(runs, tmp_path, cli, capsys):
    out = tmp_path / "e.json"
    cli(
        "evaluate",
        "--model",
        str(runs["class"]),
        "--classifier",
        str(runs["clf"]),
        "--n",
        "20",
        "--steps",
        "3",
        "--guidance",
        "3",
        "--sweep",
        "0,1",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    r = json.loads(out.read_text())
    assert r["kind"] == "class" and r["n"] == 20 and r["guidance"] == 3 and r["steps"] == 3
    assert math.isfinite(r["fid"]) and math.isfinite(r["fid_floor"]) and r["fid_floor"] >= 0
    assert (
        [row["guidance"] for row in r["sweep"]] == [0, 1]
        and all(math.isfinite(row["fid"]) for row in r["sweep"])
        and set(r["accuracy"]["per_class"]) == set(data.CLASS_NAMES["mnist"])
    )
    assert (tmp_path / "e_guidance.png").read_bytes()[:4] == b"\x89PNG"
    assert "FID" in capsys.readouterr().out


def test_evaluate_time_model_and_denoiser(runs, tmp_path, cli):
    cli(
        "evaluate",
        "--model",
        str(runs["time"]),
        "--classifier",
        str(runs["clf"]),
        "--n",
        "6",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "t.json"),
    )
    r = json.loads((tmp_path / "t.json").read_text())
    assert sum(r["class_histogram"].values()) == 6 and math.isfinite(r["fid"])
    cli(
        "evaluate", "--model", str(runs["denoiser"]), "--n", "8", "--sigmas", "0,0.5", "--out", str(tmp_path / "d.json")
    )
    rows = json.loads((tmp_path / "d.json").read_text())["rows"]
    assert [row["sigma"] for row in rows] == [0, 0.5] and rows[0]["blur_kernel"] == 1 and rows[0]["blur_mse"] == 0


def test_evaluate_bad_input_is_one_line(runs, tmp_path, cli):
    import shutil

    def fails(match, *argv):
        with pytest.raises(FundiffError, match=match) as e:
            cli("evaluate", *argv)
        assert "\n" not in str(e.value)

    broken = tmp_path / "broken"
    shutil.copytree(runs["clf"], broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    fails("corrupt", "--model", str(runs["time"]), "--classifier", str(broken), "--n", "4")
    fails("not found", "--model", str(runs["time"]), "--classifier", str(tmp_path / "nope"))
    fails("not a classifier run", "--model", str(runs["time"]), "--classifier", str(runs["class"]))
    fails("'classifier' run", "--model", str(runs["clf"]))
    fails("class-conditioned", "--model", str(runs["time"]), "--guidance", "3")
    fails("at most T=20", "--model", str(runs["class"]), "--classifier", str(runs["clf"]), "--steps", "50")
    fails("--out must be a .json", "--model", str(runs["denoiser"]), "--out", str(tmp_path / "x.txt"))
    fails("at least 10", "--model", str(runs["class"]), "--n", "9")
    fails("at most 40", "--model", str(runs["time"]), "--classifier", str(runs["clf"]), "--n", "41", "--steps", "3")
    for flag, value in (("--guidance", "nan"), ("--sigmas", "0.5,-1")):  # refused by the parser (SystemExit)
        with pytest.raises(SystemExit):
            cli("evaluate", "--model", str(runs["denoiser"]), flag, value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]  # nothing written


def test_evaluate_without_a_classifier_says_how_to_train_one(runs, cli, monkeypatch, tmp_path):
    import fundiff.backends.runs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fundiff.backends.runs, "shipped_names", lambda: [])  # as if no classifier shipped
    with pytest.raises(FundiffError, match="fundiff train classifier --dataset mnist"):
        cli("evaluate", "--model", str(runs["time"]))


def test_train_classifier_command(tmp_path, cli, capsys):
    from fundiff import cli as main_cli

    assert (
        main_cli.main(
            [
                "train",
                "classifier",
                "--max-steps",
                "2",
                "--batch-size",
                "16",
                "--precision",
                "fp32",
                "--no-progress",
                "--out",
                str(tmp_path / "c"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "test accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "config.json").read_text())["train"]["max_steps"] == 2
    # routed from `fundiff train classifier`: unset overrides are None, diffusion-only options are refused
    from fundiff.cli.train import train_classifier_command

    ns = argparse.Namespace(
        dataset="mnist",
        epochs=None,
        batch_size=None,
        lr=None,
        max_steps=1,
        precision=None,
        seed=1,
        out=str(tmp_path / "r"),
        no_progress=True,
        device="cpu",
        data_dir=None,
        resume=False,
        hidden=None,
    )
    train_classifier_command(ns)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["epochs"] == ClassifierTrainConfig().epochs
    with pytest.raises(FundiffError, match="--resume, --hidden"):
        train_classifier_command(
            argparse.Namespace(**{**vars(ns), "resume": True, "hidden": 8, "out": str(tmp_path / "s")})
        )


def test_namespace_of_fundiff_train_routes_to_the_classifier(tmp_path, cli):
    """`fundiff train classifier ...` parses with cli.py's `train` options; their dests must fit."""
    from fundiff import cli as main_cli
    from fundiff.cli.train import train_classifier_command

    args = main_cli.build_parser().parse_args(
        [
            "train",
            "class",
            "--max-steps",
            "1",
            "--precision",
            "fp32",
            "--no-progress",
            "--out",
            str(tmp_path / "c"),
            "--device",
            "cpu",
        ]
    )
    args.kind = "classifier"  # what the lead's `classifier` choice will give
    train_classifier_command(args, ["train", "classifier", "--max-steps", "1"])
    assert json.loads((tmp_path / "c" / "state.json").read_text())["step"] == 1
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert saved["command"] == "fundiff train classifier --max-steps 1" and saved["machine"]["precision"] == "float32"


def test_register_adds_evaluate_only():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    assert list(register(sub)) == ["evaluate"]
    with pytest.raises(SystemExit):
        parser.parse_args(["train-classifier"])  # the old spelling is gone: `fundiff train classifier`


def test_background_grain_counts_faint_pixels_away_from_the_strokes_only():
    from fundiff.metrics import background_grain

    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # a stroke
    x[:, :, 9, 9:19] = 0.2  # its anti-aliased rim: next to ink, not background
    assert background_grain(x) == 0.0
    background = 2 * (28 * 28 - 10 * 10)  # the 8x8 stroke and the 1-pixel ring around it are near ink
    x[0, 0, 0, :5] = 0.1  # grain: faint pixels far from the stroke
    x[1, 0, 27, 27] = 0.04  # below the level: not grain
    assert background_grain(x) == pytest.approx(5 / background)
    assert background_grain(x - 1) == 0.0  # clamped to [0, 1] first
