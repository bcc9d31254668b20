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
    print(f"warning: {message}", file=sys.stderr, flush=True)
