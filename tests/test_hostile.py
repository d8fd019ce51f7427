"""Hostile input: sizes past the machine, configs that disagree with their weights, broken caches, a UI served
beyond loopback, huge or odd images and masks. Each case is one line (``fundiff: error: ...`` or ``fundiff:
warning: ...``) on stderr, a known exit status, and nothing partial left on disk."""

import json
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import torch

from fundiff import data, devices, images, memory
from fundiff.cli import main
from fundiff.errors import FundiffError, FundiffWarning
from helpers import synthetic_data, tiny_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory.mktemp("runs"), synthetic_data(32))


def run(argv, capsys) -> tuple[int, list[str], str]:
    """(exit status, stderr lines, stdout) of ``fundiff ARGV``."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.err.splitlines(), captured.out


def one_error(argv, capsys, *needles, rc=2) -> str:
    code, err, _ = run(argv, capsys)
    assert code == rc and len(err) == 1 and err[0].startswith("fundiff: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*")) if path.exists() else []


# -- 1. sizes bounded before allocation --------------------------------------------------------------------
def test_train_refuses_a_batch_past_the_machine_before_any_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(48))
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 64 << 20)  # a 64 MiB machine
    out = tmp_path / "run"
    line = one_error(
        ["train", "class", "--preset", "tiny", "--hidden", "64", "--batch-size", "100000000", "--out", out],
        capsys,
        "training a hidden-64 class UNet on 48 images a step needs about",
        "0.1 GiB is available",
        "--batch-size",
    )
    assert not out.exists() and "use --batch-size" in line


def test_train_estimate_grows_with_the_batch_and_fits_a_small_one(tmp_path, capsys, monkeypatch):
    from fundiff.models.unet import UNetConfig

    cfg = UNetConfig(kind="class", hidden=64)
    small, big = memory.training_bytes(cfg, 64), memory.training_bytes(cfg, 60000)
    assert 300 << 20 < small < 2 << 30 and big > 500 * small  # ~8 MiB an image for hidden 64 (measured 5.6 saved)
    assert memory.sampling_bytes(cfg, 512) < memory.training_bytes(cfg, 512) / 2
    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(32))
    code, err, _ = run(["train", "time", "--preset", "tiny", "--max-steps", "1", "--out", tmp_path / "r"], capsys)
    assert code == 0 and not [e for e in err if "error" in e]  # this machine has room for a tiny one


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 313.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: not enough memory: you tried to "
                     "allocate 336000000000 bytes."),
        MemoryError(),
    ],
)  # fmt: skip
def test_out_of_memory_anywhere_is_one_line(exc, runs, tmp_path, capsys, monkeypatch):
    from fundiff.cli import sample

    def boom(args):
        raise exc

    monkeypatch.setattr(sample, "_cmd_sample", boom)
    line = one_error(["sample", "--model", runs["time"], "--n", "5", "--out", tmp_path / "o"], capsys, rc=1)
    assert "out of memory during `fundiff sample`" in line and "lower --n" in line


def test_other_runtime_errors_are_not_called_out_of_memory(runs, tmp_path, monkeypatch):
    from fundiff.cli import sample

    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(sample, "_cmd_sample", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["sample", "--model", str(runs["time"]), "--out", str(tmp_path / "o")])


def test_sample_draws_a_large_n_in_batches_with_the_same_pictures_for_one_batch(runs, tmp_path, capsys, monkeypatch):
    from fundiff.cli import sample

    read_png = images.read_image

    argv = ["sample", "--model", runs["time"], "--steps", "2", "--seed", "3"]
    monkeypatch.setattr(sample, "SAMPLE_BATCH", 4)
    assert run([*argv, "--n", "4", "--out", tmp_path / "batched"], capsys)[0] == 0
    monkeypatch.setattr(sample, "SAMPLE_BATCH", 6)
    assert run([*argv, "--n", "4", "--out", tmp_path / "one"], capsys)[0] == 0
    for i in range(4):  # four samples in one batch of 4 or of 6: the same draws
        a, b = (read_png(tmp_path / d / f"sample_{i:03d}.png") for d in ("batched", "one"))
        assert torch.equal(a, b)
    monkeypatch.setattr(sample, "SAMPLE_BATCH", 4)
    monkeypatch.setattr(sample, "GRID_MAX", 5)
    code, _, out = run([*argv, "--n", "6", "--out", tmp_path / "many"], capsys)
    assert code == 0 and len(list((tmp_path / "many").glob("sample_*.png"))) == 6 and "grid.png shows 5" in out
    one_error([*argv, "--n", "6", "--out", tmp_path / "grid.png"], capsys, "a grid of 6 samples", "--n 5 or less")
    assert not (tmp_path / "grid.png").exists()


# -- 2. configs validated against weights -------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, said",
    [("hidden", 64, "model.hidden = 64 but"), ("num_classes", 5, "num_classes = 10"),
     ("in_channels", 3, "model.in_channels = 3"), ("kind", "time", "model.kind = 'time'")],
)  # fmt: skip
@pytest.mark.parametrize("command", ["sample", "generate"])
def test_a_config_that_disagrees_with_its_weights_names_the_field(command, field, value, said, runs, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["class"], run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["model"][field] = value
    (run_dir / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    one_error([command, "--model", run_dir, "--steps", "2", "--out", out], capsys, said, "config.json")
    assert not out.exists()


def test_invalid_config_json_says_the_line(runs, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["class"], run_dir)
    (run_dir / "config.json").write_text('{"format": "fundiff-run/1",\n  "model": {,}\n}')
    one_error(["sample", "--model", run_dir, "--out", tmp_path / "o"], capsys, "invalid JSON at line 2")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "cache",
    [{"choices": 5}, [1, 2], "x", {"choices": {"KEY": 5}}, {"choices": {"KEY": {"precision": "fp64"}}},
     {"choices": {"KEY": {"precision": "bf16", "channels_last": "yes"}}},
     {"choices": {"KEY": {"precision": "bf16", "channels_last": True, "timings": [1]}}}],
)  # fmt: skip
def test_a_precision_cache_of_any_wrong_shape_is_rebuilt(cache, tmp_path, monkeypatch):
    from fundiff.models.unet import UNet, UNetConfig, example_inputs

    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path))
    net = UNet(UNetConfig(kind="time", hidden=4))
    make = lambda: example_inputs(net.config, 2)  # noqa: E731
    key = devices._precision_key(net, make(), torch.device("cpu"), mode="infer", threads=1, channels_last=None)
    text = json.dumps(cache).replace('"KEY"', json.dumps(key))
    devices.precision_cache_path().write_text(text)
    monkeypatch.setattr(
        devices, "_measure", lambda model, batch, device, candidates, **kw: dict.fromkeys(candidates, 1.0)
    )
    choice = devices.choose_precision(net, make, torch.device("cpu"), mode="infer", threads=1)
    assert choice.source == "measured"
    rebuilt = json.loads(devices.precision_cache_path().read_text())
    assert rebuilt["choices"][key]["precision"] in ("bf16", "fp32")
    assert devices.choose_precision(net, make, torch.device("cpu"), mode="infer", threads=1).source == "cached"


# -- 3. the UI ---------------------------------------------------------------------------------------------
def test_ui_host_that_is_no_address_is_one_true_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error(["ui", "--host", "999.1.1.1", "--out", tmp_path / "ui"], capsys, "999.1.1.1")
    assert "--port" not in line and not (tmp_path / "ui").exists()


def test_ui_auth_must_be_user_and_password(capsys):
    with pytest.raises(SystemExit) as e:
        main(["ui", "--auth", "nopassword"])
    err = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and len(err) == 1 and "USER:PASS" in err[0]


def test_ui_beyond_loopback_warns_on_console_and_page_and_passes_auth(tmp_path, capsys, monkeypatch):
    pytest.importorskip("gradio", reason="the web UI needs gradio")
    from fundiff import ui

    seen = {}

    class Demo:
        def block_thread(self):
            pass

    monkeypatch.setattr(ui, "build", lambda config: seen.setdefault("config", config) and Demo())
    monkeypatch.setattr(ui, "launch", lambda demo, config, **kw: seen.update(kw) or "http://0.0.0.0:1/")
    code, err, _ = run(["ui", "--host", "0.0.0.0", "--out", tmp_path / "ui"], capsys)
    assert code == 0 and len(err) == 1 and err[0].startswith("fundiff: warning: ") and "anyone" in err[0]
    assert "anyone who can reach the port" in seen["config"].notice and seen["auth"] is None
    code, err, _ = run(["ui", "--host", "0.0.0.0", "--auth", "ann:s:cret", "--out", tmp_path / "ui"], capsys)
    assert code == 0 and seen["auth"] == ("ann", "s:cret") and "--auth login" in err[0]
    seen.clear()
    code, err, _ = run(["ui", "--host", "127.0.0.1", "--out", tmp_path / "ui"], capsys)
    assert code == 0 and err == [] and seen["config"].notice == ""


def test_ui_page_shows_the_notice(tmp_path):
    pytest.importorskip("gradio", reason="the web UI needs gradio")
    from fundiff import ui

    config = ui.UIConfig(
        models=("mnist-class",), model="mnist-class", out=tmp_path / "ui", notice="SEEN BY ALL", precision="fp32"
    )
    demo = ui.build(config)
    assert any("SEEN BY ALL" in str(getattr(b, "value", "")) for b in demo.blocks.values())


def test_ui_busy_port_is_one_line_and_leaves_no_out_folder(tmp_path):
    pytest.importorskip("gradio", reason="the web UI needs gradio")
    from fundiff.ui import UIConfig, serve

    class Demo:
        def queue(self, **kw):
            pass

        def launch(self, **kw):
            raise OSError("Cannot find empty port in range: 7999-7999. You can specify a different port by setting "
                          "the GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter to "
                          "`launch()`.")  # fmt: skip

    config = UIConfig(models=("m",), model="m", out=tmp_path / "new" / "ui")
    with pytest.raises(FundiffError) as e:
        serve.launch(Demo(), config, port=7999)
    assert str(e.value) == "cannot serve on 127.0.0.1:7999: the port is in use; pick another --port"
    assert not (tmp_path / "new").exists()


# -- 4. messages and silent surprises -------------------------------------------------------------------------
def huge_png(path: Path, side: int) -> Path:
    """A valid side x side 1-bit black PNG, written row by row (a few KB on disk, never decoded here)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z, row, parts = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8), []
    for _ in range(side):
        parts.append(z.compress(row))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )
    return path


