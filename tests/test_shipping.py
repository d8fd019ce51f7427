"""Exporting a run as a shipped model: small bf16 weights, and a card and config free of the machine's paths."""

import json

import torch

from fundiff import checkpoints, training
from fundiff.models import load_model
from fundiff.provenance import strip_paths
from fundiff.shipping import export_run
from helpers import synthetic_data, tiny_config


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_strip_paths_cuts_absolute_paths_to_their_last_component():
    obj = {
        "model": "/work/main/runs/mnist-class",
        "command": "fundiff train class --out /tmp/runs/q --threads 2",
        "opt": "--out=/tmp/a/b/",
        "win": "C:\\Users\\me\\run1",
        "keep": ["runs/x", "https://example.org/a/b", "~/data", 3, None, 1.5],
    }
    assert strip_paths(obj) == {
        "model": "mnist-class",
        "command": "fundiff train class --out q --threads 2",
        "opt": "--out=b",
        "win": "run1",
        "keep": ["runs/x", "https://example.org/a/b", "~/data", 3, None, 1.5],
    }


def test_export_keeps_no_absolute_path_and_loads_back(tmp_path):
    run = tmp_path / "abs" / "run"
    cfg = tiny_config("time", epochs=1, max_steps=2, ema_decay=0.9)
    command = f"fundiff train time --out {run} --threads 2"
    training.train(cfg, run, data=synthetic_data(16), progress=False, extra_config={"command": command})
    evaluation = {"model": str(run), "sweep_plot": str(tmp_path / "eval" / "plot.png"), "fid": 1.5}
    dest = export_run(run, tmp_path / "shipped" / "tiny-time", evaluation=evaluation)

    card = json.loads((dest / "card.json").read_text())
    config = json.loads((dest / "config.json").read_text())
    for s in list(_strings(card)) + list(_strings(config)):
        assert str(tmp_path) not in s and not s.startswith("/"), s
    assert card["command"] == "fundiff train time --out run --threads 2"
    assert card["evaluation"] == {"model": "run", "sweep_plot": "plot.png", "fid": 1.5}
    assert card["weights"].startswith("EMA ")
    state = json.loads((run / "state.json").read_text())  # the run's counters reach the card
    assert (card["steps"], card["epochs"], card["final_loss"]) == (
        len(state["losses"]),
        state["epoch"],
        state["losses"][-1],
    )
    assert card["wall_s"] == state["wall_s"] and card["wall_s"] > 0

    weights, _ = checkpoints.load_weights(dest)
    assert {k.split(".")[0] for k in weights} == {"model"}
    assert all(v.dtype == torch.bfloat16 for v in weights.values() if v.is_floating_point())
    ema, _ = checkpoints.model_state(checkpoints.load_weights(run)[0])
    model, _ = load_model(dest)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ema[k].to(torch.bfloat16).to(v.dtype)), k
