"""How an unusable input reaches the browser: one line in a message box, never a stack trace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr

from smfd.errors import InputError


@contextmanager
def shown_to_user() -> Iterator[None]:
    """Turn an InputError raised inside the block into a gr.Error with its message."""
    try:
        yield
    except InputError as exc:
        raise gr.Error(str(exc)) from None
