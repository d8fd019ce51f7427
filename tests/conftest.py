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


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
