"""The emoji dataset, the text encoder and a text-to-image model, on a tiny emoji set the tests make themselves."""

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fundiff import cli, emoji, text, training
from fundiff.errors import FundiffError
from helpers import tiny_config

# (Unicode name, short names, image file, skin variations, CLDR label, keywords, category colour)
_EMOJI = [
    ("ROCKET", ["rocket"], "1f680.png", {}, "rocket", ["launch", "rockets", "space"], (200, 30, 30)),
    ("FIRE", ["fire"], "1f525.png", {}, "fire", ["flame", "hot"], (250, 140, 0)),
    ("SNOWMAN", ["snowman"], "2603.png", {}, "snowman", ["cold", "snowy"], (40, 90, 220)),
    ("OLDER MAN", ["older_man"], "1f474.png", {"1F3FB": "1f474-1f3fb.png"}, "old man", ["adult", "man", "old"],
     (120, 80, 40)),
    ("WAVING BLACK FLAG", ["waving_black_flag"], "1f3f4.png", {}, "black flag", ["waving"], (10, 10, 10)),
    ("CAMPING", ["camping"], "1f3d5.png", {}, "camping", ["camp", "tent"], (30, 140, 60)),
    ("SKULL", ["skull"], "1f480.png", {}, "skull", ["death", "face"], (230, 230, 230)),
    ("WATER WAVE", ["ocean"], "1f30a.png", {}, "water wave", ["ocean", "water", "wave"], (30, 120, 250)),
    ("FLAG OF FRANCE", ["flag-fr"], "1f1eb-1f1f7.png", {}, "flag: France", ["flag"], (0, 0, 255)),
]  # fmt: skip


