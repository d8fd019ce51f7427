"""Model resolution (shipped names vs local folders) and backend dispatch in runs.py."""

import json
import shutil

import pytest

from fundiff.backends import runs
from fundiff.denoisers import UNetDenoiser
from fundiff.errors import FundiffError


def _copy_shipped(tmp_path, name="mnist-class", dest=None):
    dest = tmp_path / (dest or name)
    shutil.copytree(runs.SHIPPED_DIR / name, dest)
    return dest


def _edit_config(folder, edit):
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_a_bare_shipped_name_means_the_shipped_model_even_beside_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = _copy_shipped(tmp_path, "mnist-time", dest="mnist-class")  # a local folder named like a shipped model
    assert runs.resolve("mnist-class") == runs.SHIPPED_DIR / "mnist-class"
    assert runs.resolve("./mnist-class").resolve() == local.resolve()  # a path form reaches the local folder
    assert runs.resolve(local) == local  # so does a Path object or an absolute path
    assert runs.resolve(str(local)) == local
    assert runs.load_denoiser("mnist-class").conditional is True  # the shipped class model
    assert runs.load_denoiser("./mnist-class").conditional is False  # the local (time) model
    assert runs.resolve("mnist-time") == runs.SHIPPED_DIR / "mnist-time"
    with pytest.raises(FundiffError, match="not found.*shipped models: .*mnist-class"):
        runs.resolve("no-such-model")


def test_fundiff_runs_load_with_their_protocol_attributes():
    den = runs.load_denoiser("fashion-class")
    assert isinstance(den, UNetDenoiser) and den.conditional
    assert den.default_prompts[:2] == ("T-shirt/top", "Trouser") and len(den.default_prompts) == 10
    assert den.describe_prompt("an ankle boot") == "Ankle boot" and den.describe_prompt("") == ""
    assert str(den.device) == "cpu"
    with pytest.raises(FundiffError, match="needs an unconditional model"):
        runs.load_denoiser("fashion-class", conditional=False)
    with pytest.raises(FundiffError, match="needs a 'time' or 'class' model"):
        runs.load_denoiser("mnist-denoiser")


def test_unknown_and_unsupported_folders_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FundiffError, match="holds no model fundiff can load") as e:
        runs.load_denoiser(empty)
    assert "\n" not in str(e.value)
    pipe = tmp_path / "IF-I-XL"
    pipe.mkdir()
    (pipe / "model_index.json").write_text('{"_class_name": "IFPipeline"}')
    with pytest.raises(FundiffError, match="no .safetensors weights") as e:  # DeepFloyd IF, but no weights
        runs.load_denoiser(pipe)
    assert "\n" not in str(e.value)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"_class_name": "UNet2DModel"}')  # a config.json, but not fundiff's
    with pytest.raises(FundiffError, match="holds no model fundiff can load"):
        runs.load_denoiser(other)


@pytest.mark.parametrize("objective,key", [("eps", "T"), ("eps", "beta_schedule"), ("flow", "T")])
def test_a_run_config_missing_the_schedule_is_an_error_not_a_default(tmp_path, objective, key):
    """A DDPM run needs T and its beta schedule; a flow run (sampled on flow.schedule(T)) needs T."""
    run = _copy_shipped(tmp_path)
    _edit_config(run, lambda cfg: (cfg["train"].pop(key), cfg["train"].update(objective=objective)))
    with pytest.raises(FundiffError, match=f"incomplete or corrupt.*no {key}"):
        runs.load_denoiser(run)


def test_an_unknown_dataset_gets_no_mnist_class_names(tmp_path):
    run = _copy_shipped(tmp_path)
    _edit_config(run, lambda cfg: cfg["train"].update(dataset="cifar10"))
    with pytest.raises(FundiffError, match="'cifar10', which fundiff does not know"):
        runs.load_denoiser(run)
    _edit_config(run, lambda cfg: cfg["train"].pop("dataset"))
    with pytest.raises(FundiffError, match="names dataset None"):
        runs.load_denoiser(run)


def test_a_registered_backend_is_dispatched_to(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "_BACKENDS", list(runs._BACKENDS))
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.txt").write_text("x")
    seen = []

    def load(path, *, device, precision):
        seen.append((path, device))
        return runs.load_denoiser("mnist-time")

    runs.register_backend(runs.Backend("toy", lambda p: (p / "toy.txt").is_file(), load))
    assert runs.backend_names()[-1] == "toy"
    runs.load_denoiser(folder)
    assert seen == [(folder, "cpu")]
    with pytest.raises(FundiffError, match="already registered"):
        runs.register_backend(runs.Backend("toy", lambda p: False, load))
