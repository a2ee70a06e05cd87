"""Writing files so that nothing half-written is ever left behind: temp file, then rename."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, BinaryIO

__all__ = ["temp_file_beside", "atomic_write"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def temp_file_beside(target: Path) -> Iterator[Path]:
    """A fresh temp file in ``target``'s folder (so a rename is atomic), removed unless renamed away.

    It gets the permissions an ordinary new file would get (``mkstemp`` would make it 0600).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(target: str | os.PathLike, content: bytes | str | Callable[[BinaryIO], object]) -> None:
    """Write ``content`` (bytes, UTF-8 text, or a function that writes to a binary file) to ``target``.

    Readers see either the old file or the complete new one, never a partial write.
    """
    target = Path(target)
    with temp_file_beside(target) as tmp:
        with open(tmp, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, target)
