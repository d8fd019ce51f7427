import argparse

import pytest
import torch

from fundiff import images, techniques, training
from fundiff import timesteps as ts_lib
from fundiff.backends import runs
from fundiff.cli.techniques import DEFAULT_MODEL, register
from fundiff.errors import FundiffError
from helpers import synthetic_data, tiny_config, tiny_unet


def test_writeup_defaults_map_to_T300():
    assert ts_lib.default_stride(1000) == 30 and ts_lib.default_stride(300) == 9 and ts_lib.default_stride(20) == 1
    ts = ts_lib.default(300)
    assert len(ts) == len(ts_lib.default(1000)) == 35 and ts[0] == 299 and ts[-1] == 0
    assert ts[10] == 209  # i_start 10: ~0.7 T, as the write-up's t=690 of 1000
    assert [techniques.writeup_t(t, 300) for t in techniques.WRITEUP_NOISE_TS] == [75, 150, 225]
    assert techniques.writeup_t(999, 300) == 299


def test_noise_blur_and_one_step_figures_share_the_noisy_images(tmp_path):
    den = tiny_unet()
    x0 = images.load_image("seven")
    a = techniques.noise_figure(den, x0, [2, 9, 16], out=tmp_path)
    b = techniques.blur_figure(den, x0, [2, 9, 16], out=tmp_path)
    c = techniques.one_step_figure(den, x0, [2, 9, 16], prompt="7", guidance=3.0, out=tmp_path)
    for t in (2, 9, 16):
        assert torch.equal(a.images[f"t={t}"], b.images[f"noisy t={t}"]) and torch.equal(
            a.images[f"t={t}"], c.images[f"noisy t={t}"]
        )
    assert all(p.is_file() for p in a.paths + b.paths + c.paths)
    assert (tmp_path / "noise" / "image-0_t=9.png").is_file()


def test_same_seed_same_figure_and_other_seed_differs():
    den = tiny_unet()
    x0 = images.load_image("two")

    def run(seed):
        steps = list(range(19, -1, -1))
        return techniques.sdedit_figure(den, x0, i_starts=(3, 10), prompt="2", timesteps=steps, seed=seed).images[
            "i_start=3"
        ]

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_every_figure_runs_on_a_tiny_model(tmp_path):
    den = tiny_unet()
    x0 = images.load_image("four")
    steps = [19, 12, 6, 0]
    it = techniques.iterative_figure(den, x0, timesteps=steps, i_start=1, every=1, out=tmp_path)
    assert [k for k in it.images if k.startswith("t=")] == ["t=12", "t=6", "t=0"]
    gen = techniques.sampling_figure(den, ["3", "8"], n=2, guidance=4.0, timesteps=steps, out=tmp_path)
    assert set(gen.images) == {"no CFG", "CFG s=4"} and gen.images["no CFG"].shape == (4, 1, 28, 28)
    assert set(techniques.sampling_figure(den, [""], n=2, timesteps=steps).images) == {
        "no CFG"
    }  # null prompt: CFG is a no-op
    inp = techniques.inpaint_figure(
        den,
        x0,
        images.mask_preset("bottom-half"),
        n=2,
        method="repaint",
        jump_length=1,
        resample=2,
        timesteps=steps,
        out=tmp_path,
    )
    keep = images.mask_preset("bottom-half").expand(2, 1, 28, 28) == 0
    assert torch.equal(inp.images["inpainted"][keep], x0.expand(2, 1, 28, 28)[keep])
    ana = techniques.anagram_figure(den, ["6", "9"], ["identity", "rot180"], n=2, timesteps=steps, out=tmp_path)
    assert torch.equal(ana.images["rot180"], ana.images["x_0"].flip(-2, -1))
    hyb = techniques.hybrid_figure(den, "0", "1", kernel_size=5, sigma=1.0, n=2, timesteps=steps, out=tmp_path)
    torch.testing.assert_close(hyb.images["lowpass"] + hyb.images["highpass"], hyb.images["x_0"])
    for name in ("iterative", "denoise_comparison", "generate", "inpaint", "anagram", "hybrid"):
        assert (tmp_path / f"{name}.png").is_file() and any((tmp_path / name).iterdir())