def test_a_huge_png_is_refused_with_its_size_and_the_limit(runs, tmp_path, capsys):
    png = huge_png(tmp_path / "big.png", 16000)
    line = one_error(["sdedit", "--model", runs["class"], "--image", png, "--out", tmp_path / "o"], capsys,
                     "16000x16000", "256 megapixels", "179 megapixels")  # fmt: skip
    assert "PNG or JPEG" not in line and not (tmp_path / "o").exists()
    with pytest.raises(FundiffError, match="16000x16000"):
        images.load_mask(png, like=(3, 3), refit=True)
    assert images.image_size_of(png) == (16000, 16000)


def test_a_large_image_gives_fundiffs_own_one_line_warning(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("L", (40, 30), 255).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL would warn (1000 < 1200 < 2000 pixels)
    monkeypatch.setattr(images, "WARN_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images.read_image(path)
    assert [w.category for w in caught] == [FundiffWarning]
    assert "40x30" in str(caught[0].message) and "\n" not in str(caught[0].message)


def test_a_long_prompt_is_cut_in_its_error(runs, tmp_path, capsys):
    line = one_error(["generate", "--model", runs["class"], "--prompt", "x" * 10000, "--out", tmp_path / "o"], capsys,
                     "(10000 characters)")  # fmt: skip
    assert len(line) < 400 and not (tmp_path / "o").exists()


def test_white_ink_on_a_transparent_canvas_stays_visible(tmp_path):
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(15, 10), (45, 50)], fill=(255, 255, 255, 255), width=6)
    im.save(tmp_path / "ink.png")
    x = images.load_image(tmp_path / "ink.png")
    assert float(x.max()) > 0.8 and float(x.min()) < 0.1 and float(x.mean()) < 0.5  # light ink on dark, MNIST-like
    dark = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    ImageDraw.Draw(dark).line([(15, 10), (45, 50)], fill=(0, 0, 0, 255), width=6)
    dark.save(tmp_path / "dark.png")
    y = images.load_image(tmp_path / "dark.png")  # black ink: on white, then inverted as before
    assert float(y.max()) > 0.8 and float(y.mean()) < 0.5


