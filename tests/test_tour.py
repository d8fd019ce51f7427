import argparse
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from fundiff import DEFAULT_SEED, data, provenance, tour
from fundiff.backends import runs
from fundiff.cli import tour as cli_tour
from fundiff.errors import FundiffError
from fundiff.tour import numbers
from helpers import synthetic_data, tiny_runs
from test_report_browser import assert_report_is_whole, open_report, require_browser


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny (T=20, hidden 4) class, time and denoiser run folders."""
    return tiny_runs(tmp_path_factory.mktemp("runs"), synthetic_data(48))


@pytest.fixture
def test_split(monkeypatch):
    """Synthetic digits instead of MNIST's test split (no dataset needed)."""
    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(40, seed=3))


@pytest.fixture(scope="module")
def whole_tour(tmp_path_factory, tiny):
    """Every section of the tiny tour, run once for this module's tests; they read it (or copy it), never change it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every test runs (conftest), which module fixtures precede
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(40, seed=3))
            return tiny_tour(tmp_path_factory.mktemp("tour") / "t", tiny)
    finally:
        torch.set_num_threads(threads)


def tiny_tour(out: Path, tiny: dict, **kw) -> tour.TourResult:
    """The whole tour on the tiny models with the QUICK sizes (a few seconds); ``kw`` overrides run_tour's."""
    args = dict(model=str(tiny["class"]), time_model=str(tiny["time"]), denoiser_model=str(tiny["denoiser"]))
    return tour.run_tour(out, **{**args, "quick": True, "log": lambda line: None, **kw})


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.ids, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "section":
            self.ids.append(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])


def _page(index: Path) -> _Page:
    p = _Page()
    p.feed(index.read_text())
    return p


def test_tour_writes_every_section_images_and_hashes(whole_tour, tiny):
    res = whole_tour
    out = res.index.parent
    assert res.ran == tour.SECTION_IDS and res.skipped == ()
    page = _page(res.index)
    assert page.ids == list(tour.SECTION_IDS) and page.links == list(tour.SECTION_IDS)  # contents list, in order
    assert len(page.images) >= len(tour.SECTION_IDS)
    for src in page.images:
        assert not re.match(r"[a-z]+:", src), "images are files beside index.html, not URLs"
        assert (res.index.parent / src).is_file(), src
    m = json.loads((out / "manifest.json").read_text())
    assert m == res.manifest and m["seed"] == DEFAULT_SEED and m["fundiff"]["version"]
    assert {s["id"] for s in m["sections"]} == set(tour.SECTION_IDS)
    for rel, digest in m["files"].items():
        assert provenance.sha256_file(out / rel) == digest
    figures = {f for s in m["sections"] for f in s["figures"]}
    assert figures == set(page.images) and figures <= set(m["files"])
    shipped = {"emoji": "emoji", "fast": "mnist-class-fast"}  # the text sections' and the student's: shipped models
    for role, facts in m["models"].items():
        folder = runs.resolve(shipped[role]) if role in shipped else Path(tiny[role.removesuffix("-b")])
        assert facts["sha256"] == provenance.sha256_file(folder / "model.safetensors")
    assert m["models"]["emoji"]["dataset"] == "emoji" and any(f.endswith(".gif") for f in figures)
    fast = next(s for s in m["sections"] if s["id"] == "b-fast")
    assert fast["command"].startswith("fundiff generate --model mnist-class-fast ") and fast["guidance"] == [2.0]
    cfg = next(s for s in m["sections"] if s["id"] == "a-cfg")
    assert cfg["command"].startswith("fundiff generate --model ") and "--steps 6" in cfg["command"]
    assert cfg["guidance"] == [1.0, 5.0] and cfg["sampler"] == "ddpm" and cfg["timesteps"][0] == 19
    assert all(s["wall_s"] >= 0 and s["seed"] == DEFAULT_SEED for s in m["sections"])


def test_rerun_skips_complete_sections_and_redoes_broken_ones(tmp_path, tiny, test_split, whole_tour):
    out = tmp_path / "t"
    shutil.copytree(whole_tour.index.parent, out)  # a finished tour, moved: its sections are still complete
    again = tiny_tour(out, tiny)
    assert again.ran == () and again.skipped == tour.SECTION_IDS  # no work at all

    (out / "sections" / "a-cfg" / "generate.png").write_bytes(b"not a png")  # corrupted output
    (out / "sections" / "b-sweep" / "section.json").unlink()  # interrupted before its entry was written
    (out / "sections" / "a-hybrid" / "hybrid" / "hybrid_sample-1.png").unlink()  # a lost single image
    third = tiny_tour(out, tiny)
    assert third.ran == ("a-cfg", "a-hybrid", "b-sweep")
    assert provenance.files_intact(out, third.manifest["files"])

    other_seed = tiny_tour(out, tiny, seed=1, sections=["a-forward", "a-blur"])
    assert other_seed.ran == ("a-forward", "a-blur")  # other settings: stale


