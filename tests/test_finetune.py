"""`fundiff train --init-from`: a fine-tune starts from its base's weights and recipe, records the base, keeps
its network, resumes exactly, and its exported card names the base."""

import json

import pytest
import torch
from safetensors.torch import load_file

from fundiff import cli, data, shipping
from fundiff.backends import runs
from helpers import rejected, synthetic_data

BASE = ["train", "class", "--preset", "tiny", "--objective", "flow", "--T", "50", "--epochs", "3", "--ema", "0.9",
        "--no-progress", "--device", "cpu"]  # fmt: skip


@pytest.fixture
def base(tmp_path, monkeypatch):
    """A tiny flow class run (synthetic data) to fine-tune; the current folder is tmp_path."""
    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(32))
    monkeypatch.chdir(tmp_path)
    assert cli.main([*BASE, "--out", "base"]) == 0
    return tmp_path / "base"


def _tune(out, *flags):
    return cli.main(["train", "class", "--init-from", "base", "--no-progress", "--out", str(out), *flags])


def _params(run, prefix="model."):
    names = {n for n, _ in runs.load(run)[0].named_parameters()}  # not the BatchNorm statistics
    return {k[len(prefix) :]: v for k, v in load_file(run / "model.safetensors").items() if k[len(prefix) :] in names}


def test_a_finetune_starts_from_its_base_weights_and_recipe(base, capsys):
    assert _tune("tuned", "--max-steps", "1", "--lr", "1e-12", "--low-times", "0.25") == 0
    start, tuned = _params(base, "ema."), _params(base.parent / "tuned")
    assert start.keys() == tuned.keys() and len(start) > 10
    assert all(torch.allclose(tuned[k], start[k], atol=1e-6) for k in start)  # one step of lr 1e-12 from the base
    fresh = _params(base, "model.")  # the base's raw weights after its own training differ from its EMA
    assert any(not torch.allclose(fresh[k], start[k], atol=1e-4) for k in start)

    base_cfg, cfg = (json.loads((run / "config.json").read_text()) for run in (base, base.parent / "tuned"))
    assert cfg["init"] == {"model": "base", "command": base_cfg["command"]}
    changed = {k for k in cfg["train"] if cfg["train"][k] != base_cfg["train"].get(k, 0.0)}
    assert changed == {"max_steps", "lr", "low_times"}, changed  # the rest is the base's recipe
    assert cfg["train"]["low_times"] == 0.25


def test_a_finetune_of_a_finetune_records_the_chain_and_its_card_keeps_it(base, tmp_path):
    assert _tune("tuned", "--max-steps", "2") == 0
    assert cli.main(["train", "class", "--init-from", str(tmp_path / "tuned"), "--max-steps", "1", "--no-progress",
                     "--out", "twice"]) == 0  # fmt: skip
    card = json.loads((shipping.export_run(tmp_path / "twice", tmp_path / "shipped") / "card.json").read_text())
    assert card["init"]["model"] == "tuned"  # the absolute path cut to its name (shipped files hold none)
    assert card["init"]["init"]["model"] == "base" and card["init"]["init"]["command"].startswith("fundiff train")
    assert card["command"].startswith("fundiff train class --init-from tuned")


def test_a_resumed_finetune_equals_an_uninterrupted_one(base):
    assert _tune("whole", "--max-steps", "3", "--low-times", "0.5") == 0  # 3 epochs of one step each
    assert _tune("parts", "--max-steps", "2", "--low-times", "0.5") == 0
    assert cli.main(["train", "class", "--resume", "--out", "parts", "--max-steps", "3", "--no-progress"]) == 0
    whole, parts = (load_file(base.parent / run / "model.safetensors") for run in ("whole", "parts"))
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--hidden", "16"], "--hidden would change the network of the model to start from; drop it"),
        (["--objective", "eps", "--T", "30"], "--T, --objective would change the network"),
        (["--preset", "flow"], "--init-from takes its base model's recipe (flags override it); drop --preset"),
        (["--resume"], "--resume continues a fine-tune from its own record; drop --init-from"),
        (["--dataset", "fashion-mnist"], "--dataset would change the network"),
    ],
)
def test_a_finetune_refuses_what_would_not_fit_and_writes_nothing(base, capsys, flags, match):
    rejected(capsys, ["train", "class", "--init-from", "base", "--out", "tuned", *flags], match)
    assert not (base.parent / "tuned").exists()


def test_a_finetune_takes_a_model_of_its_kind_and_no_classifier(base, capsys):
    rejected(capsys, ["train", "time", "--init-from", "base", "--out", "tuned"],
             "base is no time model; fine-tune it as `fundiff train class`")  # fmt: skip
    rejected(capsys, ["train", "classifier", "--init-from", "base", "--out", "tuned"],
             "--init-from does not apply to a classifier")  # fmt: skip
    rejected(capsys, ["train", "class", "--init-from", "nowhere", "--out", "tuned"], "nowhere")
    rejected(capsys, ["train", "class", "--init-from", "mnist-class-fast", "--out", "tuned"],
             "mnist-class-fast is a distilled student; fine-tune its teacher")  # fmt: skip
    rejected(capsys, ["train", "class", "--init-from", "mnist-classifier", "--out", "tuned"],
             "mnist-classifier is a classifier (--init-from takes a denoiser, time or class model")  # fmt: skip
    assert not (base.parent / "tuned").exists()


def test_low_times_train_the_flow_objective_only(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rejected(capsys, ["train", "time", "--preset", "tiny", "--low-times", "0.2", "--out", "eps"],
             "--low-times adds nearly clean flow times to --objective flow; drop it otherwise")  # fmt: skip
