"""One spec per technique (fundiff.specs): the CLI is built from the specs, every default is written once (the
figure function's signature, or the model's technique defaults), and the Python API, the CLI and a spec's run
give the same pictures for the same arguments. A new technique is a figure function and a spec."""

import argparse
import inspect
from pathlib import Path

import pytest
import torch

from fundiff import DEFAULT_SEED, cli, data, figures, images, specs, techniques, tour
from fundiff.backends import runs
from fundiff.cli.techniques import register
from fundiff.errors import FundiffError
from helpers import synthetic_data, tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from fundiff import training

    out = tmp_path_factory.mktemp("runs") / "tiny-flow-class"  # flow: its own sampler (heun) is not ddpm's
    cfg = tiny_config("class", epochs=1, objective="flow")
    training.train(cfg, out, data=synthetic_data(32), device="cpu", progress=False)
    return out


@pytest.fixture
def test_split(monkeypatch):
    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(16, seed=3))


def _parser():
    parser = argparse.ArgumentParser(prog="fundiff")
    return parser, register(parser.add_subparsers(dest="command"))


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


# -- the CLI is the specs ------------------------------------------------------------------------------
def test_every_subcommand_has_its_specs_flags_and_defaults():
    parser, handlers = _parser()
    assert list(handlers) == list(specs.TECHNIQUES)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, spec in specs.TECHNIQUES.items():
        actions = {a.dest: a for a in sub.choices[name]._actions}
        for p in spec.params:
            a = actions[p.name]
            assert p.cli_flag in a.option_strings and a.default is None, (name, p.name)  # None: the library's
            assert (a.nargs == "+") == p.many, (name, p.name)
        assert ("sampler" in actions) == spec.samples, name


def test_help_says_the_per_dataset_defaults_the_library_uses():
    """The drift this fixes: `hybrid --help` said sigma 1.5 where the MNIST default is 2."""
    parser, _ = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sigma = next(a for a in sub.choices["hybrid"]._actions if a.dest == "sigma")
    d = techniques.DATASET_DEFAULTS["mnist"]
    assert f"mnist models: {d.hybrid_sigma:g}" in sigma.help and d.hybrid_sigma == 2.0
    assert f"fashion-mnist models: {techniques.DIGIT_DEFAULTS.hybrid_sigma:g}" in sigma.help
    assert "DeepFloyd IF: 2" in sigma.help
    i_start = next(a for a in sub.choices["sdedit"]._actions if a.dest == "i_starts")
    assert "1 3 5 7 10 20" in i_start.help


def test_a_default_is_written_once_in_the_figure_function():
    for spec in specs.TECHNIQUES.values():
        sig = inspect.signature(spec.figure).parameters
        for p in spec.params:
            written = sig[p.name].default
            assert written is not inspect.Parameter.empty, (spec.name, p.name)
            if written is None:  # a default the model decides: the spec says how, with the figure's own helper;
                # or an optional argument left out (hybrid's --mid), whose absence the spec says in words
                assert (p.per_model is not None) != bool(p.none), (spec.name, p.name)
            else:
                assert p.per_model is None and spec.default(p.name) == (
                    list(written) if isinstance(written, tuple) else written
                )
    # the tour leaves every technique parameter it does not choose to the technique
    assert all(getattr(tour.FULL, k) is None for k in ("i_starts", "i_start", "every", "jump_length", "resample"))


def test_values_are_checked_by_the_spec_with_one_line_errors():
    spec = specs.technique("hybrid")
    assert spec.check({"kernel_size": "9", "sigma": 2, "n": 3.0}) == {"kernel_size": 9, "sigma": 2.0, "n": 3}
    for given, match in [
        ({"kernel_size": 4}, "--kernel-size: expected an odd integer >= 1, got 4"),
        ({"sigma": 0}, "--sigma: expected a number > 0"),
        ({"n": 2.5}, "--n: expected an integer in 1..64"),
        ({"colour": "red"}, "hybrid takes no colour"),
    ]:
        with pytest.raises(FundiffError, match=match) as e:
            spec.check(given)
        assert "\n" not in str(e.value)
    with pytest.raises(FundiffError, match="unknown view 'sideways'"):
        specs.technique("anagram").check({"views": ["sideways"]})
    with pytest.raises(FundiffError, match="unknown technique 'blend'"):
        specs.technique("blend")


