"""The one error a user sees: a spec, an option or a file that is wrong, said in one line (exit status 2); and how a
warning is shown, one line too."""

import sys
from typing import Any


class SpecError(ValueError):
    """A spec the user wrote is wrong; the message is one line naming the key and what is allowed."""


def show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """A warning as the command line shows it: one line on stderr, `warning: ...` (for warnings.showwarning)."""
    print(f"warning: {visible(str(message))}", file=sys.stderr, flush=True)


def visible(text: str) -> str:
    """`text` with every character that does not print (a newline, a zero-width space or a direction mark in a
    key, a terminal escape) written as its escape: a message shows what was typed and stays one line.

    >>> print(visible("model.wid\\u200bth: unknown key"))
    model.wid\\u200bth: unknown key
    """
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
