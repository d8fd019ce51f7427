import pytest
import torch
from safetensors.torch import save_file

from fundiff import atomic, provenance, training
from fundiff import checkpoints as ckpt
from fundiff.devices import cpu_name
from fundiff.errors import FundiffError
from fundiff.models import load_model
from helpers import synthetic_data, tiny_config


@pytest.fixture()
def run(tmp_path):
    extra = provenance.run_info(tiny_config("class").precision, torch.device("cpu"))
    training.train(
        tiny_config("class", epochs=1), tmp_path / "run", data=synthetic_data(32), progress=False, extra_config=extra
    )
    return tmp_path / "run"


def _one_line_error(fn, match):
    with pytest.raises(FundiffError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def test_loads_back(run):
    model, cfg = load_model(run)
    assert cfg["model"]["kind"] == "class" and cfg["format"] == ckpt.FORMAT
    assert cfg["machine"]["cpu"] == cpu_name() and cfg["machine"]["precision"] == "float32"


def test_truncated_weights(run):
    p = run / "model.safetensors"
    p.write_bytes(p.read_bytes()[:1000])
    _one_line_error(lambda: load_model(run), "truncated or corrupt")


def test_foreign_safetensors(run):
    save_file({"w": torch.zeros(3)}, str(run / "model.safetensors"))
    _one_line_error(lambda: load_model(run), "not a fundiff checkpoint")


def test_garbage_json_and_missing_folder(run, tmp_path):
    (run / "config.json").write_text("{not json")
    _one_line_error(lambda: load_model(run), "not valid JSON")
    _one_line_error(lambda: load_model(tmp_path / "nope"), "not found")


def test_torn_checkpoint_is_detected(run):
    w, _ = ckpt.load_weights(run)
    ckpt.atomic_write_tensors(run / "model.safetensors", w, {"step": "999"})
    _one_line_error(lambda: ckpt.load_checkpoint(run), "different steps")


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    ckpt.atomic_write_json(p, {"a": 1})

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError):
        ckpt.atomic_write_json(p, {"a": 2})
    assert ckpt.read_json(p) == {"a": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]


def test_no_pickle_anywhere(run):
    for f in run.iterdir():
        assert f.suffix in (".json", ".safetensors", ".png"), f
        assert not f.read_bytes().startswith(b"\x80")  # pickle protocol header