def _png(colour, alpha=255) -> bytes:
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    im.paste(Image.new("RGBA", (32, 32), (*colour, alpha)), (16, 16))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_tarballs(folder: Path) -> dict[str, tuple[int, str]]:
    """Tarballs shaped like the two npm packages; returns their TARBALLS entries (size, sha256)."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    meta, cldr = [], []
    for order, (name, shorts, image, skins, label, keywords, _) in enumerate(_EMOJI):
        code = image.removesuffix(".png").upper()
        sub = "country-flag" if name.startswith("FLAG OF") else "thing"
        variations = {k: {"unified": f"{code}-{k}", "image": v, "has_img_google": True} for k, v in skins.items()}
        meta.append(dict(name=name, unified=code, image=image, short_names=shorts, sort_order=order, subcategory=sub,
                         has_img_google=True, skin_variations=variations or None))  # fmt: skip
        cldr.append(dict(label=label, hexcode=code, tags=keywords))
    paths = {}
    with tarfile.open(folder / "emoji-datasource-google-16.0.0.tgz", "w:gz") as tar:
        _add(tar, "package/emoji.json", json.dumps(meta).encode())
        for _, _, image, skins, _, _, colour in _EMOJI:
            _add(tar, f"package/img/google/64/{image}", _png(colour))
            for v in skins.values():
                _add(tar, f"package/img/google/64/{v}", _png(tuple(c // 2 for c in colour)))
    with tarfile.open(folder / "emojibase-data-16.0.3.tgz", "w:gz") as tar:
        _add(tar, "package/en/data.json", json.dumps(cldr).encode())
    for p in folder.glob("*.tgz"):
        paths[p.name] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return paths


@pytest.fixture
def emoji_root(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji, "TARBALLS", make_tarballs(tmp_path / "npm"))
    root = tmp_path / "data"
    emoji.fetch(root, tarball_dir=tmp_path / "npm")
    return root


def test_fetch_builds_the_images_on_grey_with_their_texts(emoji_root):
    images, items = emoji.load(emoji_root, resolution=32)
    names = ["ROCKET", "FIRE", "SNOWMAN", "OLDER MAN", "OLDER MAN", "WAVING BLACK FLAG", "CAMPING", "SKULL"]
    assert [e.name for e in items] == [*names, "WATER WAVE"]  # the flag of France is dropped
    assert items[4].skin_tone == "light skin tone" and items[3].skin_tone == ""
    assert images.shape == (9, 3, 32, 32) and images.dtype == torch.uint8
    assert images[:, :, 0, 0].eq(128).all()  # the transparent corner composited on the grey background
    assert images[0, :, 16, 16].tolist() == [200, 30, 30]  # the opaque square keeps its colour
    assert emoji.load(emoji_root, resolution=64)[0][0, :, 40, 40].tolist() == [200, 30, 30]
    assert items[4].texts()[0] == "older man, light skin tone" and "old man" in items[3].texts()
    assert "Apache License 2.0" in (emoji_root / "emoji" / "NOTICE.txt").read_text()


def test_a_tarball_that_is_not_the_pinned_one_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    pins = make_tarballs(tmp_path / "npm")
    name = next(iter(pins))
    monkeypatch.setattr(emoji, "TARBALLS", {**pins, name: (pins[name][0], "0" * 64)})
    with pytest.raises(FundiffError, match="is not the pinned") as e:
        emoji.fetch(tmp_path / "data", tarball_dir=tmp_path / "npm")
    assert "\n" not in str(e.value) and "fetch emoji" in str(e.value)
    assert not (tmp_path / "data" / "emoji").exists() and list((tmp_path / "data").iterdir()) == []


def test_offline_without_the_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji.shutil, "which", lambda _: None)
    with pytest.raises(FundiffError, match="npm is not installed"):
        emoji.fetch(tmp_path)
    with pytest.raises(FundiffError, match="run `fundiff data fetch emoji`"):
        emoji.load(tmp_path)
    with pytest.raises(FundiffError, match="resolution must be one of 32, 48, 64"):
        emoji.load(tmp_path, resolution=40)


def _encoder(design="words+names"):
    texts = [["rocket", "launch", "rockets"], ["fire", "flame"], ["camping", "tent"], ["snowman", "snowy"],
             ["water wave", "ocean"]]  # fmt: skip
    return text.TextEncoder.build(texts, [t[:1] for t in texts], design)


def test_text_encoder_stems_splits_compounds_and_drops_filler():
    enc = _encoder()
    assert "rockets" not in enc.words and "rocket" in enc.words  # plurals fold into their singular
    assert enc.describe("A photo of some Rockets!") == "rocket"
    assert enc.describe("a campfire") == "camping fire"  # a compound of two known words; "camp" finds "camping"
    assert enc.describe("snowy") == "snowy" and enc.describe("flames") == "flame"
    assert enc.encode([""]).eq(0).all() and enc.encode(["  "]).shape == (1, enc.dim)
    c = enc.encode(["rocket", "a rocket ship"])
    assert c[0].sum() == 2 and c[1].sum() == 2  # "rocket" is a name: its name dimension too, also within a prompt
    assert enc.num_names == 5 and text.TextEncoder.build([["a"]], design="words").num_names == 0


def test_a_prompt_of_no_known_word_names_the_closest_words():
    with pytest.raises(FundiffError) as e:
        _encoder().tokens("a rockit")
    assert "no word the model knows; closest known words: rocket" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FundiffError, match="only filler words"):
        _encoder().tokens("the of a")


def test_encoder_round_trips_and_rejects_a_corrupt_description():
    enc = _encoder()
    again = text.TextEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert torch.equal(again.encode(["a campfire", "ocean"]), enc.encode(["a campfire", "ocean"]))
    with pytest.raises(FundiffError, match="incomplete or corrupt"):
        text.TextEncoder.from_dict({"design": "words"})


def test_training_texts_are_drawn_only_from_each_items_own():
    enc = _encoder()
    texts = [["rocket", "launch"], ["fire", "flame"]]
    table = enc.variant_table(texts)
    g = torch.Generator().manual_seed(0)
    c = text.sample_vectors(table, enc.dim, torch.tensor([0, 1] * 50), g)
    own = [enc.encode(t).amax(0) for t in texts]
    for b in range(100):
        assert (c[b] <= own[b % 2]).all() and c[b].sum() >= 1
    seen = {tuple(c[b].nonzero().flatten().tolist()) for b in range(0, 100, 2)}
    assert len(seen) == 2  # both texts of item 0 are drawn


def test_a_name_with_a_skin_tone_sets_the_name_and_the_tone_words():
    texts = [["older man", "old"], ["older man, dark skin tone", "old, dark skin tone"]]
    enc = text.TextEncoder.build(texts, [["older man"], ["older man"]], "words+names", ["dark skin tone"])
    name = len(enc.words)  # the one name dimension
    assert name in enc.tokens("older man") and name in enc.tokens("an older man, dark skin tone")
    assert name not in enc.tokens("old, dark skin tone") and name not in enc.tokens("dark skin tone")
    assert enc.describe("older man, dark skin tone") == "dark man older skin tone"
    again = text.TextEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.tokens("older man, dark skin tone") == enc.tokens("older man, dark skin tone")
    legacy = {k: v for k, v in enc.to_dict().items() if k != "modifiers"}  # a model saved before modifiers
    assert text.TextEncoder.from_dict(legacy).modifiers == ()


def test_name_share_draws_the_name_texts_that_often():
    texts = [["rocket", "launch", "space", "fly"], ["fire", "flame", "hot", "burn"], ["ocean"]]
    enc = text.TextEncoder.build(texts, [["rocket"], ["fire"], ["sea"]])  # "ocean" names nothing
    table = enc.variant_table(texts)
    assert table[3].tolist() == [1, 1, 0]  # named texts per item, listed first
    idx = torch.tensor([0, 1, 2] * 2000)
    for share, want in ((0.0, 0.25), (0.8, 0.8 + 0.2 * 0.25)):
        c = text.sample_vectors(table, enc.dim, idx, torch.Generator().manual_seed(1), share)
        named = c[:, len(enc.words) :].sum(1)
        assert abs(named[idx < 2].mean().item() - want) < 0.03
        assert named[idx == 2].sum() == 0 and (c[idx == 2].argmax(1) == enc.words.index("ocean")).all()


def test_a_prompt_sets_the_names_it_holds_as_phrases():
    texts = [["rocket"], ["ship"], ["top hat"], ["man"], ["older man"]]
    enc = text.TextEncoder.build(texts, texts)
    name = {k: len(enc.words) + v for k, v in enc.names.items()}
    assert set(enc.tokens("a rocket ship")) >= {name["rocket"], name["ship"]}
    hat = enc.tokens("a man wearing a top hat")  # "wearing" is no known word: left out, as ever
    assert [i for i in hat if i >= len(enc.words)] == sorted([name["man"], name["top hat"]])
    older = [i for i in enc.tokens("an older man") if i >= len(enc.words)]
    assert older == [name["older man"]]  # the whole prompt is a name: that one only, not "man" within it
    assert [i for i in enc.tokens("top") if i >= len(enc.words)] == []  # a word of a name is not the name


def test_a_keyword_that_is_another_emojis_name_trains_as_words_only():
    texts = [["water wave", "ocean", "wave"], ["person surfing", "ocean", "surf"]]
    names = [["water wave", "ocean"], ["person surfing"]]
    enc = text.TextEncoder.build(texts, names)
    wave, surfer = (len(enc.words) + enc.names[k] for k in ("water wave", "person surfing"))
    assert wave in enc.tokens("ocean")  # a prompt "ocean" asks for the water wave
    start, count, tokens, named = enc.variant_table(texts, names)
    rows = [set(tokens[r].tolist()) for r in range(len(tokens))]
    assert [wave in r for r in rows] == [True, True, False, False, False, False]
    assert [surfer in r for r in rows] == [False, False, False, True, False, False]
    assert named.tolist() == [2, 1] and enc.words.index("ocean") in rows[4]  # the surfer's "ocean": its word only
    assert [wave in r for r in (set(t.tolist()) for t in enc.variant_table(texts)[2])].count(True) == 3  # unchecked


def _text_run(emoji_root, tmp_path, **kw):
    from fundiff.training.inputs import training_inputs

    cfg = tiny_config("class", dataset="emoji", text="words+names", epochs=2, batch_size=4, **kw)
    split, txt = training_inputs(cfg, emoji_root)
    return cfg, split, txt


def test_a_text_model_trains_resumes_exactly_and_reads_free_text(emoji_root, tmp_path):
    cfg, split, txt = _text_run(emoji_root, tmp_path, ema_decay=0.9)
    assert split[0].shape == (9, 3, 32, 32)
    full = training.train(cfg, tmp_path / "full", data=split, text=txt, progress=False)
    training.train(replace(cfg, max_steps=1), tmp_path / "part", data=split, text=txt, progress=False)
    training.train(cfg, tmp_path / "part", data=split, text=txt, progress=False, resume=True)
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("full", "part"))
    assert full.step == 6 and all(torch.equal(a[k], b[k]) for k in a)
    from fundiff.backends import runs

    den = runs.load_denoiser(tmp_path / "full")  # the encoder comes from config.json: no dataset needed
    assert den.conditional and den.channels == 3 and den.image_size == 32
    assert den.encode(["a campfire", ""]).shape == (2, txt[0].dim) and den.describe_prompt("an old man") == "an old man"
    with pytest.raises(FundiffError, match="no word the model knows"):
        den.encode(["a xylophone"])


def test_text_options_are_checked(emoji_root, tmp_path):
    cfg, split, txt = _text_run(emoji_root, tmp_path)
    with pytest.raises(FundiffError, match="needs the text encoder"):
        training.train(cfg, tmp_path / "r", data=split, progress=False)
    with pytest.raises(FundiffError, match="a class model on emoji needs --text"):
        replace(cfg, text="none")
    with pytest.raises(FundiffError, match="--name-share weights the name texts"):
        replace(cfg, text="words", name_share=0.5)
    with pytest.raises(FundiffError, match="a number in"):
        replace(cfg, name_share=1.5)
    with pytest.raises(FundiffError, match="--class-map maps a class model's"):
        tiny_config("time", class_map=4)
    with pytest.raises(FundiffError, match="--film conditions on the time"):
        tiny_config("denoiser", film=True)
    assert not (tmp_path / "r").exists()


def test_every_part_a_command_runs_on_a_text_model_with_text_prompts(emoji_root, tmp_path, capsys):
    cfg, split, txt = _text_run(emoji_root, tmp_path)
    run = tmp_path / "run"
    training.train(replace(cfg, max_steps=1), run, data=split, text=txt, progress=False)
    assert cli.main(["noise", "--model", str(run), "--out", str(tmp_path / "noise")]) == 0  # the tower, noised
    common = ["--model", str(run), "--steps", "3", "--precision", "fp32"]
    for argv in (
        ["denoise", "--prompt", "a fire", "--i-start", "1"],
        ["generate", "--prompt", "a rocket ship", "an old man", "--n", "1"],
        ["sdedit", "--prompt", "a campfire", "--i-start", "1"],  # the shipped tower stands in for the Campanile
        ["sdedit", "--image", "sun-drawing", "--prompt", "", "--i-start", "1"],
        ["inpaint", "--prompt", "fire"],
        ["anagram"],  # the emoji defaults: an old man / fire upside down
        ["hybrid"],  # a skull far away, a water wave up close
    ):
        out = tmp_path / argv[0] / str(len(argv))
        assert cli.main([*argv, *common, "--out", str(out)]) == 0, capsys.readouterr().err
        assert list(out.rglob("*.png")), argv
    samples = list((tmp_path / "generate").rglob("*_sample-1.png"))
    assert len(samples) == 4 and all(Image.open(p).mode == "RGB" and Image.open(p).size == (32, 32) for p in samples)
    assert cli.main(["generate", "--prompt", "a xylophone", *common, "--out", str(tmp_path / "bad")]) == 2
    assert "closest known words" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_the_shipped_emoji_model_follows_a_prompts_colour():
    """A floor for the shipped model, without the dataset: water waves come out blue, fires red-orange."""
    from fundiff import samplers
    from fundiff import timesteps as ts
    from fundiff.backends import runs
    from fundiff.guidance import CFG

    den = CFG(runs.load_denoiser("emoji", precision="fp32"), 5.0)
    g = torch.Generator().manual_seed(0)
    prompts = ["a water wave"] * 4 + ["fire"] * 4
    x = samplers.sample_from_noise(den, den.encode(prompts), ts.strided(den.schedule.T, steps=12), generator=g,
                                   sampler="dpm++")  # fmt: skip
    rgb = x.clamp(0, 1).mean(dim=(2, 3))  # (8, 3) mean colour per sample
    wave, fire = rgb[:4], rgb[4:]
    assert (wave[:, 2] > wave[:, 0]).all() and (fire[:, 0] > fire[:, 2] + 0.1).all(), rgb


def test_an_emoji_classifier_trains_on_colour_and_grades_a_text_model(emoji_root, tmp_path, capsys):
    """`fundiff train classifier --dataset emoji`: one class per emoji (its skin tones share it), RGB, augmented;
    `fundiff evaluate` on a text model then adds the fidelity in its features and the FID with its floor."""
    clf_run = tmp_path / "clf"
    argv = ["train", "classifier", "--dataset", "emoji", "--epochs", "2", "--batch-size", "3", "--noise", "0.1",
            "--shift", "1", "--data-dir", str(emoji_root), "--out", str(clf_run), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "accuracy on its own clean images" in capsys.readouterr().out
    assert cli.main(["train", "class", "--preset", "emoji", "--noise", "0.1", "--out", str(tmp_path / "u")]) == 2
    assert "--noise appl(ies) to `fundiff train classifier` only" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()
    config = json.loads((clf_run / "config.json").read_text())
    labels, names = emoji.identities(emoji.load(emoji_root)[1])
    assert config["model"]["in_channels"] == 3 and config["model"]["num_classes"] == len(names) == 8
    assert labels.tolist().count(names.index("OLDER MAN")) == 2  # the older man and his skin-tone variation
    cfg, split, txt = _text_run(emoji_root, tmp_path)
    run = tmp_path / "run"
    training.train(replace(cfg, max_steps=1), run, data=split, text=txt, progress=False)
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--model", str(run), "--classifier", str(clf_run), "--n", "50", "--steps", "2",
            "--precision", "fp32", "--data-dir", str(emoji_root), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    e = json.loads(out.read_text())["eval_prompts"]
    f = json.loads(out.read_text())["fid"]
    assert 0 <= e["fidelity_features"] <= 1 and f["n"] == 9 and f["fid"] >= 0 and f["fid_floor"] >= 0
    assert "features: prompt fidelity" in capsys.readouterr().out


def test_classifier_augmentation_is_drawn_from_its_generator():
    from fundiff.training.classifier import augment

    x = torch.rand(4, 3, 8, 8)
    assert augment(x, 0.0, 0, None) is x  # nothing asked, nothing drawn
    a, b = (augment(x, 0.2, 2, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, x)
    shifted = augment(x, 0.0, 2, torch.Generator().manual_seed(3))
    assert any(torch.equal(shifted, torch.roll(x, (dy, dx), (-2, -1))) for dy in range(-2, 3) for dx in range(-2, 3))