# -- CLI ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny class-conditioned run folder (T=20), trained in about a second."""
    out = tmp_path_factory.mktemp("runs") / "tiny-class"
    training.train(tiny_config("class", epochs=1), out, data=synthetic_data(32), device="cpu", progress=False)
    return out


def _cli():
    parser = argparse.ArgumentParser(prog="fundiff")
    sub = parser.add_subparsers(dest="command")
    return parser, register(sub)


def _run(argv):
    parser, cmds = _cli()
    args = parser.parse_args(argv)
    cmds[args.command](args)


def test_cli_subcommands_write_figures(run_dir, tmp_path, capsys):
    _run(
        [
            "generate",
            "--model",
            str(run_dir),
            "--prompt",
            "3",
            "--n",
            "2",
            "--steps",
            "3",
            "--out",
            str(tmp_path / "gen"),
        ]
    )
    assert (tmp_path / "gen" / "generate.png").is_file()
    _run(
        [
            "sdedit",
            "--model",
            str(run_dir),
            "--image",
            "seven",
            "two",
            "--i-start",
            "1",
            "5",
            "--prompt",
            "7",
            "--out",
            str(tmp_path / "sd"),
        ]
    )
    assert (tmp_path / "sd" / "handdrawn.png").is_file()
    _run(
        [
            "inpaint",
            "--model",
            str(run_dir),
            "--image",
            "seven",
            "--mask-preset",
            "center",
            "--method",
            "repaint",
            "--jump-length",
            "1",
            "--resample",
            "2",
            "--steps",
            "4",
            "--n",
            "1",
            "--out",
            str(tmp_path / "inp"),
        ]
    )
    _run(
        [
            "anagram",
            "--model",
            str(run_dir),
            "--steps",
            "3",
            "--n",
            "1",
            "--view",
            "negate",
            "--out",
            str(tmp_path / "ana"),
        ]
    )
    _run(
        [
            "denoise",
            "--model",
            str(run_dir),
            "--image",
            "four",
            "--t",
            "5",
            "15",
            "--i-start",
            "2",
            "--out",
            str(tmp_path / "den"),
        ]
    )
    assert {p.name for p in (tmp_path / "den").glob("*.png")} == {
        "one_step.png",
        "iterative.png",
        "denoise_comparison.png",
    }
    assert "wrote" in capsys.readouterr().out


def test_cli_bad_values_are_rejected_with_the_allowed_list(run_dir, capsys):
    parser, _ = _cli()
    for argv, allowed in [
        (["anagram", "--view", "sideways"], "vflip"),
        (["inpaint", "--method", "blend"], "repaint"),
        (["hybrid", "--kernel-size", "4"], "odd"),
        (["inpaint", "--mask-preset", "middle"], "top-half"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert allowed in capsys.readouterr().err
    for argv, match in [
        (["anagram", "--model", str(run_dir), "--prompts", "6", "elephant"], "elephant"),
        (["anagram", "--model", str(run_dir), "--prompts", "1", "2", "3"], "one --view per prompt"),
        (["sdedit", "--model", str(run_dir), "--image", "two", "--i-start", "40"], "i-start"),
        (["noise", "--model", str(run_dir), "--image", "two", "--t", "20"], "0..19"),
    ]:
        with pytest.raises(FundiffError, match=match) as e:
            _run(argv)
        assert "\n" not in str(e.value)


def test_cli_missing_default_model_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs, "SHIPPED_DIR", tmp_path / "no-shipped-models")
    with pytest.raises(FundiffError, match="fundiff train class --preset quick") as e:
        _run(["generate", "--out", str(tmp_path)])
    assert repr(DEFAULT_MODEL) in str(e.value)


def test_cli_default_model_is_a_shipped_model():
    assert DEFAULT_MODEL in runs.shipped_names()


def test_cli_every_flag_has_help():
    parser, cmds = _cli()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(cmds) == {"setup", "noise", "blur", "denoise", "generate", "sdedit", "inpaint", "anagram", "hybrid"}
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help and action.help.strip(), (name, action.dest)