def test_a_grey_mask_is_binarised_with_a_one_line_notice(runs, tmp_path, capsys):
    from PIL import Image

    Image.new("L", (28, 28), 128).save(tmp_path / "grey.png")
    Image.new("L", (28, 28), 0).save(tmp_path / "img.png")
    out = tmp_path / "o"
    code, err, _ = run(["inpaint", "--model", runs["class"], "--image", tmp_path / "img.png", "--mask",
                        tmp_path / "grey.png", "--steps", "2", "--out", out], capsys)  # fmt: skip
    assert code == 0 and len(err) == 1 and err[0].startswith("fundiff: warning: mask ")
    assert "not black-and-white (100% of its pixels are grey): binarised" in err[0]
    Image.new("L", (28, 28), 255).save(tmp_path / "white.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a black-and-white mask: no notice
        assert images.load_mask(tmp_path / "white.png").all()


def test_an_anagram_needs_two_prompts_in_the_library_and_the_cli(runs, tmp_path, capsys):
    from fundiff import techniques

    with pytest.raises(FundiffError, match="2 or more prompts"):
        techniques.anagram_views(["6"], ["flip"])
    one_error(["anagram", "--model", runs["class"], "--prompts", "6", "--out", tmp_path / "o"], capsys,
              "a visual anagram needs 2 or more prompts (one per view), got 1")  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_more_threads_than_cores_warns_once(runs, tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    old = torch.get_num_threads()
    try:
        code, err, _ = run(["sample", "--model", runs["time"], "--n", "1", "--steps", "1", "--threads", "3",
                            "--precision", "fp32", "--out", tmp_path / "o.png"], capsys)  # fmt: skip
    finally:
        torch.set_num_threads(old)
    assert code == 0 and len(err) == 1 and err[0].startswith("fundiff: warning: --threads 3 is more than the 1 ")
