"""The tree shows the layers, and imports point one way: applications (cli/, tour/, ui/) -> backends/ and
training/ -> the core (every flat module fundiff/*.py and fundiff/models/). Checked on the source text (every
import statement, also those inside functions), so a lazy import cannot hide a wrong direction."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fundiff"
APPS = ("cli", "tour", "ui")
MIDDLE = ("backends", "training")
MAX_LINES = 500


def layer(path: Path) -> str:
    """'app', 'middle' or 'core' for a module file under src/fundiff."""
    top = path.relative_to(SRC).parts[0]
    return "app" if top in APPS else "middle" if top in MIDDLE else "core"


def imported(source: str, module: str) -> set[str]:
    """Every module name a source file imports (absolute; relative imports resolved against ``module``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from .m import x
                base = module.rsplit(".", node.level)[0]
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
                names |= {f"{node.module}.{a.name}" for a in node.names}  # from fundiff import training
    return names


def violations(path: Path, source: str) -> list[str]:
    """What a module imports that its layer must not."""
    rel = path.relative_to(SRC)
    module = ".".join(("fundiff", *rel.with_suffix("").parts)).removesuffix(".__init__")
    names = imported(source, module)
    kind, top = layer(path), rel.parts[0]
    bad = []
    for name in sorted(names):
        parts = name.split(".")
        if parts[0] == "fundiff" and len(parts) > 1:
            target = parts[1]
            if kind == "core" and target in APPS + MIDDLE:
                bad.append(f"{module} (core) imports {name}")
            if kind == "middle" and target in APPS:
                bad.append(f"{module} ({top}) imports the application {name}")
            if kind == "middle" and target in MIDDLE and target != top:
                bad.append(f"{module} ({top}) imports {name}, its sibling layer")
        if parts[0] == "gradio" and top != "ui":
            bad.append(f"{module} imports gradio (only fundiff.ui may)")
        if parts[0] in ("diffusers", "transformers") and top != "backends":
            bad.append(f"{module} imports {parts[0]} (only fundiff.backends may)")
    return bad


MODULES = sorted(SRC.rglob("*.py"))


def test_the_scanner_finds_each_kind_of_wrong_import():
    core, middle = SRC / "samplers.py", SRC / "backends" / "runs.py"
    assert violations(core, "def f():\n    from fundiff.cli import techniques\n")  # lazy, still wrong
    assert violations(core, "from fundiff import training\n")
    assert violations(middle, "from fundiff.tour import report\n")
    assert violations(middle, "import fundiff.training.loop\n")
    assert violations(core, "import gradio as gr\n") and violations(core, "from transformers import T5EncoderModel\n")
    assert not violations(SRC / "ui" / "app.py", "import gradio\nfrom fundiff.backends import runs\n")
    assert not violations(middle, "from fundiff import samplers\nfrom diffusers import IFPipeline\n")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_from_the_applications_to_the_core(path):
    assert violations(path, path.read_text()) == []


def test_the_core_is_flat_and_the_shells_are_packages():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert {"cli", "tour", "ui", "training", "backends", "models"} <= packages
    assert not any((SRC / f"{name}.py").exists() for name in ("cli", "tour", "ui", "training", "runs", "report"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_500_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path.name}: split it by job"
