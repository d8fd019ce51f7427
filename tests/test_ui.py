"""The web UI (fundiff.ui) through its API with gradio_client, and the ``on_step`` hooks it streams x0_hat from.

The API tests start the app in this process on a free local port with the shipped ``mnist-class``
model and 3 steps (test images: synthetic, no dataset needed), and skip where gradio or
gradio_client is missing (pip install 'fundiff[ui]' gradio_client). The hook tests need neither.
"""

import json
import re
import shlex
import socket
from pathlib import Path

import pytest
import torch

from fundiff import edits, images, provenance, techniques
from fundiff.backends import runs
from fundiff.errors import FundiffError
from helpers import synthetic_data, tiny_unet

STEPS = [19, 12, 6, 0]
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio's own use of pandas 3


class Steps:
    """An on_step hook that records (i, t, t_prev) and the x_prev / x0_hat it saw, and changes nothing."""

    def __init__(self) -> None:
        self.seen, self.x_prev, self.x0_hat = [], [], []

    def __call__(self, i, t, t_prev, x_prev, x0_hat):
        self.seen.append((i, t, t_prev))
        self.x_prev.append(x_prev.clone())
        self.x0_hat.append(x0_hat.clone())


def _same(a: techniques.Figure, b: techniques.Figure) -> bool:
    return a.images.keys() == b.images.keys() and all(torch.equal(a.images[k], b.images[k]) for k in a.images)


# -- the hooks (no gradio) ---------------------------------------------------------------------------
def test_sdedit_figure_on_step_sees_each_descent_and_changes_nothing():
    den, x0, hook = tiny_unet(), images.load_image("seven"), Steps()
    plain = techniques.sdedit_figure(den, x0, i_starts=(1, 2), timesteps=STEPS, prompt="7", seed=3)
    watched = techniques.sdedit_figure(den, x0, i_starts=(1, 2), timesteps=STEPS, prompt="7", seed=3, on_step=hook)
    assert _same(plain, watched)
    assert hook.seen == [(0, 12, 6), (1, 6, 0), (2, 0, -1), (0, 6, 0), (1, 0, -1)]
    assert torch.equal(hook.x_prev[2], watched.images["i_start=1"])  # the last step's x_prev is the result
    assert hook.x0_hat[0].shape == x0.shape


@pytest.mark.parametrize("method", ["replace", "repaint"])
def test_inpaint_on_step_sees_the_known_region_put_back(method):
    den, x0 = tiny_unet(), images.load_image("four")
    mask, hook = images.mask_preset("top-half"), Steps()
    kw = dict(n=2, method=method, jump_length=1, resample=2, prompt="4", timesteps=STEPS, seed=5)
    plain = techniques.inpaint_figure(den, x0, mask, **kw)
    watched = techniques.inpaint_figure(den, x0, mask, **kw, on_step=hook)
    assert _same(plain, watched)
    walk = edits.repaint_walk(len(STEPS), 1, 2) if method == "repaint" else list(range(len(STEPS), -1, -1))
    downs = sum(b < a for a, b in zip(walk, walk[1:]))
    assert [i for i, _, _ in hook.seen] == list(range(downs)) and hook.seen[-1][2] == -1
    keep = ~images.mask_preset("top-half").bool().expand(2, 1, 28, 28)
    assert torch.equal(hook.x_prev[-1][keep], x0.expand(2, -1, -1, -1)[keep])  # after the known part is put back


def test_inpaint_on_step_may_replace_x_inside_the_mask_only():
    den, x0 = tiny_unet(), images.load_image("two")
    mask = images.mask_preset("center")

    def zero(i, t, t_prev, x_prev, x0_hat):
        return torch.zeros_like(x_prev)

    out = edits.inpaint(den, x0, mask, STEPS, cond=den.encode([""]), generator=None, on_step=zero)
    inside = mask.bool().expand_as(x0)
    assert torch.equal(out[inside], torch.zeros_like(out[inside]))  # the hook's replacement, where new content goes
    assert torch.equal(out[~inside], x0[~inside])  # and never outside the mask


def test_sampling_anagram_and_hybrid_figures_pass_on_step():
    den = tiny_unet()
    runs = {
        "sampling": lambda hook: techniques.sampling_figure(
            den, ["3"], n=2, guidance=3.0, timesteps=STEPS, on_step=hook
        ),
        "anagram": lambda hook: techniques.anagram_figure(
            den, ["6", "9"], ["identity", "rot180"], n=2, timesteps=STEPS, on_step=hook
        ),
        "hybrid": lambda hook: techniques.hybrid_figure(den, "0", "1", n=2, timesteps=STEPS, on_step=hook),
    }
    for name, run in runs.items():
        hook = Steps()
        assert _same(run(None), run(hook)), name
        descents = 2 if name == "sampling" else 1  # without and with CFG
        assert [t for _, t, _ in hook.seen] == STEPS * descents, name