def test_section_entry_and_page_show_command_seed_and_card_numbers(tmp_path, tiny, test_split):
    res = tiny_tour(tmp_path / "t", tiny, sections=["a-sdedit", "b-sweep"])
    entry = json.loads((tmp_path / "t" / "sections" / "b-sweep" / "section.json").read_text())
    assert (
        entry["command"].startswith("fundiff denoise-sweep --model ") and f"--seed {DEFAULT_SEED}" in entry["command"]
    )
    assert any(label.startswith("MSE / PSNR at σ=0.5") for label, _ in entry["numbers"])
    html = res.index.read_text()
    assert "fundiff sdedit --model" in html and "--i-start 1 3" in html and "Contents" in html
    assert "https://" not in html and "http://" not in html  # nothing from the network


def test_card_numbers_come_from_the_shipped_cards():
    card = json.loads((runs.SHIPPED_DIR / "mnist-class" / "card.json").read_text())
    rows = dict(numbers.class_numbers(card))
    ev = card["evaluation"]
    assert f"{100 * ev['accuracy']['overall']:.1f}%" in rows.values()
    assert any(v.startswith(f"{ev['fid']:.2f} (floor {ev['fid_floor']:.2f})") for v in rows.values())
    assert rows["trained with"] == card["command"]
    den = json.loads((runs.SHIPPED_DIR / "mnist-denoiser" / "card.json").read_text())
    half = next(r for r in den["evaluation"]["rows"] if r["sigma"] == 0.5)
    assert dict(numbers.denoiser_numbers(den))[f"PSNR at σ=0.5 ({den['evaluation']['n']} test images)"].startswith(
        f"{half['psnr']:.2f} dB"
    )
    assert (
        numbers.class_numbers({}) == numbers.time_numbers({}) and "fundiff evaluate" in numbers.class_numbers({})[0][1]
    )


def test_train_preset_retrains_part_b_first_and_plots_its_loss(tmp_path, tiny, test_split):
    lines = []
    res = tiny_tour(tmp_path / "t", tiny, train="tiny", sections=["b-time", "b-class"], log=lines.append)
    assert any(line.startswith("training denoiser, time, class with --preset tiny: about") for line in lines)
    runs_dir = tmp_path / "t" / "runs"
    assert {p.name for p in runs_dir.iterdir()} == {"mnist-denoiser-tiny", "mnist-time-tiny", "mnist-class-tiny"}
    b_time = next(s for s in res.manifest["sections"] if s["id"] == "b-time")
    assert b_time["figures"][0] == "sections/b-time/loss.png" and b_time["model"].endswith("mnist-time-tiny")
    lines.clear()
    tiny_tour(tmp_path / "t", tiny, train="tiny", sections=["b-time", "b-class"], log=lines.append)
    assert not any(line.startswith("training") for line in lines)  # trained runs are kept


def test_bad_models_and_options_say_what_to_do(tmp_path, tiny, test_split):
    deepfloyd = tmp_path / "IF-I-M"
    deepfloyd.mkdir()
    (deepfloyd / "model_index.json").write_text("{}")
    with pytest.raises(FundiffError, match="runs on fundiff.s own models"):
        tour.run_tour(tmp_path / "o", model=str(deepfloyd))
    with pytest.raises(FundiffError, match="runs on fundiff.s own models"):  # refused before any download
        tour.run_tour(tmp_path / "o", model="DeepFloyd/IF-I-M-v1.0")
    with pytest.raises(FundiffError, match="needs a class-conditioned model"):
        tour.run_tour(tmp_path / "o", model=str(tiny["time"]))
    with pytest.raises(FundiffError, match="trained on mnist, not fashion-mnist"):
        tour.run_tour(tmp_path / "o", model=str(tiny["class"]), dataset="fashion-mnist")
    with pytest.raises(FundiffError, match="unknown section"):
        tiny_tour(tmp_path / "o", tiny, sections=["a-nothing"])
    with pytest.raises(FundiffError, match="no sections chosen"):
        tiny_tour(tmp_path / "o", tiny, sections=[])
    with pytest.raises(FundiffError, match="unknown sampler"):
        tiny_tour(tmp_path / "o", tiny, sampler="rk4")
    with pytest.raises(FundiffError, match="not found"):
        tour.run_tour(tmp_path / "o", model=str(tmp_path / "missing"))
    assert not (tmp_path / "o").exists()  # nothing written before the checks


def test_cli_tour_hands_its_flags_to_run_tour(monkeypatch):
    """`fundiff tour` with no flags runs the tour the library documents (shipped models, each model's own sampler,
    the write-up's seed, out/tour); every flag reaches run_tour; an unknown preset is a parser error."""
    from fundiff import cli

    seen = []
    monkeypatch.setattr(tour, "run_tour", lambda out, **kw: seen.append((out, kw)))
    assert cli.main(["tour"]) == 0
    out, kw = seen[-1]
    assert out == "out/tour" and kw["seed"] == DEFAULT_SEED == 20040805
    assert (kw["model"], kw["dataset"], kw["train"], kw["sampler"], kw["device"]) == (None, None, None, None, "auto")
    argv = ["tour", "--out", "o", "--dataset", "fashion-mnist", "--train", "quick", "--sampler", "dpm++", "--seed", "3"]
    assert cli.main(argv) == 0
    out, kw = seen[-1]
    assert (out, kw["dataset"], kw["train"], kw["sampler"], kw["seed"]) == ("o", "fashion-mnist", "quick", "dpm++", 3)
    parser = argparse.ArgumentParser()
    cli_tour.register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["tour", "--train", "huge"])


