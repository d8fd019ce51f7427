import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from fundiff import training
from fundiff.classify import load_classifier
from fundiff.errors import FundiffError
from fundiff.models.classifier import Classifier, ClassifierConfig, predict
from fundiff.training import ClassifierTrainConfig, train_classifier
from helpers import synthetic_data, tiny_config

SMALL = ClassifierConfig(width=8, features=16)


def test_shapes_and_feature_dim():
    net = Classifier(ClassifierConfig()).eval()
    x = torch.rand(3, 1, 28, 28)
    assert net(x).shape == (3, 10)
    f = net.features(x)
    assert f.shape == (3, 128) == (3, net.feature_dim) and (f >= 0).all()  # ReLU outputs
    assert torch.allclose(net.head(f), net(x))  # features are exactly what the last layer sees
    assert Classifier(ClassifierConfig(image_size=32, features=7)).eval().features(torch.rand(2, 1, 32, 32)).shape == (
        2,
        7,
    )


@pytest.mark.parametrize(
    "kw, msg",
    [(dict(kind="class"), "kind 'classifier'"), (dict(image_size=30), "multiple of 4"), (dict(features=0), "positive")],
)
def test_bad_config_is_one_line_error(kw, msg):
    with pytest.raises(FundiffError, match=msg):
        ClassifierConfig(**kw)
    with pytest.raises(FundiffError, match="unknown dataset"):
        ClassifierTrainConfig(dataset="cifar")


def test_tiny_training_learns_and_writes_a_run_folder(tmp_path):
    cfg = ClassifierTrainConfig(epochs=3, batch_size=32, lr=3e-3, warmup_steps=5, precision="fp32", seed=1)
    test = synthetic_data(100, seed=1)
    rng = torch.get_rng_state()
    res = train_classifier(
        cfg, tmp_path / "c", data=synthetic_data(640, seed=0), test_data=test, progress=False, model_config=SMALL
    )
    assert torch.equal(torch.get_rng_state(), rng)  # the seeded init does not touch the global RNG
    assert res.step == 60 and res.test_accuracy > 0.9  # chance is 0.1
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert saved["model"]["kind"] == "classifier" and saved["train"] == cfg.to_dict()
    state = json.loads((tmp_path / "c" / "state.json").read_text())
    assert (
        state["test_accuracy"] == res.test_accuracy
        and len(state["test_accuracy_per_epoch"]) == 3
        and len(state["test_accuracy_per_class"]) == 10
    )

    net, info = load_classifier(tmp_path / "c")
    assert not net.training and info["test_accuracy"] == res.test_accuracy
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["test_accuracy"] == res.test_accuracy
    x, y = test
    acc = (predict(net, x.unsqueeze(1).float() / 255, batch_size=7) == y).float().mean()
    assert float(acc) == pytest.approx(res.test_accuracy)
    with pytest.raises(FundiffError, match="already holds a run"):
        train_classifier(cfg, tmp_path / "c", data=synthetic_data(32), test_data=test, progress=False)


def test_an_exported_classifier_loads_with_its_card_accuracy(tmp_path):
    from fundiff.shipping import export_run

    train_classifier(
        ClassifierTrainConfig(max_steps=3, precision="fp32"),
        tmp_path / "c",
        data=synthetic_data(48),
        test_data=synthetic_data(16, seed=1),
        progress=False,
        model_config=SMALL,
    )
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    export_run(
        tmp_path / "c", tmp_path / "shipped" / "mnist-classifier", evaluation=metrics
    )  # bf16 weights, no state.json
    run, _ = load_classifier(tmp_path / "c")
    shipped, info = load_classifier(tmp_path / "shipped" / "mnist-classifier")
    assert info["test_accuracy"] == metrics["test_accuracy"]
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(run(x), shipped(x), atol=0.1)  # the same network up to bf16 rounding
    export_run(tmp_path / "c", tmp_path / "bare")
    assert load_classifier(tmp_path / "bare")[1]["test_accuracy"] is None


