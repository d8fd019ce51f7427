import pytest

from fundiff import cli, data
from helpers import synthetic_data, tiny_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory.mktemp("runs"), synthetic_data(32))


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
    from PIL import Image

    im = Image.open(tmp_path / "g.png")
    assert im.size[1] > im.size[0]  # 10 rows (one per digit) of 2 samples
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
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert names == ["3_000.png", "3_001.png", "7_000.png", "7_001.png", "grid.png"]


def test_same_seed_same_picture(runs, tmp_path):
    for name in ("a.png", "b.png"):
        cli.main(
            [
                "sample",
                "--model",
                str(runs["time"]),
                "--n",
                "3",
                "--steps",
                "4",
                "--seed",
                "7",
                "--out",
                str(tmp_path / name),
            ]
        )
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


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
    files = {p.name for p in (tmp_path / "s").iterdir()}
    assert {"sweep.png", "noising.png", "metrics.json", "sigma_0.5.png", "sigma_1.png"} <= files


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


def test_help_on_every_command(capsys):
    for cmd in (
        ["--help"],
        ["train", "--help"],
        ["sample", "--help"],
        ["denoise-sweep", "--help"],
        ["data", "fetch", "--help"],
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
    cli.main(["sample", "--model", str(runs["class"]), "--n", "1", "--steps", "3", "--out", str(a)])
    cli.main(["sample", "--model", str(shipped), "--n", "1", "--steps", "3", "--out", str(b)])
    import numpy as np
    from PIL import Image

    diff = np.abs(np.asarray(Image.open(a), dtype=float) - np.asarray(Image.open(b), dtype=float))
    assert diff.mean() < 8  # bf16 weights: nearly the same picture
    _fails(capsys, ["export", "--model", str(runs["class"]), "--name", "../evil", "--dest", str(tmp_path)], "--name")
