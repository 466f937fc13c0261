"""The one ``Window`` type and the one block iterator every block loop of the engine uses.

A window is a rectangle of pixels of the raster it refers to: ``col_off``, ``row_off`` (its
upper-left pixel, 0-based) and its ``width`` and ``height``. It is a named tuple, so
``x0, y0, w, h = window`` reads as before, and it knows the few things block loops ask of it.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple


class Window(NamedTuple):
    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def slices(self) -> tuple:
        """``(rows, cols)`` slices that cut this window out of an array of the whole raster."""
        return (slice(self.row_off, self.row_off + self.height), slice(self.col_off, self.col_off + self.width))

    def padded(self, margin: int) -> "Window":
        """The window grown by ``margin`` pixels on every side (it may reach outside the raster)."""
        return Window(self.col_off - margin, self.row_off - margin, self.width + 2 * margin,
                      self.height + 2 * margin)

    def clipped(self, width: int, height: int) -> "Window":
        """The part of this window inside a ``width`` x ``height`` raster."""
        x0, y0 = max(0, self.col_off), max(0, self.row_off)
        x1, y1 = min(width, self.col_off + self.width), min(height, self.row_off + self.height)
        return Window(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def iter_windows(width: int, height: int, block: int = 1024, block_height: int | None = None) -> Iterator[Window]:
    """Row-major windows of at most ``block`` x ``block_height`` (default ``block``) pixels covering the raster."""
    bh = block if block_height is None else block_height
    for y0 in range(0, height, bh):
        for x0 in range(0, width, block):
            yield Window(x0, y0, min(block, width - x0), min(bh, height - y0))
