"""Progress bars for the long steps (segmentation, fitting, reports, batch prediction): tqdm on stderr.

``progress_default()`` says whether to show them when the caller has not said: in a terminal, and in a Jupyter
notebook (where stderr is not a terminal but a person is watching); never in a pipe, a log file or a service.
In a notebook the bar is tqdm's widget when ipywidgets is installed, else a plain text bar that updates at most
twice a second (so a saved notebook stays small); tqdm's own ``tqdm.auto`` would warn about the missing widgets.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar", "progress_default", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ``IPKernelApp``), False in a terminal IPython or plain Python."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # pragma: no cover - a broken IPython install
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_default() -> bool:
    """Show progress bars unless told otherwise: when stderr is a terminal, or in a notebook."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stderr
        tty = False
    return tty or in_notebook()


def _widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def progress_bar(items: Iterable[Any] | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, leave: bool = False) -> Any:
    """A tqdm bar over ``items`` (or a manual one with ``update``), or ``items`` itself when not ``enabled``."""
    if not enabled:
        return items if items is not None else _NoBar()
    notebook = in_notebook()
    if notebook and _widgets():
        from tqdm.notebook import tqdm as bar
    else:
        from tqdm import tqdm as bar
    return bar(items, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr,
               mininterval=0.5 if notebook else 0.1, dynamic_ncols=not notebook)


class _NoBar:
    """What ``progress_bar(enabled=False)`` returns for a manual bar: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
