"""Links into the console: ``/?review=ID`` opens a plan's review on the Plans page, ``/?plan=ID`` that plan's run
on the Runs page, ``/?audit=ID`` the Audit page
filtered to that plan, ``/?incident=ID`` one incident. The pages put the component a link fills in ``links``
(``review``, ``plan``, ``audit``, ``incident``) as they are built; :func:`deep_link` makes the page-load step that reads the
query string. An id that is not well-formed is ignored (the page opens as usual)."""

from __future__ import annotations

import re
from typing import Any

import gradio as gr

# query parameter -> (the tab it opens, the form its value must have)
TARGETS = {"review": ("plans", re.compile(r"plan-[0-9a-f]{10}")),
           "plan": ("runs", re.compile(r"plan-[0-9a-f]{10}")),
           "audit": ("audit", re.compile(r"plan-[0-9a-f]{10}")),
           "incident": ("incidents", re.compile(r"inc-[0-9a-f]{10}"))}


def opened(params: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """From a request's query ``params``: the tab to open (None: the default) and ``{link: id}`` for each
    well-formed link (the first one names the tab)."""
    found = {k: params[k].strip() for k in TARGETS if k in params and TARGETS[k][1].fullmatch(params[k].strip())}
    tab = next((TARGETS[k][0] for k in found), None)
    return tab, found


def deep_link(tabs: gr.Tabs, links: dict[str, Any]) -> tuple[Any, list[Any]]:
    """``(function, outputs)`` for ``page.load(...).then``: selects the linked tab and fills the linked
    components of ``links``; the function takes the request (gradio injects it)."""
    names = [k for k in TARGETS if k in links]

    def follow_link(request: gr.Request) -> tuple[Any, ...]:
        tab, found = opened(dict(request.query_params) if request is not None else {})
        values = [found[k] if k in found else gr.skip() for k in names]
        return (gr.Tabs(selected=tab) if tab else gr.skip()), *values

    return follow_link, [tabs, *(links[k] for k in names)]