# -- the app through its API -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(out: Path, *, steps: int | None = 3):
    """fundiff.ui on a free local port with the shipped mnist-class model: (demo, url, config)."""
    from fundiff import ui

    config = ui.UIConfig(models=("mnist-class",), model="mnist-class", steps=steps, precision="fp32", out=out)
    demo = ui.build(config)
    url = ui.launch(demo, config, host="127.0.0.1", port=free_port())
    return demo, url, config


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(gradio_client.Client, config, demo) of an app that lives for this module; test images are synthetic."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        pytest.importorskip("gradio", reason="the web UI needs gradio: pip install 'fundiff[ui]'")
        client_lib = pytest.importorskip("gradio_client", reason="the API test needs gradio_client")
        from fundiff import data

        mp.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(8, seed=3))
        demo, url, config = start_app(tmp_path_factory.mktemp("ui") / "out")
        try:
            yield client_lib.Client(url, verbose=False), config, demo
        finally:
            demo.close()


def _png(path: Path, pixels) -> Path:
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return path


def _drawn(path: Path) -> str:
    """A PNG file as the drawing pad sends it (ui/pad.py): a PNG data URL."""
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _seven(path: Path) -> Path:
    """A dark-on-light hand-drawn 7, as a user would upload it (any size)."""
    import numpy as np

    img = np.full((120, 100), 255, np.uint8)
    img[15:27, 15:85] = 0
    for r in range(27, 110):
        c = 85 - (r - 27) * 45 // 83
        img[r, c - 6 : c + 6] = 0
    return _png(path, img)


def _result(out) -> tuple[Path, list[Path], str]:
    """(figure PNG, downloads, status) of a tab without an extra image."""
    live, figure, files, status = out
    return Path(figure), [Path(f) for f in files], status


def _manifest(files: list[Path]) -> dict:
    return json.loads(next(f for f in files if f.name == "manifest.json").read_text())


def _argv(manifest: dict) -> list[str]:
    return shlex.split(manifest["sections"][0]["command"])


def test_api_sampling_writes_figure_zip_and_a_tour_manifest(served):
    client, config, _ = served
    out = client.predict("mnist-class", "ddpm", 3, 20040805, "3, seven", 2, 5.0, api_name="/sample")
    figure, files, status = _result(out)
    assert figure.stat().st_size > 1000 and "done in" in status
    assert sorted(f.suffix for f in files) == [".gif", ".json", ".png", ".zip"]
    gif = next(f for f in files if f.suffix == ".gif")
    assert gif.name == "generate.gif" and gif.read_bytes()[:6] == b"GIF89a"
    m = _manifest(files)
    assert m["format"] == "fundiff-tour/1" and m["seed"] == 20040805 and m["models"]["model"]["sha256"]
    entry = m["sections"][0]
    T = runs.load_denoiser("mnist-class").schedule.T  # 3 steps evenly spaced over the shipped model's T
    assert entry["timesteps"] == [T - 1, round((T - 1) / 2), 0] and entry["guidance"] == [1.0, 5.0]
    assert _argv(m)[:2] == ["fundiff", "generate"] and "--steps" in _argv(m) and "3" in _argv(m)
    folder = Path(_argv(m)[_argv(m).index("--out") + 1])
    assert provenance.files_intact(folder, entry["files"]) and (folder / "index.html").is_file()
    assert entry["figures"] == ["generate.png", "generate.gif"] and "generate/3-no-cfg_sample-1.png" in entry["files"]
    assert "--animate" in _argv(m)


def test_api_sdedit_of_an_upload_is_what_the_cli_command_makes(served, tmp_path):
    from fundiff import cli

    client, _, _ = served
    from gradio_client import handle_file

    upload = handle_file(str(_seven(tmp_path / "seven.png")))
    out = client.predict(
        "mnist-class", "ddim", 3, 7, "upload", None, upload, "ink", "7", 3.0, "one level", 1, api_name="/sdedit"
    )
    figure, files, status = _result(out)
    m = _manifest(files)
    argv = _argv(m)
    assert argv[:2] == ["fundiff", "sdedit"] and argv[argv.index("--i-start") + 1] == "1"
    ui_folder = Path(argv[argv.index("--out") + 1])
    argv[argv.index("--out") + 1] = str(tmp_path / "cli")
    assert cli.main(argv[1:]) == 0
    made = sorted((tmp_path / "cli" / "handdrawn").glob("*.png"))
    assert made and [p.read_bytes() for p in made] == [(ui_folder / "handdrawn" / p.name).read_bytes() for p in made]
    # the animation offered for download is the one `--animate` writes, byte for byte
    assert (tmp_path / "cli" / "handdrawn.gif").read_bytes() == (ui_folder / "handdrawn.gif").read_bytes()


