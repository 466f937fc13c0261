"""The Window type and the block iterator (engine only)."""

import numpy as np

from cloudfree.models.windows import Window, iter_windows


def test_windows_tile_the_raster_exactly_once_in_row_major_order():
    cover = np.zeros((250, 330), dtype=int)
    windows = list(iter_windows(330, 250, 100))
    for w in windows:
        cover[w.slices] += 1
    assert (cover == 1).all()
    assert windows[0] == Window(0, 0, 100, 100) and windows[3] == Window(300, 0, 30, 100)
    assert windows[-1] == Window(300, 200, 30, 50)
    x0, y0, w, h = windows[-1]  # still unpacks like the (x0, y0, w, h) tuples it replaced
    assert (x0, y0, w, h) == (300, 200, 30, 50)


def test_strips_padding_and_clipping():
    assert [w.row_off for w in iter_windows(10, 25, 10, block_height=8)] == [0, 8, 16, 24]
    w = Window(0, 5, 10, 10).padded(3)
    assert w == Window(-3, 2, 16, 16)
    assert w.clipped(12, 14) == Window(0, 2, 12, 12)
    empty = Window(20, 20, 5, 5).clipped(10, 10)
    assert (empty.width, empty.height) == (0, 0)