def test_training_is_deterministic_per_seed_and_fits_the_training_images(tmp_path):
    """Two runs with one seed save the same weights, another seed others; and the 4 steps learned: on the 48
    training images (batch statistics, as in training) the cross-entropy falls from the seeded init's ~2.37
    (chance: ln 10 = 2.30) below 2.0 and the accuracy rises from ~8% above 40%."""
    cfg = ClassifierTrainConfig(batch_size=16, max_steps=4, precision="fp32", warmup_steps=0)
    for name, seed in (("a", cfg.seed), ("b", cfg.seed), ("c", cfg.seed + 1)):
        train_classifier(
            dataclasses.replace(cfg, seed=seed),
            tmp_path / name,
            data=synthetic_data(48),
            test_data=synthetic_data(16, seed=1),
            progress=False,
            model_config=SMALL,
        )
    a, b, c = (load_file(str(tmp_path / name / "model.safetensors")) for name in "abc")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        init = Classifier(SMALL)
    trained, _ = load_classifier(tmp_path / "a")
    images, labels = synthetic_data(48)
    x = images.unsqueeze(1).float() / 255
    with torch.no_grad():
        (ce0, acc0), (ce, acc) = (
            (float(F.cross_entropy(net.train()(x), labels)), float((net(x).argmax(1) == labels).float().mean()))
            for net in (init, trained)
        )
    assert ce0 > 2.2 and acc0 < 0.2 and ce < 2.0 and acc > 0.4, (ce0, acc0, ce, acc)


def test_bad_runs_are_one_line_errors(tmp_path):
    def fails(model, match):
        with pytest.raises(FundiffError, match=match) as e:
            load_classifier(model)
        assert "\n" not in str(e.value)

    fails(tmp_path / "nope", "not found")
    training.train(tiny_config("class", epochs=1), tmp_path / "diffusion", data=synthetic_data(16), progress=False)
    fails(tmp_path / "diffusion", "not a classifier run")
    train_classifier(
        ClassifierTrainConfig(max_steps=1, precision="fp32"),
        tmp_path / "c",
        data=synthetic_data(16),
        test_data=synthetic_data(8),
        progress=False,
        model_config=SMALL,
    )
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    cfg["model"]["width"] = 4  # weights no longer fit the config
    (tmp_path / "c" / "config.json").write_text(json.dumps(cfg))
    fails(tmp_path / "c", "does not match its config")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    fails(tmp_path / "c", "corrupt")
    with pytest.raises(FundiffError, match="labels must lie in 0..9"):
        x, y = synthetic_data(16)
        train_classifier(
            ClassifierTrainConfig(max_steps=1),
            tmp_path / "d",
            data=(x, y + 5),
            test_data=synthetic_data(8),
            progress=False,
        )


def test_a_classifier_run_folder_is_locked_while_it_trains(tmp_path):
    with training.run_lock(tmp_path / "c"):
        with pytest.raises(FundiffError, match="being trained by another process"):
            train_classifier(
                ClassifierTrainConfig(max_steps=1, precision="fp32"),
                tmp_path / "c",
                data=synthetic_data(16),
                test_data=synthetic_data(8),
                progress=False,
                model_config=SMALL,
            )
        assert [p.name for p in (tmp_path / "c").iterdir()] == [".lock"]


def test_loading_the_grader_needs_neither_training_nor_backends():
    """classify.py is core code: a shipped name is found by fundiff.models.shipped_folder, not backends.runs."""
    import subprocess
    import sys

    from fundiff import models
    from fundiff.backends import runs

    assert runs.SHIPPED_DIR is models.SHIPPED_DIR  # one constant
    assert models.shipped_folder("mnist-classifier") == models.SHIPPED_DIR / "mnist-classifier"
    assert models.shipped_folder("./mnist-classifier") is None and models.shipped_folder("no-such-model") is None
    code = (
        "import sys; from fundiff.classify import load_classifier; load_classifier('mnist-classifier'); "
        "print(sorted(m for m in sys.modules if m.startswith(('fundiff.training', 'fundiff.backends'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
