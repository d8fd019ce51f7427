"""The tour's outputs: file hashes, ``manifest.json`` and a self-contained ``index.html``.

The HTML has no scripts, no network and no CDN: inline CSS and ``<img>`` tags whose ``src``
are paths relative to ``index.html`` (the figures lie beside it, under ``sections/``), so the
folder can be zipped, moved or opened from disk. Everything it shows comes from the manifest
(see :func:`fundiff.tour.run_tour` for its fields).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

from fundiff.atomic import atomic_write_bytes, atomic_write_json

MANIFEST = "manifest.json"
INDEX = "index.html"
PARTS = {
    "A": "Part A: fun with a trained model",
    "T": "Part A with text prompts: fundiff's emoji text-to-image model",
    "B": "Part B: train your own",
}

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
section { margin-bottom: 2.5em; }
img { max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #eee; margin: 0.3em 0; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
.meta { color: #555; font-size: 0.92em; } .note { color: #7a4b00; }
.toc { display: flex; flex-wrap: wrap; gap: 0 3em; } .toc h3 { margin-bottom: 0.2em; }
.toc ul { list-style: none; padding-left: 0.5em; margin-top: 0; } h2.part { background: #eef3fa; padding: 0.3em; }
"""


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    """Write ``out_dir/manifest.json`` atomically."""
    path = Path(out_dir) / MANIFEST
    atomic_write_json(path, manifest)
    return path


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(rows: Iterable[tuple[str, str]], head: tuple[str, str] | None = None) -> str:
    rows = list(rows)
    if not rows:
        return ""
    th = f"<tr><th>{_e(head[0])}</th><th>{_e(head[1])}</th></tr>" if head else ""
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{th}{body}</table>"


def _section_html(s: dict) -> str:
    figures = "".join(
        f'<figure><img src="{_e(fig)}" alt="{_e(s["title"])}: {_e(Path(fig).stem)}"></figure>' for fig in s["figures"]
    )
    meta = f"seed {s['seed']} · wall time {s['wall_s']:.1f} s · model {s['model']}"
    if s.get("sampler"):
        meta += f" · sampler {s['sampler']}"
    note = f'<p class="note">{_e(s["note"])}</p>' if s.get("note") else ""
    return (
        f'<section id="{_e(s["id"])}"><h2>{_e(s["title"])}</h2>'
        f"<p>{_e(s['caption'])}</p>{note}{figures}"
        f"{_table(s.get('numbers', []), ('evaluation of the model used', 'value'))}"
        f"<p>Reproduce:</p><pre><code>{_e(s['command'])}</code></pre>"
        f'<p class="meta">{_e(meta)}</p></section>'
    )


def _header(manifest: dict) -> str:
    m = manifest
    facts = [
        ("fundiff", f"{m['fundiff']['version']} (commit {m['fundiff']['git_commit'] or 'not a git checkout'})"),
        ("torch", m["torch"]),
        ("machine", f"{m['machine']['cpu']}; GPU {m['machine']['gpu'] or 'none'}; device {m['machine']['device']}"),
        ("threads", m["machine"]["threads"]),
        (
            "models",
            "; ".join(
                sorted(
                    {f"{f['name']} ({f['kind']}, sha256 {(f['sha256'] or '?')[:12]}…)" for f in m["models"].values()}
                )
            ),
        ),
        ("seed", m["seed"]),
        ("sampler", m["sampler"]),
        ("total wall time", f"{m['wall_s']:.1f} s (this run; resumed sections keep their first wall time)"),
    ]
    return f"<h1>fundiff tour</h1><p>{_e(m['command'])}</p>{_table(facts)}"


def render_html(manifest: dict) -> str:
    """The report page for ``manifest`` (its ``sections`` in order, each with figures relative to the page)."""
    sections = manifest["sections"]
    toc, body = [], []
    for part, heading in PARTS.items():
        mine = [s for s in sections if s["part"] == part]
        if not mine:
            continue
        links = "".join(f'<li><a href="#{_e(s["id"])}">{_e(s["title"])}</a></li>' for s in mine)
        toc.append(f"<div><h3>{_e(heading)}</h3><ul>{links}</ul></div>")
        body.append(f'<h2 class="part">{_e(heading)}</h2>')
        body += [_section_html(s) for s in mine]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>fundiff tour</title><style>{_CSS}</style></head><body>"
        f'{_header(manifest)}<nav><h2>Contents</h2><div class="toc">{"".join(toc)}</div></nav>'
        f'{"".join(body)}<p class="meta">Written by <code>fundiff tour</code>; details in '
        f'<a href="{MANIFEST}">{MANIFEST}</a>.</p></body></html>\n'
    )


def write_html(out_dir: Path, manifest: dict) -> Path:
    """Write ``out_dir/index.html`` for ``manifest`` atomically."""
    path = Path(out_dir) / INDEX
    atomic_write_bytes(path, render_html(manifest).encode("utf-8"))
    return path
