"""The provenance and error rasters of the methods other than the temporal reconstruction (which writes its own).

Block by block over the input and its mask: clear pixels get :data:`.provenance.CLEAR`, nodata
:data:`.provenance.NODATA`, and the pixels a method replaced the code of what replaced them: a fixed
code (the fill, a generator with or without radar, the median composite), or for the matched copy
and the guided optical model the nearest-in-time guide date valid there (the one they copy), the
fill where none is.

Those methods predict no error of their own: :func:`write_unknown_error` writes 0 on the clear pixels and
NaN (unknown) on the replaced ones, so that a chain that always asks for the error raster gets one.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ..grids import align_to_reference, grid_difference
from ..raster import RasterInfo, RasterWriter, read_window, valid_mask
from ..runtime import CancelCheck, check_cancelled
from ..windows import iter_windows
from . import provenance
from .guides import close_guides, guide_pixels, in_order, open_optical, split_guides

NEAREST = "nearest"


def _replaced_blocks(src: RasterInfo, bands: list, mask: RasterInfo | None, mask_values, scratch: str, block: int,
                     cancelled: CancelCheck):
    """``(window, valid, replaced)`` block by block: valid = the input holds data in every band; replaced = valid
    and marked by ``mask`` (any grid: warped onto ``src``'s with nearest neighbour), every valid pixel without one."""
    values = np.asarray([float(v) for v in mask_values])
    if mask is not None and grid_difference(mask, src) is not None:
        mask = align_to_reference([mask], src, scratch, "nearest")[0]
    for w in iter_windows(src.width, src.height, block):
        check_cancelled(cancelled)
        valid = valid_mask(read_window(src.dataset(), w, bands), [src.nodata[b - 1] for b in bands])
        replaced = valid.copy() if mask is None else \
            valid & np.isin(read_window(mask.dataset(), w, [1], np.float64)[0], values)
        yield w, valid, replaced


def write_provenance(src: RasterInfo, out_path: str, code, *, bands: list, mask: RasterInfo | None = None,
                     mask_values=(1, 2), guides: list = (), cancelled: CancelCheck = None, block: int = 512) -> dict:
    """Write the provenance of a run that replaced ``src``'s masked pixels (every valid pixel without a mask)
    with ``code``: a fixed :mod:`.provenance` code, or :data:`NEAREST` (the nearest valid optical guide).

    ``mask`` (any grid: warped onto ``src``'s with nearest neighbour). Returns ``{code: pixels}`` and the legend."""
    optical, _ = split_guides(list(guides))
    counts: dict = {}
    with tempfile.TemporaryDirectory(prefix=".cloudfree-provenance-",
                                     dir=os.path.dirname(os.path.abspath(out_path))) as scratch:
        dates = open_optical(src, bands, optical, scratch) if code == NEAREST else []
        try:
            index = {id(d): k for k, d in enumerate(dates)}
            order = [index[id(o)] for o in in_order(src, dates)]    # the order the matched copy takes them in
            with RasterWriter(out_path, like=src, band_count=1, dtype="uint8", nodata=provenance.NODATA) as out:
                provenance.style_band(out.ds.GetRasterBand(1), [d.entry for d in dates])   # before any block
                for w, valid, replaced in _replaced_blocks(src, bands, mask, mask_values, scratch, block, cancelled):
                    result = np.where(valid, provenance.CLEAR, provenance.NODATA).astype(np.uint8)
                    if code == NEAREST:
                        left = replaced.copy()
                        for k in order:
                            _, ok = guide_pixels(dates[k], w)
                            take = left & ok
                            result[take] = provenance.guide_code(k)
                            left &= ~take
                        result[left] = provenance.FILL
                    else:
                        result[replaced] = int(code)
                    out.write(result, w.col_off, w.row_off)
                    v, n = np.unique(result, return_counts=True)
                    for a, b in zip(v.tolist(), n.tolist()):
                        counts[a] = counts.get(a, 0) + b
        finally:
            close_guides(dates)
    return {"counts": counts, "legend": provenance.legend([d.entry for d in dates])}


def write_unknown_error(src: RasterInfo, out_path: str, *, bands: list, mask: RasterInfo | None = None,
                        mask_values=(1, 2), cancelled: CancelCheck = None, block: int = 512) -> str:
    """The error raster of a method without an error model: 0 where the input pixel was kept, NaN elsewhere."""
    folder = os.path.dirname(os.path.abspath(out_path))
    with tempfile.TemporaryDirectory(prefix=".cloudfree-error-", dir=folder) as scratch:
        with RasterWriter(out_path, like=src, band_count=len(bands), dtype="float32", nodata=float("nan"),
                          descriptions=["predicted absolute error: unknown for this method"] * len(bands)) as out:
            for w, valid, replaced in _replaced_blocks(src, bands, mask, mask_values, scratch, block, cancelled):
                kept = valid & ~replaced
                out.write(np.where(kept, 0.0, np.nan)[None].repeat(len(bands), axis=0).astype(np.float32),
                          w.col_off, w.row_off)
    return out_path