@pytest.mark.parametrize(
    "section, files",
    [
        ("a-anagram", ["anagram.png", "anagram/rot180-9_sample-2.png"]),
        ("a-handdrawn", ["handdrawn.png"]),
        ("a-repaint", ["inpaint.png"]),
        ("a-hybrid-bands", ["hybrid.png"]),
        ("b-time", ["generate.png"]),
        ("b-sweep", ["sweep.png", "metrics.json"]),
    ],
)
def test_each_sections_command_reproduces_its_files_byte_for_byte(tmp_path, tiny, test_split, section, files):
    import shlex

    from fundiff import cli

    res = tiny_tour(tmp_path / "t", tiny, sections=[section])
    argv = shlex.split(res.manifest["sections"][0]["command"])
    assert argv[0] == "fundiff"
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert cli.main(argv[1:]) == 0
    for name in files:
        assert provenance.sha256_file(tmp_path / "again" / name) == res.manifest["files"][f"sections/{section}/{name}"]


def test_sampler_is_passed_through_to_figures_commands_and_manifest(tmp_path, tiny, test_split):
    ddpm = tiny_tour(tmp_path / "ddpm", tiny, sections=["a-cfg"])
    ddim = tiny_tour(tmp_path / "ddim", tiny, sections=["a-cfg"], sampler="ddim")
    entry = ddim.manifest["sections"][0]
    assert ddim.manifest["sampler"] == entry["sampler"] == "ddim" and "--sampler ddim" in entry["command"]
    assert "--sampler" not in ddpm.manifest["sections"][0]["command"]  # the default needs no flag
    name = "sections/a-cfg/generate/3-cfg-s=5_sample-1.png"
    assert ddim.manifest["files"][name] != ddpm.manifest["files"][name]


def test_fashion_mnist_uses_class_names_as_prompts(tmp_path, tiny, test_split):
    from fundiff import training
    from helpers import tiny_config

    fashion = tmp_path / "fashion-class"
    training.train(tiny_config("class", epochs=1, T=20, dataset="fashion-mnist"), fashion, data=synthetic_data(48))
    ids = ["a-cfg", "a-handdrawn", "a-img2img", "a-inpaint", "a-anagram", "a-hybrid"]
    res = tiny_tour(tmp_path / "t", tiny, model=str(fashion), dataset="fashion-mnist", sections=ids)
    commands = " ".join(s["command"] for s in res.manifest["sections"])
    assert "--prompt sneaker 'an ankle boot'" in commands and "--image shirt --prompt 'a shirt'" in commands
    assert "--prompts trouser 'a bag' --view vflip" in commands and res.manifest["dataset"] == "fashion-mnist"


def test_the_pure_noise_section_shows_the_mean_and_its_command_retrains_the_same_model(tmp_path, tiny, test_split):
    import shlex

    from fundiff import cli

    res = tiny_tour(tmp_path / "t", tiny, sections=["b-pure-noise"])
    entry = res.manifest["sections"][0]
    assert entry["figures"][0].endswith("pure_noise.png")
    numbers = dict(entry["numbers"])
    after_1, after_5 = (float(numbers[f"RMSE of the outputs to the mean image after {e} epoch(s)"]) for e in (1, 5))
    assert after_5 < float(numbers["RMSE of a training image to the mean image (for scale)"])
    argv = shlex.split(entry["command"])
    assert argv[:3] == ["fundiff", "train", "denoiser"] and "--pure-noise" in argv
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert cli.main(argv[1:]) == 0
    for name in ("denoised_epoch1.png", "denoised_epoch5.png"):
        assert (
            provenance.sha256_file(tmp_path / "again" / name)
            == res.manifest["files"][f"sections/b-pure-noise/run/{name}"]
        )
    # the same weights (the file's bytes may not be: safetensors writes its metadata map in any order)
    from safetensors.torch import load_file

    kept, again = (
        load_file(f / "model.safetensors") for f in (res.index.parent / "sections/b-pure-noise/run", tmp_path / "again")
    )
    assert kept.keys() == again.keys() and all(torch.equal(kept[k], again[k]) for k in kept)


@pytest.mark.slow
def test_report_opens_in_chromium_with_every_image_and_section(tmp_path, whole_tour):
    """The tiny tour's report in headless Chromium (tests/test_report_browser.py's set-up): every section, its
    contents link and image load, and nothing fails."""
    require_browser()
    seen = open_report(whole_tour.index, [tmp_path / "report.png"])
    assert_report_is_whole(seen, [tmp_path / "report.png"])