def test_live_sdedit_and_inpainting_redo_a_stroke_and_write_nothing(served, tmp_path):
    """With "live" ticked, every change of the drawing pad (the mask pad) runs one SDEdit level (the inpainting)
    into the x0_hat image and says how long it took; unticked, a change does nothing; neither writes a file."""
    import numpy as np

    client, config, _ = served
    before = sorted(p.name for p in config.out.iterdir()) if config.out.is_dir() else []
    sketch = _drawn(_seven(tmp_path / "seven.png"))
    shared = ["mnist-class", "ddim", 3, 7]
    image, status = client.predict(*shared, True, sketch, "ink", "7", 3.0, 1, api_name="/sdedit_live")
    assert Path(image).is_file() and re.fullmatch(r"live: SDEdit from i_start 1 \(t = \d+\) in \d+ ms; .*", status)
    _, status = client.predict(*shared, False, sketch, "ink", "7", 3.0, 1, api_name="/sdedit_live")
    assert not isinstance(status, str)  # unticked: skipped (gradio's "no update")
    _, status = client.predict(*shared, True, "", "ink", "7", 3.0, 1, api_name="/sdedit_live")
    assert status.startswith("live: the canvas is empty")  # a problem is a status line, not a pop-up
    layer = np.zeros((280, 280, 4), np.uint8)
    layer[:140, :, :] = (255, 51, 153, 178)
    editor = _drawn(_png(tmp_path / "l.png", layer))
    image, status = client.predict(
        *shared, True, "test image", 2, None, editor, "replace", 5, 5, "", 5.0, 2, api_name="/inpaint_live"
    )
    assert Path(image).is_file() and re.fullmatch(r"live: 2 inpainting\(s\), 3 step\(s\), in \d+ ms; .*", status)
    after = sorted(p.name for p in config.out.iterdir() if p.name != ".preview") if config.out.is_dir() else []
    assert after == [n for n in before if n != ".preview"]


def test_api_inpainting_with_a_painted_mask(served, tmp_path):
    import numpy as np

    client, _, _ = served
    layer = np.zeros((280, 280, 4), np.uint8)
    layer[:140, :, :] = (255, 51, 153, 255)  # the top half painted, on transparent (the mask pad's value)
    editor = _drawn(_png(tmp_path / "l.png", layer))
    out = client.predict(
        "mnist-class",
        "ddpm",
        3,
        1,
        "test image",
        2,
        None,
        editor,
        "painted",
        "repaint",
        1,
        2,
        "",
        5.0,
        2,
        api_name="/inpaint",
    )
    figure, files, _ = _result(out)
    argv = _argv(_manifest(files))
    folder = Path(argv[argv.index("--out") + 1])
    mask = images.load_mask(folder / "mask.png")
    assert mask[..., :14, :].all() and not mask[..., 14:, :].any()
    assert argv[argv.index("--index") + 1] == "2" and argv[argv.index("--method") + 1] == "repaint"
    assert (folder / "inpaint.png").is_file() and len(list((folder / "inpaint").glob("*inpainted*.png"))) == 2


def _message(client, *args, api_name: str) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        client.predict(*args, api_name=api_name)
    return str(e.value)


def test_api_bad_inputs_give_a_message(served, tmp_path):
    from gradio_client import handle_file

    client, config, _ = served
    before = sorted(p.name for p in config.out.iterdir()) if config.out.is_dir() else []
    assert "unknown prompt 'banana'" in _message(
        client, "mnist-class", "ddpm", 3, 1, "banana", 1, 5.0, api_name="/sample"
    )
    sdedit = ["mnist-class", "ddpm", 3, 1]
    assert "canvas is empty" in _message(
        client, *sdedit, "drawing", None, None, "ink", "", 5.0, "one level", 1, api_name="/sdedit"
    )
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert "'notes.txt' is not an image" in _message(
        client, *sdedit, "upload", None, handle_file(str(text)), "pad", "", 5.0, "one level", 1, api_name="/sdedit"
    )
    assert "mask is empty" in _message(
        client, *sdedit, "test image", 0, None, "", "painted", "replace", 5, 5, "", 5.0, 1, api_name="/inpaint"
    )
    assert "not a drawing from the pad" in _message(
        client, *sdedit, "drawing", "<svg/>", None, "ink", "", 5.0, "one level", 1, api_name="/sdedit"
    )
    T = runs.load_denoiser("mnist-class").schedule.T
    assert f"steps must be in 1..{T}" in _message(
        client, "mnist-class", "ddpm", T + 1, 1, "3", 1, 5.0, api_name="/sample"
    )
    after = sorted(p.name for p in config.out.iterdir()) if config.out.is_dir() else []
    assert after == before  # a failed run leaves no folder behind


