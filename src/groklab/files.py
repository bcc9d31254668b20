"""Writing files that other processes may read at any moment: atomically, with the mode the user's umask gives,
and under temporary names that say which process writes them (so a dead writer's leftovers can be told apart)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write via a temporary file in the same directory, then rename it over the target: a reader sees the old
    file or the new one, never half of one. The file gets the mode a plain open() would give it (0666 less the
    umask): mkstemp's 0600 would hide a shared experiment from the rest of a cluster group."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path))
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temporary_prefix(path: Path) -> str:
    """Name of a temporary file that will be renamed to `path`: .NAME.HOST.PID.xxxx, so that a process sharing
    the directory can tell a dead writer's leftover from a file another process is writing now."""
    return f".{path.name}.{host_tag()}.{os.getpid()}."


def temporary_writer(path: Path) -> tuple[str | None, int | None]:
    """(host, pid) of the process writing a temporary file, from its name (None, None if not in it)."""
    parts = path.name.rsplit(".", 3)  # [.NAME, HOST, PID, random]
    if len(parts) == 4 and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None, None


def host_tag() -> str:
    """This machine's name without dots (it goes between the dots of a temporary file's name)."""
    return socket.gethostname().replace(".", "_")


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: reading it is not thread-safe
