"""The one way the engine writes an output: into a hidden file beside it, renamed into place when complete.

A failed or cancelled run therefore leaves no half-written output, and an existing file at the
destination stays as it was until the new one is whole. :class:`AtomicFile` is the mechanism
(used by the raster writer, whose file stays open across many block writes);
:func:`atomic_output` wraps it for a ``with`` block, and :func:`write_text` for a whole text.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator


class AtomicFile:
    """A temporary path beside ``path``; :meth:`commit` renames it onto ``path``, :meth:`abort` deletes it.

    ``suffix``: the temporary file's extension (default: the destination's), for writers that
    choose their format by extension.
    """

    def __init__(self, path: str, suffix: str | None = None):
        self.path = str(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        ext = os.path.splitext(self.path)[1] if suffix is None else suffix
        self.tmp = os.path.join(folder, f".{os.path.basename(self.path)}.partial-{uuid.uuid4().hex[:8]}{ext}")
        self.done = False

    def commit(self, source: str | None = None) -> str:
        """Rename ``source`` (default the temporary path) onto the destination."""
        os.replace(source or self.tmp, self.path)
        self.done = True
        return self.path

    def abort(self, *also: str) -> None:
        """Delete the temporary file, its GDAL side file and any ``also`` paths that exist."""
        for p in (self.tmp, self.tmp + ".aux.xml", *also):
            if os.path.exists(p):
                os.remove(p)
        self.done = True


@contextmanager
def atomic_output(path: str, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path to write; it replaces ``path`` only if the block ends without an error."""
    target = AtomicFile(path, suffix)
    try:
        yield target.tmp
    except BaseException:
        target.abort()
        raise
    target.commit()


def write_text(path: str, text: str) -> str:
    """Write a whole UTF-8 text file atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return str(path)