def test_one_sampler_at_a_time_no_analytics(served):
    from fundiff import ui

    _, _, demo = served
    names = ("sample", "sdedit", "inpaint", "anagram", "hybrid", "sdedit_live", "inpaint_live")
    sampling = [fn for fn in demo.fns.values() if fn.api_name in names]
    assert len(sampling) == 7
    assert all(fn.concurrency_id == ui.SAMPLING_SLOT and fn.concurrency_limit == 1 for fn in sampling)
    assert demo.analytics_enabled is False and demo.share is False and demo.server_name == "127.0.0.1"


# -- the command ---------------------------------------------------------------------------------------
def test_cli_ui_flags_make_the_config(tmp_path):
    pytest.importorskip("gradio", reason="the web UI needs gradio: pip install 'fundiff[ui]'")
    import argparse

    from fundiff.cli import ui as cli_ui

    parser = argparse.ArgumentParser()
    handlers = cli_ui.register(parser.add_subparsers(dest="command"))
    assert set(handlers) == {"ui"}
    args = parser.parse_args(["ui", "--port", "7999", "--steps", "5", "--out", str(tmp_path)])
    config = cli_ui.config_from_args(args)
    assert args.host == "127.0.0.1" and config.model == "mnist-class" and config.steps == 5
    assert "mnist-class" in config.models and "mnist-denoiser" not in config.models  # diffusion models only
    with pytest.raises(FundiffError, match="not a folder"):
        cli_ui.config_from_args(parser.parse_args(["ui", "--runs", str(tmp_path / "none")]))
    with pytest.raises(SystemExit):
        parser.parse_args(["ui", "--port", "0"])


def test_out_must_be_a_folder_of_its_own(tmp_path, monkeypatch):
    """Every file under --out can be downloaded: the working folder, home or / are refused."""
    pytest.importorskip("gradio", reason="the web UI needs gradio: pip install 'fundiff[ui]'")
    from fundiff import ui
    from fundiff.errors import FundiffError

    monkeypatch.chdir(tmp_path)
    for out in (tmp_path, tmp_path.parent, Path.home()):
        config = ui.UIConfig(models=("mnist-class",), model="mnist-class", out=out)
        with pytest.raises(FundiffError, match="would let the page serve every file"):
            ui.launch(None, config)


def test_closing_the_stream_stops_the_sampler_at_its_next_step():
    """The page went away (gradio closes the generator): the worker raises at its next step, is joined, and the
    run never finishes; nothing of it reaches the caller."""
    import threading
    import time

    from fundiff.ui.app import stream_steps

    steps, finished = [], threading.Event()

    def run(on_step):
        for i in range(500):
            on_step(i, 499 - i, 498 - i, torch.zeros(1), torch.zeros(1, 1, 2, 2))
            steps.append(i)
            time.sleep(0.002)
        finished.set()
        return "done"

    stream = stream_steps(run, total=500)
    done, t, x0_hat, result = next(stream)  # the first preview
    assert result is None and x0_hat.shape == (1, 1, 2, 2) and t == 499 - (done - 1)
    stream.close()
    n = len(steps)
    time.sleep(0.05)
    assert not finished.is_set() and n < 500 and len(steps) == n  # stopped, and stays stopped


def _reproduce(argv: list[str], tmp_path: Path, figure: str) -> None:
    """The manifest's command, run by the CLI into a new folder, writes the UI's very images."""
    from fundiff import cli

    ui_folder = Path(argv[argv.index("--out") + 1])
    argv[argv.index("--out") + 1] = str(tmp_path / "cli")
    assert cli.main(argv[1:]) == 0
    made = sorted((tmp_path / "cli" / figure).glob("*.png"))
    assert made and [p.read_bytes() for p in made] == [(ui_folder / figure / p.name).read_bytes() for p in made]


