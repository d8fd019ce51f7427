"""A tab's controls, built from its technique's spec (fundiff.specs), and the widgets every tab shares.

Each parameter the spec shows in the UI (``Param.ui``) becomes one component: a slider for a bounded number
(its ``Number.ui`` range), a number field otherwise, a radio for a choice, a text box for prompts (a list is
comma-separated), a multi-select for views. Its start value is the technique's default for the start model
(``Technique.resolve``), its label the spec's help. What the page sends back is turned into the spec's values by
:func:`given_from` and checked by the spec, so the UI takes and says what the CLI takes and says.
"""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Callable, Iterator

import gradio as gr

from fundiff import specs
from fundiff.errors import FundiffError

PROGRESS = gr.Progress()  # a marker: gradio passes each call its own tracker where a default is a Progress
SAMPLING_SLOT = "fundiff-sampler"  # one concurrency id for every event that samples: one run at a time


def ui_params(spec: specs.Technique) -> list[specs.Param]:
    """The spec's parameters the UI shows, in the spec's order (the order of the tab's API inputs)."""
    return [p for p in spec.params if p.ui]


def controls(spec: specs.Technique, den, *, elem_prefix: str) -> list:
    """One gradio component per UI parameter of ``spec``, starting at the technique's defaults for ``den``."""
    start = spec.resolve(den, {})
    return [_component(spec, p, start[p.name], f"{elem_prefix}-{p.name.replace('_', '-')}") for p in ui_params(spec)]


def _component(spec: specs.Technique, p: specs.Param, value, elem_id: str):
    label = f"{p.help} ({p.cli_flag})"
    kind = p.kind
    if isinstance(kind, specs.ViewName):
        from fundiff.views import view_specs

        values = list(value) if p.many else [value]
        return gr.Dropdown(
            view_specs(), value=values, multiselect=p.many, allow_custom_value=True, label=label, elem_id=elem_id
        )
    if isinstance(kind, specs.Choice):
        return gr.Radio(list(kind.names()), value=value, label=label, elem_id=elem_id)
    if isinstance(kind, specs.Text):
        shown = ", ".join(value) if p.many else value
        hint = " -- comma-separated" if p.many else f" -- empty: {p.none.removeprefix('none: ')}" if p.none else ""
        return gr.Textbox(value=shown, label=f"{label}{hint}", elem_id=elem_id)
    if kind.ui is not None:
        low, high, step = kind.ui
        return gr.Slider(low, high, value=value, step=step, label=label, elem_id=elem_id)
    return gr.Number(value=value, precision=0 if kind.kind is int else None, label=label, elem_id=elem_id)


def given_from(spec: specs.Technique, values) -> dict:
    """The page's values of :func:`ui_params` (in order) as the spec's checked parameter values.

    A text box of a list parameter is split at commas ("3, seven" -> ["3", "seven"]; empty: the default); an
    optional one (``Param.none``, e.g. the hybrid's --mid) left empty is left out."""
    given = {}
    for p, value in zip(ui_params(spec), values):
        if isinstance(p.kind, specs.Text):
            text = (value or "").strip()
            if p.many:
                value = [v.strip() for v in text.split(",") if v.strip()] or None
            else:
                value = text or (None if p.none else "")  # empty: left out if optional, else the prompt ""
        elif isinstance(p.kind, specs.ViewName) and p.many:
            value = [value] if isinstance(value, str) else list(value or []) or None
        given[p.name] = value
    return spec.check(given)


def check_prompts(den, given: dict) -> None:
    """Every prompt the values name is one the model takes (its describe_prompt raises the one-line error now,
    before any sampling)."""
    for name in ("prompt", "prompts", "low", "mid", "high"):
        value = given.get(name)
        for prompt in value if isinstance(value, list) else [] if value is None else [value]:
            den.describe_prompt(prompt)


# -- widgets every tab has -----------------------------------------------------------------------------
def outputs(name: str, extra_label: str | None = None) -> list:
    """The output column every tab has: live x0_hat, the figure, [an extra view,] downloads, and a status line."""
    with gr.Column():
        live = gr.Image(label="x̂₀ while sampling", type="numpy", interactive=False, elem_id=f"{name}-live", height=200)
        figure = gr.Image(label="result", type="filepath", interactive=False, elem_id=f"{name}-result")
        extra = []
        if extra_label:
            extra = [gr.Image(label=extra_label, type="numpy", interactive=False, elem_id=f"{name}-extra")]
        files = gr.File(
            label="download: run zip (figure, images, manifest, index.html), manifest, figure, "
            "sampling animation (GIF)",
            file_count="multiple",
            interactive=False,
            elem_id=f"{name}-files",
        )
        status = gr.Markdown(elem_id=f"{name}-status")
    return [live, figure, *extra, files, status]


def guard(fn: Callable[..., Iterator], on_failure: Callable[[], None] | None = None) -> Callable[..., Iterator]:
    """A tab function whose FundiffError (and any other error) reaches the page as a message, not a traceback;
    ``on_failure`` runs first (the app removes the failed run's folder)."""
    from fundiff.ui.app import Stopped

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
        except BaseException:
            if on_failure is not None:
                on_failure()
            raise

    @functools.wraps(fn)
    def shown(*args, **kwargs):
        try:
            yield from guarded(*args, **kwargs)
        except FundiffError as e:
            raise gr.Error(html.escape(str(e), quote=False), title="fundiff", print_exception=False) from None
        except Stopped:
            return
        except gr.Error:
            raise
        except Exception as e:  # a bug: say so in one line; the console keeps the traceback
            raise gr.Error(
                html.escape(f"unexpected {type(e).__name__}: {e}", quote=False), title="fundiff: internal error"
            ) from e

    return shown


def listen(button: gr.Button, fn, inputs: list, outputs: list, api_name: str, on_failure=None) -> None:
    """``fn(*values, progress=...)`` on the button's click, in the one sampling slot; progress shows on the
    result, not on the live x0_hat. ``fn``'s FundiffError shows as a message in the page (:func:`guard`).

    The handler gradio sees takes one positional parameter per input, then ``progress`` (gradio hands a tracker
    to a parameter whose default is a Progress), so a tab whose controls come from a spec needs no fixed
    signature."""
    guarded = guard(fn, on_failure)

    def handler(*args):
        *values, progress = args
        yield from guarded(*values, progress=progress)

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(f"input_{i}", positional) for i in range(len(inputs))]
    handler.__signature__ = inspect.Signature([*params, inspect.Parameter("progress", positional, default=PROGRESS)])
    handler.__name__ = api_name
    button.click(
        handler,
        inputs,
        outputs,
        api_name=api_name,
        concurrency_limit=1,
        concurrency_id=SAMPLING_SLOT,
        show_progress_on=outputs[1],
    )