# -- the same arguments, the same pictures ----------------------------------------------------------------
API = {  # name -> (the Python API call with no technique argument, the CLI's input flags)
    "generate": (lambda den, o: techniques.sampling_figure(den, n=2, out=o), ["--n", "2"]),
    "anagram": (lambda den, o: techniques.anagram_figure(den, n=2, out=o), ["--n", "2"]),
    "hybrid": (lambda den, o: techniques.hybrid_figure(den, n=2, out=o), ["--n", "2"]),
    "sdedit": (  # T = 20 has 20 default timesteps: the write-up's i_start 20 lies past them
        lambda den, o: techniques.sdedit_figure(den, images.load_image("two"), i_starts=[1, 3], out=o),
        ["--image", "two", "--i-start", "1", "3"],
    ),
    "inpaint": (
        lambda den, o: techniques.inpaint_figure(
            den, images.dataset_image("mnist"), images.mask_preset("top-half"), out=o
        ),
        [],
    ),
    "denoise": (lambda den, o: techniques.denoise_figure(den, images.dataset_image("mnist"), out=o), []),
}


@pytest.mark.parametrize("name", list(API))
def test_the_python_api_and_the_cli_make_the_same_pictures(name, run_dir, test_split, tmp_path):
    """Defaults (timesteps, sampler, prompts, filter, views, i_starts, RePaint's jumps) are the library's: the API
    called without them and the CLI given no flag for them write byte-identical PNGs."""
    torch.set_num_threads(1)
    den = runs.load_denoiser(run_dir)  # fp32, as the CLI with --precision fp32
    call, flags = API[name]
    call(den, tmp_path / "api")
    argv = [name, "--model", str(run_dir), *flags, "--out", str(tmp_path / "cli"), "--precision", "fp32"]
    assert cli.main([*argv, "--threads", "1"]) == 0
    if name == "sdedit":  # the CLI names the figure of --image files after the write-up's hand-drawn section
        (tmp_path / "cli" / "handdrawn.png").rename(tmp_path / "cli" / "sdedit.png")
        (tmp_path / "cli" / "handdrawn").rename(tmp_path / "cli" / "sdedit")
    api, made = _pngs(tmp_path / "api"), _pngs(tmp_path / "cli")
    assert api and api == made


# -- a new technique: a figure function and its spec ----------------------------------------------------------
def mirror_figure(denoiser, x_0, *, axis: str = "rows", out=None, seed: int = DEFAULT_SEED) -> figures.Figure:
    """A small real example: the input and its mirror image (``axis`` rows: upside down, cols: left-right)."""
    mirrored = x_0.flip(-2 if axis == "rows" else -1)
    rows = [(f"image {b}", torch.stack([x_0[b], mirrored[b]])) for b in range(x_0.shape[0])]
    paths = figures.write(
        out, "mirror", rows, col_labels=["input", f"mirrored ({axis})"], title="mirror", value_range=(0, 1)
    )
    return figures.Figure({"x_0": x_0, "mirrored": mirrored}, paths)


MIRROR = specs.Technique(
    "mirror",
    mirror_figure,
    "the input and its mirror image",
    "A technique added as a figure function and this spec, nothing else.",
    (specs.Param("axis", specs.Choice(("rows", "cols")), "which way to mirror"),),
    inputs="image",
    samples=False,
)


def test_adding_a_technique_is_its_function_and_its_spec(monkeypatch, run_dir, tmp_path, capsys):
    monkeypatch.setattr(specs, "TECHNIQUES", {**specs.TECHNIQUES, "mirror": MIRROR})
    assert (
        cli.main(["mirror", "--model", str(run_dir), "--image", "two", "--axis", "cols", "--out", str(tmp_path)]) == 0
    )
    written = images.read_image(tmp_path / "mirror" / "image-0_mirrored-cols.png")
    original = images.read_image(tmp_path / "mirror" / "image-0_input.png")
    assert torch.equal(written, original.flip(-1))
    with pytest.raises(SystemExit) as e:  # a parser error: one line, exit status 2
        cli.main(["mirror", "--model", str(run_dir), "--axis", "diagonal", "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "expected one of rows, cols, got 'diagonal'" in err and "\n" not in err
    assert not (tmp_path / "x").exists()
    gr = pytest.importorskip("gradio")
    from fundiff.ui.controls import controls, given_from

    with gr.Blocks():
        (axis,) = controls(MIRROR, runs.load_denoiser(run_dir), elem_prefix="mirror")
    assert isinstance(axis, gr.Radio) and axis.value == "rows"
    assert given_from(MIRROR, ["cols"]) == {"axis": "cols"}
    command = specs.technique_command(MIRROR, "m", {"axis": "cols"}, inputs=["--image", "two"], seed=1, out="o")
    assert command == [
        "fundiff",
        "mirror",
        "--model",
        "m",
        "--image",
        "two",
        "--axis",
        "cols",
        "--seed",
        "1",
        "--out",
        "o",
    ]