def test_api_anagram_takes_the_specs_parameters_and_the_cli_reproduces_it(served, tmp_path):
    client, _, _ = served
    out = client.predict("mnist-class", "ddpm", 3, 11, "6, 9", ["rot180"], 5.0, 2, api_name="/anagram")
    live, figure, both, files, status = out
    argv = _argv(_manifest([Path(f) for f in files]))
    assert argv[:2] == ["fundiff", "anagram"] and argv[argv.index("--prompts") + 1 : argv.index("--view")] == ["6", "9"]
    assert argv[argv.index("--view") + 1] == "rot180" and argv[argv.index("--n") + 1] == "2"
    assert Path(both).is_file() and "done in" in status
    _reproduce(argv, tmp_path, "anagram")
    assert "unknown view 'sideways'" in _message(
        client, "mnist-class", "ddpm", 3, 1, "6, 9", ["sideways"], 5.0, 1, api_name="/anagram"
    )


def test_api_hybrid_takes_the_specs_parameters_and_the_cli_reproduces_it(served, tmp_path):
    client, _, _ = served
    # low, mid ("": two bands, the mid filter's values left out), high, kernel, sigma, mid kernel, mid sigma, cfg, n
    out = client.predict("mnist-class", "ddim", 3, 5, "8", "", "3", 7, 2.0, 5, 0.75, 3.0, 2, api_name="/hybrid")
    live, figure, sizes, files, status = out
    argv = _argv(_manifest([Path(f) for f in files]))
    flags = {f: argv[argv.index(f) + 1] for f in ("--low", "--high", "--kernel-size", "--sigma", "--guidance")}
    assert flags == {"--low": "8", "--high": "3", "--kernel-size": "7", "--sigma": "2", "--guidance": "3"}
    assert not {"--mid", "--mid-kernel-size", "--mid-sigma"} & set(argv)
    assert argv[argv.index("--sampler") + 1] == "ddim"  # not the model's own (heun), so the command says it
    _reproduce(argv, tmp_path, "hybrid")
    assert "--kernel-size: expected an odd integer" in _message(
        client, "mnist-class", "ddpm", 3, 1, "8", "", "3", 8, 2.0, 5, 0.75, 3.0, 1, api_name="/hybrid"
    )


def test_api_three_band_hybrid_takes_the_mid_prompt_and_filter_and_the_cli_reproduces_it(served, tmp_path):
    client, _, _ = served
    out = client.predict("mnist-class", "ddpm", 3, 2, "1", "7", "0", 9, 2.0, 3, 1.0, 5.0, 1, api_name="/hybrid")
    argv = _argv(_manifest([Path(f) for f in out[3]]))
    flags = {f: argv[argv.index(f) + 1] for f in ("--low", "--mid", "--high", "--mid-kernel-size", "--mid-sigma")}
    assert flags == {"--low": "1", "--mid": "7", "--high": "0", "--mid-kernel-size": "3", "--mid-sigma": "1"}
    _reproduce(argv, tmp_path, "hybrid")
    assert "must be below --sigma" in _message(
        client, "mnist-class", "ddpm", 3, 1, "1", "7", "0", 9, 2.0, 3, 2.5, 5.0, 1, api_name="/hybrid"
    )


def test_the_drawing_pad_sends_a_png_and_keeps_its_settings_when_the_background_changes():
    """ui/pad.py: the value is a PNG data URL (nothing drawn: empty, None); anything else is a one-line error; an
    update of the mask pad's background carries the pad's other settings (a gradio update replaces them all)."""
    pytest.importorskip("gradio", reason="the web UI needs gradio: pip install 'fundiff[ui]'")
    import numpy as np

    from fundiff.ui import pad

    pixels = np.zeros((4, 5, 3), np.uint8)
    pixels[1, 2] = (255, 51, 153)
    url = pad.png_data_url(pixels)
    assert url.startswith("data:image/png;base64,") and np.array_equal(np.asarray(pad.decode(url, "mask")), pixels)
    assert pad.decode("", "mask") is None and pad.decode(None, "mask") is None
    with pytest.raises(FundiffError, match="the drawing is not a drawing from the pad"):
        pad.decode("data:image/svg+xml;base64,PHN2Zy8+", "drawing")
    with pytest.raises(FundiffError, match="could not be read as a PNG"):
        pad.decode("data:image/png;base64,bm90IGEgcG5n", "drawing")
    mask = pad.pad("mask", label="paint", side=280, brush=28, elem_id="m")
    update = pad.with_background(mask, url)
    assert update.props == mask.props | {"background": url} and mask.props["mode"] == "mask"
    with pytest.raises(ValueError):
        pad.pad("spray", label="x", side=10, brush=1, elem_id="s")
