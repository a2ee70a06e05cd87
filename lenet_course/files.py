"""Writing files so that nothing half-written is ever left behind: temp file, then rename."""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, BinaryIO

__all__ = ["temp_file_beside", "atomic_write"]


@contextmanager
def temp_file_beside(target: Path) -> Iterator[Path]:
    """A fresh temp file in ``target``'s folder (so a rename is atomic), removed unless renamed away.

    It gets the permissions an ordinary new file would get (``mkstemp`` would make it 0600).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.part"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
            break
        except FileExistsError:
            continue
    try:
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
