"""``curdoc()`` that stays right when many sessions run at once.

bokeh 3.9 keeps the documents patched in by ``patch_curdoc`` in one global
list. With greenlets, a callback that yields (a monkey-patched ``sleep``, a
socket read) lets another session's callback push its document on top, and
the first callback's ``curdoc()`` then returns the other session's document.
:func:`install_context_local_curdoc` replaces that list with one kept per
greenlet/thread (a ``ContextVar``); bokeh 3.10 already does this itself.
"""
from __future__ import annotations

import contextvars
import typing as t

import bokeh.io.doc as bokeh_doc

T = t.TypeVar("T")

_STACK: contextvars.ContextVar[tuple[t.Any, ...]] = contextvars.ContextVar(
    "bokeh_flask_patched_curdocs", default=()
)


class ContextLocalStack:
    """The list interface ``bokeh.io.doc`` uses, stored per execution context."""

    def __len__(self) -> int:
        return len(_STACK.get())

    def __getitem__(self, index: int) -> t.Any:
        return _STACK.get()[index]

    def __iter__(self) -> t.Iterator[t.Any]:
        return iter(_STACK.get())

    def append(self, item: t.Any) -> None:
        _STACK.set((*_STACK.get(), item))

    def pop(self) -> t.Any:
        stack = _STACK.get()
        _STACK.set(stack[:-1])
        return stack[-1]


def install_context_local_curdoc() -> bool:
    """Make bokeh's ``patch_curdoc`` stack per context; True if a change was needed."""
    current = getattr(bokeh_doc, "_PATCHED_CURDOCS", None)
    if isinstance(current, list):
        bokeh_doc._PATCHED_CURDOCS = ContextLocalStack()  # type: ignore[assignment]
        return True
    return False


async def with_curdoc(document: t.Any, awaitable: t.Awaitable[T]) -> T:
    """Await ``awaitable`` with ``curdoc()`` returning ``document`` throughout."""
    with bokeh_doc.patch_curdoc(document):
        return await awaitable
