"""Faults of the place a command writes: a full disk, a read-only file system or folder, a file in the way, /proc,
a second writer, SIGTERM. Each is one line on stderr (``fundiff: error: ...``), exit code 2 (130 when
interrupted), and nothing partial on disk: the folder tree is as before, or for training a run that --resume
accepts."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from fundiff import checkpoints, cli, data, outputs, tour
from fundiff.errors import FundiffError
from helpers import synthetic_data, tiny_runs

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "class", "--preset", "quick", "--hidden", "4", "--T", "20", "--batch-size", "16"]
TRAIN += ["--precision", "fp32", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory.mktemp("runs"), synthetic_data(32))


@pytest.fixture(autouse=True)
def test_split(monkeypatch):
    """Synthetic digits instead of a dataset's splits."""
    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(32, seed=3))


def commands(runs, out: Path) -> dict[str, list[str]]:
    """Every command that writes, on the tiny models, writing into ``out`` (a folder that may not exist yet)."""
    m, dn = str(runs["class"]), str(runs["denoiser"])
    return {
        "generate": ["generate", "--model", m, "--steps", "2", "--out", str(out / "g")],
        "sdedit": ["sdedit", "--model", m, "--image", "seven", "--i-start", "1", "--out", str(out / "s")],
        "noise": ["noise", "--model", m, "--out", str(out / "n")],
        "sample-png": ["sample", "--model", m, "--n", "1", "--steps", "2", "--out", str(out / "s.png")],
        "sample-folder": ["sample", "--model", m, "--n", "2", "--steps", "2", "--out", str(out / "sf")],
        "denoise-sweep": ["denoise-sweep", "--model", dn, "--n-eval", "8", "--out", str(out / "sw")],
        "evaluate": ["evaluate", "--model", dn, "--n", "8", "--out", str(out / "e.json")],
        "export": ["export", "--model", m, "--name", "x", "--dest", str(out)],
        "train": [*TRAIN, "--epochs", "1", "--out", str(out / "r")],
        "tour": ["tour", "--model", m, "--out", str(out / "t")],
    }


NAMES = list(commands({"class": "", "denoiser": ""}, Path()))


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def fails(capsys, argv: list[str], *match: str, code: int = 2) -> str:
    """Run ``fundiff ARGV``: exit ``code`` and exactly one line on stderr, a fundiff error holding ``match``."""
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fundiff: error:"), err
    assert all(m in err for m in match), err
    return err.strip()


# -- a full disk --------------------------------------------------------------------------------------------
def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode
        == 0
    )


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a disk with 4 KiB left: a small tmpfs filled up, or where mounting is not allowed, the same
    folder with fsync failing with ENOSPC once the files written under it pass 4 KiB (a fake full disk)."""
    folder = tmp_path / "full"
    if _mount(folder, "size=200k"):
        _fill_up(folder)
        os.truncate(folder / ".filler", (folder / ".filler").stat().st_size - 4096)
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
        return
    folder.mkdir(exist_ok=True)
    written = {"bytes": 0}
    real_fsync = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isfile(name) and Path(name).is_relative_to(folder) and not (folder / ".free").exists():
            written["bytes"] += os.fstat(fd).st_size
            if written["bytes"] > 4096 or (folder / ".full").exists():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield folder


def _fill_up(folder: Path) -> None:
    """Take the space left on the full disk (the fake one: mark it full)."""
    if not (folder / ".filler").exists() and os.path.ismount(folder):
        name = ".filler"
    elif os.path.ismount(folder):
        name = ".filler-2"
    else:
        (folder / ".full").touch()
        return
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _free(folder: Path) -> None:
    """Free the full disk again (the fake one: mark it free)."""
    for name in (".filler", ".filler-2", ".full"):
        (folder / name).unlink(missing_ok=True)
    if not os.path.ismount(folder):
        (folder / ".free").touch()


@pytest.mark.parametrize("name", NAMES)
def test_a_full_disk_is_one_line_and_leaves_nothing(name, runs, full_disk, capsys):
    if name == "evaluate":  # its JSON fits in the 4 KiB left
        _fill_up(full_disk)
    before = tree(full_disk)
    argv = commands(runs, full_disk)[name]
    fails(capsys, argv, "no space left on device writing", str(full_disk), "free some space")
    if name != "train":
        assert tree(full_disk) == before
        return
    # training: no folder, or one that --resume accepts (starts at step 0 when it has no checkpoint yet)
    left = sorted(set(tree(full_disk)) - set(before))
    assert left in ([], ["r", "r/config.json"]), left
    _free(full_disk)
    if left:
        assert cli.main([*TRAIN, "--epochs", "1", "--resume", "--out", str(full_disk / "r")]) == 0
        assert checkpoints.load_checkpoint(full_disk / "r")[2]["step"] == 2  # 32 images, batch 16, one epoch


def test_a_full_disk_while_training_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    """ENOSPC while writing the second checkpoint: the first stays whole and --resume finishes the run."""
    out = tmp_path / "r"
    real, calls = checkpoints.atomic_write_bytes, []

    def write(path, blob):
        calls.append(path)
        if path.name == "state.safetensors" and len(calls) > 2:  # the second checkpoint's, after its weights
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, blob)

    monkeypatch.setattr(checkpoints, "atomic_write_bytes", write)
    fails(capsys, [*TRAIN, "--epochs", "2", "--save-every", "1", "--out", str(out)], "no space left", str(out))
    assert checkpoints.load_checkpoint(out)[2]["step"] == 1  # whole: every file of step 1
    assert not [p for p in tree(out) if "tmp" in p]
    monkeypatch.setattr(checkpoints, "atomic_write_bytes", real)
    assert cli.main([*TRAIN, "--epochs", "2", "--save-every", "1", "--resume", "--out", str(out)]) == 0
    assert checkpoints.load_checkpoint(out)[2]["step"] == 4


def test_a_full_disk_keeps_the_tours_complete_sections(runs, tmp_path, monkeypatch):
    """The tour resumes: the sections complete before a full disk stay, the one it was writing does not."""
    from fundiff import io

    out = tmp_path / "t"
    kw = dict(model=str(runs["class"]), time_model=str(runs["time"]), denoiser_model=str(runs["denoiser"]))
    kw |= dict(quick=True, log=lambda line: None, sections=["a-forward", "a-blur"])
    tour.run_tour(out, **kw | {"sections": ["a-forward"]})
    before = tree(out)
    real = io.atomic_write_bytes

    def write(path, blob):
        if "a-blur" in str(path) and "blur" in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, blob)

    monkeypatch.setattr(io, "atomic_write_bytes", write)
    with pytest.raises(OSError, match="No space left"):
        tour.run_tour(out, **kw)
    assert tree(out) == before
    monkeypatch.setattr(io, "atomic_write_bytes", real)
    assert tour.run_tour(out, **kw).skipped == ("a-forward",)


# -- read-only, a file in the way, /proc -------------------------------------------------------------------
@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    if not _mount(folder, "size=64k,ro"):
        pytest.skip("cannot mount a read-only tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("name", ["generate", "sample-png", "evaluate", "export", "train", "tour"])
def test_a_read_only_file_system(name, runs, read_only, capsys):
    fails(capsys, commands(runs, read_only)[name], "read-only file system", str(read_only))


@pytest.mark.parametrize("name", NAMES)
def test_a_file_in_the_way(name, runs, tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    before = tree(tmp_path)
    fails(capsys, commands(runs, tmp_path / "afile")[name], "afile is a file", "choose another")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", ["generate", "sample-folder"])
def test_a_file_where_the_folder_is_meant(name, runs, tmp_path, capsys):
    argv = commands(runs, tmp_path)[name]
    Path(argv[-1]).write_text("not a folder")
    fails(capsys, argv, "is a file, not a folder")


@pytest.mark.parametrize("name", NAMES)
def test_a_path_under_proc(name, runs, capsys):
    fails(capsys, commands(runs, Path("/proc/fundiff-faults"))[name], "is under /proc", "choose another")
    assert not Path("/proc/fundiff-faults").exists()


def test_a_folder_without_write_permission(tmp_path):
    """As a user without write permission (root drops to nobody: root's CAP_DAC_OVERRIDE writes anywhere)."""
    base = Path(tempfile.mkdtemp(prefix="fundiff-ro-"))
    try:
        base.chmod(0o755)
        ro = base / "ro"
        ro.mkdir(mode=0o555)
        ro.chmod(0o555)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        if drop and not shutil.which("setpriv"):
            pytest.skip("root without setpriv cannot drop CAP_DAC_OVERRIDE")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FUNDIFF_CACHE": str(base / "cache"), "HOME": str(base)}
        for argv in (["generate", "--out", str(ro / "g")], ["sample", "--model", "mnist-class", "--out", str(ro)]):
            r = subprocess.run(
                [*drop, sys.executable, "-m", "fundiff.cli", *argv], capture_output=True, text=True, env=env, cwd=base
            )
            if drop and r.returncode != 2 and "setpriv" in r.stderr:
                pytest.skip(f"setpriv cannot drop privileges here: {r.stderr.strip()}")
            assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
            assert r.stderr.startswith(f"fundiff: error: permission denied writing {ro}"), r.stderr
            assert list(ro.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- one writer per folder ----------------------------------------------------------------------------------
HOLD = """
import sys
from fundiff import outputs
with outputs.folder_lock(sys.argv[1], doing=sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _holder(folder: Path, doing: str) -> subprocess.Popen:
    """Another process holding ``folder``'s lock until its stdin closes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), doing], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert p.stdout.readline() == "locked\n"
    return p


@pytest.mark.parametrize("name", ["tour", "export"])
def test_a_second_writer_stops_at_once_with_the_others_pid(name, runs, tmp_path, capsys):
    argv = commands(runs, tmp_path)[name]
    folder = tmp_path / ("t" if name == "tour" else "x")
    other = _holder(folder, "written")
    try:
        before = tree(tmp_path)
        err = fails(capsys, argv, f"{folder} is being written by another process (pid {other.pid})")
        assert err.endswith("wait for it or choose another " + ("--out" if name == "tour" else "--dest"))
        assert tree(tmp_path) == before
    finally:
        other.communicate("")
    assert not folder.exists()  # the holder made it and removed it again, empty


def test_a_second_ui_on_one_folder_stops_before_serving(tmp_path):
    pytest.importorskip("gradio", reason="the web UI needs gradio: pip install 'fundiff[ui]'")
    from fundiff import ui

    folder = tmp_path / "ui"
    other = _holder(folder, "served")
    try:
        config = ui.UIConfig(models=("mnist-class",), model="mnist-class", out=folder)
        with pytest.raises(FundiffError, match=rf"is being served by another process \(pid {other.pid}\)"):
            ui.launch(None, config)
    finally:
        other.communicate("")
    with pytest.raises(AttributeError):  # past the checks and the lock: a failed start leaves no new folder
        ui.launch(None, ui.UIConfig(models=("mnist-class",), model="mnist-class", out=tmp_path / "new" / "ui"))
    assert not (tmp_path / "new").exists()


def test_training_uses_the_same_lock(tmp_path, capsys):
    other = _holder(tmp_path / "r", "trained")
    try:
        fails(capsys, [*TRAIN, "--epochs", "1", "--out", str(tmp_path / "r")], f"(pid {other.pid})", "--out")
    finally:
        other.communicate("")


# -- SIGTERM ------------------------------------------------------------------------------------------------
CHILD = """
import sys
sys.path.insert(0, {tests!r})
import torch
from fundiff import cli, data
from helpers import synthetic_data
torch.set_num_threads(1)
data.load_split = lambda name, root=None, train=True: synthetic_data(32, seed=3)
sys.exit(cli.main(sys.argv[1:]))
"""


def _child(argv: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FUNDIFF_CACHE": str(tmp_path / "cache")}
    code = textwrap.dedent(CHILD.format(tests=str(ROOT / "tests")))
    return subprocess.Popen([sys.executable, "-c", code, *argv], stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(check, p: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert p.poll() is None and time.monotonic() < end, p.stderr.read() if p.poll() is not None else "timeout"
        time.sleep(0.02)


def test_sigterm_stops_training_like_ctrl_c(tmp_path):
    out = tmp_path / "r"
    p = _child([*TRAIN, "--epochs", "500", "--save-every", "1", "--out", str(out)], tmp_path)
    _wait_for(lambda: (out / "state.json").exists(), p)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "fundiff: interrupted; what was finished is kept (continue with --resume)"
    assert "Traceback" not in err
    assert checkpoints.load_checkpoint(out)[2]["step"] >= 1
    assert not [p for p in tree(out) if "tmp" in p or p == ".lock"]


def test_sigterm_removes_the_temporary_output(runs, tmp_path):
    out = tmp_path / "o" / "s"
    p = _child(["sample", "--model", str(runs["class"]), "--n", "20", "--out", str(out)], tmp_path)
    _wait_for(lambda: (tmp_path / "o").is_dir() and any((tmp_path / "o").iterdir()), p)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130 and err.count("\n") == 1 and err.startswith("fundiff: interrupted"), err
    assert not (tmp_path / "o").exists()  # the temporary sibling and the parent folder it made are gone


def test_an_interrupt_while_a_checkpoint_loads_is_an_interrupt_not_a_corrupt_file(runs, monkeypatch):
    # a signal whose handler raises inside torch's C code comes out as a ValueError ("could not determine the
    # shape of object type ..."): the load is a critical step, so the handler runs after it
    real = checkpoints.load_file

    def load_file_hit_by_sigint(path):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'") from None
        return real(path)

    monkeypatch.setattr(checkpoints, "load_file", load_file_hit_by_sigint)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoints.read_tensors(runs["class"] / "model.safetensors")
    finally:
        signal.signal(signal.SIGINT, old)


# -- the module itself --------------------------------------------------------------------------------------
def test_staged_outputs_replace_what_they_write_and_keep_the_rest(tmp_path):
    out = tmp_path / "o"
    (out / "old").mkdir(parents=True)
    (out / "old" / "a.png").write_text("old")
    (out / "keep.png").write_text("keep")
    with outputs.staged_folder(out) as staged:
        assert staged.tmp == tmp_path / f"o.tmp-{os.getpid()}" and not (out / "new.png").exists()
        (staged.tmp / "old").mkdir()
        (staged.tmp / "old" / "a.png").write_text("new")
        (staged.tmp / "new.png").write_text("new")
        assert staged.final(staged.tmp / "new.png") == out / "new.png"
    assert tree(tmp_path) == ["o", "o/keep.png", "o/new.png", "o/old", "o/old/a.png"]
    assert (out / "old" / "a.png").read_text() == "new"
    with pytest.raises(FundiffError, match="must be a .json file"):
        with outputs.staged_file(tmp_path / "e.txt", suffixes=(".json",)):
            pass
    with outputs.staged_file(tmp_path / "a" / "b" / "e.json", suffixes=(".json",)) as staged:
        staged.tmp.write_text("{}")
        staged.tmp.with_name("e_plot.png").write_text("png")
    assert sorted(tree(tmp_path / "a")) == ["b", "b/e.json", "b/e_plot.png"]


def test_interrupts_wait_for_a_critical_step_and_then_act():
    done = []
    # Python's own SIGINT handler, whatever an earlier test (a web server, a browser driver) left installed
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with outputs.interrupts_deferred():
                signal.raise_signal(signal.SIGINT)  # Python's own handler: KeyboardInterrupt, once the step is over
                done.append("step")
        assert done == ["step"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with outputs.interrupts_deferred():  # nothing came: nothing happens
            done.append("again")
    finally:
        signal.signal(signal.SIGINT, old)
    assert done == ["step", "again"]
