"""Run a function (typically a network) over a whole raster in overlapping tiles.

How it works, in one paragraph: tiles of ``tile`` x ``tile`` pixels are laid out with a
stride of ``tile - overlap``, starting ``overlap // 2`` pixels before the raster so edge
pixels also get context; the outside of the raster is filled by mirror reflection. Each
tile's output is multiplied by a window that rises as ``sin^2`` across the overlap, so in
any overlap the weights of neighbouring tiles add up to one (a cross-fade, no seams).
The raster is processed one row of tiles at a time: rows that no later tile touches are
divided by the summed weights and written, so memory is bounded by one row of tiles
(``bands x tile x width``) and the batch, never by the raster's height. Reading the next
row and writing finished rows happen on background threads while the function runs.

The same run can be scaled out (``executor``, from :func:`open_executor`: a Dask cluster, see
:mod:`.distributed`): each batch of tiles becomes a task that reads its columns of the row of
tiles on a worker (mirrored past the edges exactly as here), runs the function there and returns
the tiles; they are blended, finished and written here, in the same order, by the same code, so
the output is the same. The engines pass ``executor`` through and never see Dask.
"""

from __future__ import annotations

import math
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from osgeo import gdal

from .errors import InputError, ModelFileError
from .raster import RasterInfo, RasterWriter, open_raster, read_padded, valid_mask
from .runtime import CancelCheck, Progress, check_cancelled, report, steady_memory
from .windows import Window

TileFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


def open_executor(scheduler: str | None):
    """A context giving where tiles run: None (here, in-process) for an empty ``scheduler``, else a Dask
    executor (``local:N``, ``tcp://host:port``; :func:`.distributed.open_executor`), closed at the end.

    Dask is imported only here, when a scheduler is asked for."""
    if not (scheduler or "").strip():
        return nullcontext(None)
    from .distributed import open_executor as open_dask

    return open_dask(scheduler)


def describe_executor(executor) -> str:
    return "in-process" if executor is None else executor.description


@dataclass(frozen=True)
class TileLayout:
    """Where tiles start along one axis of ``length`` pixels."""

    length: int
    tile: int
    overlap: int

    def __post_init__(self):
        if self.tile < 1 or not (0 <= self.overlap < self.tile):
            raise InputError(f"Tile overlap {self.overlap} px does not fit tiles of {self.tile} px: the overlap must "
                             "be at least 0 and smaller than the tile size.")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def margin(self) -> int:
        return self.overlap // 2

    def starts(self) -> list:
        start, out = -self.margin, []
        while True:
            out.append(start)
            if start + self.tile >= self.length + self.margin:
                return out
            start += self.stride


def blend_window_1d(tile: int, overlap: int) -> np.ndarray:
    """1 in the middle, ``sin^2`` ramps over ``overlap`` pixels at both ends (partition of unity)."""
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        t = (np.arange(overlap) + 0.5) / overlap
        ramp = np.sin(0.5 * math.pi * t) ** 2
        w[:overlap] = ramp
        w[tile - overlap:] *= ramp[::-1]
    return w


def blend_window(tile: int, overlap: int) -> np.ndarray:
    w = blend_window_1d(tile, overlap)
    return np.outer(w, w)


def weight_profile(layout: TileLayout) -> np.ndarray:
    """Sum of the 1-D windows of all tiles at each pixel of one axis.

    The 2-D window is separable and tiles sit on a regular grid, so the summed 2-D weight at
    (row, col) is ``profile_rows[row] * profile_cols[col]``: no need to accumulate it per tile.
    """
    w = blend_window_1d(layout.tile, layout.overlap)
    total = np.zeros(layout.length, dtype=np.float64)
    for s in layout.starts():
        a, b = max(s, 0), min(s + layout.tile, layout.length)
        total[a:b] += w[a - s:b - s]
    return total


def cast_output(values: np.ndarray, dtype, out: np.ndarray | None = None) -> np.ndarray:
    """Round and clip to the range of an integer type; plain cast for floats.

    With ``out`` the result goes there (``values``, float, is clipped in place on the way), so no
    temporary array is made.
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if out is None:
            return np.clip(np.rint(values), info.min, info.max).astype(dtype)
        np.clip(values, info.min, info.max, out=values)  # clipped then rounded: the same as rounded then clipped
        return np.rint(values, out=out, casting="unsafe")  # rounded straight into the integer block
    elif out is None:
        return values.astype(dtype)
    np.copyto(out, values, casting="unsafe")
    return out


class _Buffer:
    """One flat allocation reused as contiguous ``(bands, rows, width)`` arrays of any row count."""

    def __init__(self, bands: int, rows: int, width: int, dtype):
        self.bands, self.width = bands, width
        self.flat = np.empty(bands * rows * width, dtype=dtype)

    def view(self, rows: int) -> np.ndarray:
        return self.flat[: self.bands * rows * self.width].reshape(self.bands, rows, self.width)


def default_nodata(info: RasterInfo, out_dtype):
    nd = info.nodata[0] if info.nodata else None
    if nd is not None:
        return nd
    return float("nan") if np.issubdtype(np.dtype(out_dtype), np.floating) else None


def _accumulate(acc: np.ndarray, out: np.ndarray, x: int, width: int, weight: np.ndarray, overlap: int) -> None:
    """Add one tile's weighted output to the strip accumulator ``acc`` at column ``x``.

    Only the tile's border bands (``overlap`` wide) are shared with neighbours; its core has
    weight exactly 1 and no other contribution, so it is copied instead of multiplied and
    added (same values, bit for bit, at about half the cost of blending everything).
    """
    T = out.shape[-1]
    c0, c1 = max(0, x), min(width, x + T)
    o = overlap
    if o == 0 or T <= 2 * o:
        acc[:, :, c0:c1] += out[:, :, c0 - x:c1 - x] * weight[:, c0 - x:c1 - x]
        return
    # border bands: top and bottom rows across the full width, left and right columns in between
    for rows in (slice(0, o), slice(T - o, T)):
        acc[:, rows, c0:c1] += out[:, rows, c0 - x:c1 - x] * weight[rows, c0 - x:c1 - x]
    mid = slice(o, T - o)
    for a, b in ((x, x + o), (x + T - o, x + T)):
        a, b = max(a, 0), min(b, width)
        if b > a:
            acc[:, mid, a:b] += out[:, mid, a - x:b - x] * weight[mid, a - x:b - x]
    a, b = max(x + o, 0), min(x + T - o, width)
    if b > a:
        acc[:, mid, a:b] = out[:, mid, a - x:b - x]


def _run_batch(fn: TileFunction, strip: np.ndarray, strip_valid: np.ndarray, xs, x0: int, T: int,
               out_bands: int) -> np.ndarray:
    """``fn`` over the tiles of a row of tiles (``strip``, whose first column is raster column ``x0``) that
    start at columns ``xs``; its output as an array, refused when it is not ``(len(xs), out_bands, T, T)``."""
    batch = np.stack([strip[:, :, x - x0:x - x0 + T] for x in xs])
    vbatch = np.stack([strip_valid[:, x - x0:x - x0 + T] for x in xs])
    result = np.asarray(fn(batch, vbatch))
    shape = (len(xs), out_bands, T, T)
    if result.shape != shape:
        raise ModelFileError(f"The network returned tiles of shape {result.shape} where {shape} was expected: "
                             "the model does not fit this input or tile size.")
    return result


def _balanced(items: list, batch_size: int) -> list:
    """Split a row of tiles into batches of at most ``batch_size`` and near-equal size
    (19 tiles by 8 -> 7, 6, 6 rather than 8, 8, 3: a small last batch is slow per tile)."""
    n = max(1, math.ceil(len(items) / batch_size))
    bounds = [round(i * len(items) / n) for i in range(n + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]


def run_tiled(fn: TileFunction, src: RasterInfo, dst_path: str, *, bands: Sequence[int] | None = None,
              extra: Sequence[tuple] = (), out_bands: int | None = None, out_dtype="float32",
              tile: int = 256, overlap: int = 32, batch_size: int = 8, out_nodata="auto",
              fill_value: float = 0.0, descriptions: Sequence[str] | None = None, cog: bool = False,
              postprocess: Callable | None = None, progress: Progress = None,
              cancelled: CancelCheck = None, executor=None) -> str:
    """Apply ``fn`` to ``src`` tile by tile and write the blended result to ``dst_path``.

    ``fn(batch, valid)`` receives ``batch`` as float32 ``(B, C, tile, tile)`` (the selected
    ``bands`` of ``src`` followed by the bands of each ``extra`` ``(info, bands)`` raster,
    which must share ``src``'s grid) and ``valid`` as bool ``(B, tile, tile)`` (False where
    ``src`` is nodata; those input pixels hold ``fill_value``). It returns ``(B, out_bands,
    tile, tile)``. Output pixels where ``src`` is nodata are set to ``out_nodata``.

    ``postprocess(blended, y0, valid, inputs)``, if given, receives each finished block of rows as
    float64 ``(out_bands, rows, width)`` starting at raster row ``y0`` and returns the
    values to write (used, for example, to keep clear pixels exactly as they were); the
    tiler may round the returned array in place. ``blended`` is a reused buffer: copy what
    must outlive the call. ``inputs`` holds the selected ``bands`` of those rows as the tiler
    read them (float32, nodata replaced by ``fill_value``), or None when the tiles ran on an
    executor (read them again then).

    ``executor`` (:func:`open_executor`; None = here): where the batches of tiles run. On a Dask
    cluster ``fn`` is pickled and shipped to every worker once, and the inputs are read there by path;
    the post-processing and the writing stay here.
    """
    bands = list(bands) if bands is not None else list(range(1, src.band_count + 1))
    out_bands = out_bands or len(bands)
    if out_nodata == "auto":
        out_nodata = default_nodata(src, out_dtype)
    run = _TiledRun(fn, src, bands, list(extra), out_bands, np.dtype(out_dtype), TileLayout(src.height, tile, overlap),
                    TileLayout(src.width, tile, overlap), batch_size, fill_value, out_nodata, postprocess)
    writer = RasterWriter(dst_path, like=src, band_count=out_bands, dtype=out_dtype, nodata=out_nodata,
                          descriptions=descriptions, cog=cog, protect=[src.path] + [i.path for i, _ in extra])
    with steady_memory(), writer:
        if executor is None:
            run.execute(writer, progress, cancelled)
        else:
            run.execute_on(executor, writer, progress, cancelled)
    return dst_path


class _TiledRun:
    """The state of one :func:`run_tiled` call and its stages: read a strip of tiles, run the
    function over it in batches, then finish, post-process and queue the rows no later tile touches.

    The tiler opens its own handles on the inputs: they are read on a background thread, and
    a GDAL dataset must not be shared between threads.
    """

    def __init__(self, fn, src, bands, extra, out_bands, out_dtype, ly, lx, batch_size, fill_value, out_nodata,
                 postprocess):
        self.fn, self.src, self.bands, self.extra = fn, src, bands, extra
        self.out_bands, self.out_dtype, self.out_nodata = out_bands, out_dtype, out_nodata
        self.batch_size, self.fill_value, self.postprocess = batch_size, fill_value, postprocess
        self.ys, self.xs = ly.starts(), lx.starts()
        self.T, self.W, self.overlap = ly.tile, src.width, ly.overlap
        self.strip_w = self.xs[-1] + self.T - self.xs[0]
        self.weight = blend_window(self.T, self.overlap)
        self.row_sum, self.col_sum = weight_profile(ly), weight_profile(lx)
        self.total_tiles = len(self.ys) * len(self.xs)
        self.src_nodata = [src.nodata[b - 1] for b in bands]
        self.datasets = [open_raster(src.path, src.name)] + [open_raster(i.path, i.name) for i, _ in extra]
        n_in = len(bands) + sum(len(b) for _, b in extra)
        T, W = self.T, self.W
        # Every strip-sized array is allocated once and reused: two input strips (the reader fills
        # one while tiles are cut from the other), the blend and its weights, and two output blocks
        # (one may still be queued for writing). Memory stays fixed per run, and arrays beyond
        # glibc's 32 MB mmap threshold (strips wider than about 4096 px) are not mapped and
        # page-faulted again for every row of tiles (see runtime.steady_memory for the network).
        self.strips = [_Buffer(n_in, T, self.strip_w, np.float32) for _ in range(2)]
        self.blend_buf, self.weight_buf = _Buffer(out_bands, T, W, np.float64), _Buffer(1, T, W, np.float64)
        self.out_bufs = [_Buffer(out_bands, T, W, out_dtype) for _ in range(2)]
        self.acc = np.zeros((out_bands, T, W), dtype=np.float64)
        self.pending_writes: list = []
        self.done_tiles = 0

    def read_strip(self, y: int, buf: np.ndarray) -> tuple:
        """One row of tiles (mirror-padded outside the raster) and its validity; nodata -> ``fill_value``."""
        window = Window(self.xs[0], y, self.strip_w, self.T)
        nb = len(self.bands)
        main = read_padded(self.datasets[0], window, self.bands, out=buf[:nb])
        valid = valid_mask(main, self.src_nodata)
        pos = nb
        for ds, (_, b) in zip(self.datasets[1:], self.extra):
            read_padded(ds, window, b, out=buf[pos:pos + len(b)])
            pos += len(b)
        if not valid.all():
            buf[:nb, ~valid] = self.fill_value
        return buf, valid

    def run_strip(self, strip: np.ndarray, strip_valid: np.ndarray, progress, cancelled) -> None:
        """Run the function over one row of tiles in balanced batches; blend the outputs into the accumulator."""
        T, x_first = self.T, self.xs[0]
        for bx in _balanced(self.xs, self.batch_size):
            check_cancelled(cancelled)
            result = _run_batch(self.fn, strip, strip_valid, bx, x_first, T, self.out_bands)
            for x, out in zip(bx, result):
                _accumulate(self.acc, out, x, self.W, self.weight, self.overlap)
            self.done_tiles += len(bx)
            report(progress, self.done_tiles / self.total_tiles)

    def finish_rows(self, k: int, strip, strip_valid: np.ndarray, writer: RasterWriter, write_pool) -> None:
        """Rows ``[y, y_next)`` of strip ``k`` (its input values, or None) receive no more contributions:
        normalise, post-process, queue them."""
        y, T, W, x_first = self.ys[k], self.T, self.W, self.xs[0]
        y_next = self.ys[k + 1] if k + 1 < len(self.ys) else y + T
        r0, r1 = max(y, 0), min(y_next, self.src.height)
        if r1 > r0:
            n, rows = r1 - r0, slice(r0 - y, r1 - y)
            weights = np.multiply.outer(self.row_sum[r0:r1], self.col_sum, out=self.weight_buf.view(n)[0])
            blended = np.divide(self.acc[:, rows], weights, out=self.blend_buf.view(n))
            valid_rows = strip_valid[rows, -x_first:-x_first + W]
            if self.postprocess is not None:
                inputs = None if strip is None else strip[:len(self.bands), rows, -x_first:-x_first + W]
                blended = self.postprocess(blended, r0, valid_rows, inputs)
            if len(self.pending_writes) >= 2:
                self.pending_writes[-2].result()  # the last block in this buffer is on disk
            block = cast_output(blended, self.out_dtype, out=self.out_bufs[len(self.pending_writes) % 2].view(n))
            if self.out_nodata is not None and not valid_rows.all():
                block[:, ~valid_rows] = self.out_nodata
            self.pending_writes.append(write_pool.submit(writer.write, block, 0, r0))
        shift = y_next - y
        if shift < T:
            self.acc[:, : T - shift] = self.acc[:, shift:]
        self.acc[:, max(T - shift, 0):] = 0

    def execute(self, writer: RasterWriter, progress, cancelled) -> None:
        """Read strip k+1 and write finished rows on background threads while the function runs on strip k."""
        io_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudfree-read")
        write_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudfree-write")
        T, ys = self.T, self.ys
        try:
            next_strip = io_pool.submit(self.read_strip, ys[0], self.strips[0].view(T))
            for k in range(len(ys)):
                check_cancelled(cancelled)
                strip, strip_valid = next_strip.result()
                if k + 1 < len(ys):  # into the other buffer, whose strip is finished
                    next_strip = io_pool.submit(self.read_strip, ys[k + 1], self.strips[(k + 1) % 2].view(T))
                self.run_strip(strip, strip_valid, progress, cancelled)
                self.finish_rows(k, strip, strip_valid, writer, write_pool)
            for f in self.pending_writes:  # every block must be on disk before the file is committed
                f.result()
        finally:
            # on failure: drop queued reads/writes, wait for running ones, then the writer deletes its file
            io_pool.shutdown(wait=True, cancel_futures=True)
            write_pool.shutdown(wait=True, cancel_futures=True)
            self.datasets.clear()

    def execute_on(self, executor, writer: RasterWriter, progress, cancelled) -> None:
        """The run with each batch of tiles computed by ``executor`` (see the module docstring).

        The batches are those of :meth:`execute`, and their tiles are blended into the accumulator in
        the same order, so every sum is the same; the rows' validity is put together from the tiles'.
        """
        T, x_first = self.T, self.xs[0]
        batches = _balanced(self.xs, self.batch_size)
        items = [(y, tuple(bx)) for y in self.ys for bx in batches]
        results = executor.map_in_order(_BatchJob(self), items, ahead=len(batches), progress=progress,
                                        cancelled=cancelled)
        strip_valid = np.empty((T, self.strip_w), dtype=bool)
        write_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudfree-write")
        try:
            for k in range(len(self.ys)):
                for bx in batches:
                    result, valid = next(results)
                    for x, out in zip(bx, result):
                        _accumulate(self.acc, out, x, self.W, self.weight, self.overlap)
                    strip_valid[:, bx[0] - x_first:bx[-1] + T - x_first] = valid
                self.finish_rows(k, None, strip_valid, writer, write_pool)
            for f in self.pending_writes:
                f.result()
        finally:
            results.close()  # pending tasks are cancelled on failure or cancel
            write_pool.shutdown(wait=True, cancel_futures=True)
            self.datasets.clear()


def padded_positions(start: int, length: int, size: int) -> np.ndarray:
    """Where :func:`.raster.read_padded` takes each pixel of ``[start, start + length)`` along an axis of ``size``
    pixels: the part inside the raster as it is, the rest mirrored as numpy pads it ("reflect"; "edge" for a
    part of one pixel), computed by padding the positions themselves."""
    a, b = max(start, 0), min(start + length, size)
    return np.pad(np.arange(a, b), (a - start, start + length - b), mode="reflect" if b - a > 1 else "edge")


class _BatchJob:
    """What a worker needs to compute batches of tiles of one scaled-out :func:`run_tiled`; shipped once.

    Called with ``(y, xs)``, it reads the tiles' columns of the row of tiles at ``y`` from every input,
    fills nodata as :meth:`_TiledRun.read_strip` does, runs the function and returns ``(tiles, valid)``.
    Each thread opens its own datasets. Rasters in GDAL's memory file system (the coarse fill prior)
    cannot be seen from another process, so their files travel with the job and are removed again
    when the worker drops it.
    """

    def __init__(self, run: _TiledRun):
        self.fn, self.T, self.out_bands = run.fn, run.T, run.out_bands
        self.x_first, self.strip_w = run.xs[0], run.strip_w
        self.sources = [(run.src, run.bands)] + list(run.extra)
        self.src_nodata, self.fill_value = run.src_nodata, run.fill_value
        self._local = threading.local()

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k != "_local"}
        state["memory_files"] = memory_files([info.path for info, _ in self.sources])
        return state

    def __setstate__(self, state: dict) -> None:
        files = state.pop("memory_files")
        self.__dict__.update(state)
        self._local = threading.local()
        written = [path for path, data in files.items() if gdal.VSIStatL(path) is None]
        for path in written:
            gdal.FileFromMemBuffer(path, files[path])
        weakref.finalize(self, _unlink, written)

    def datasets(self) -> list:
        if not hasattr(self._local, "datasets"):
            self._local.datasets = [open_raster(info.path, info.name) for info, _ in self.sources]
        return self._local.datasets

    def read(self, y: int, x0: int, x1: int) -> tuple:
        """Columns ``[x0, x1)`` of the row of tiles at ``y`` (every input) and their validity: the same pixels as
        the in-process strip read, mirrored past the edges as it mirrors them."""
        width, height = self.sources[0][0].width, self.sources[0][0].height
        rows = padded_positions(y, self.T, height)
        cols = padded_positions(self.x_first, self.strip_w, width)[x0 - self.x_first:x1 - self.x_first]
        r0, c0 = int(rows.min()), int(cols.min())
        box = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
        parts = []
        for ds, (_, bands) in zip(self.datasets(), self.sources):
            block = read_padded(ds, box, bands)
            parts.append(block[np.ix_(range(len(bands)), rows - r0, cols - c0)])
        valid = valid_mask(parts[0], self.src_nodata)
        if not valid.all():
            parts[0][:, ~valid] = self.fill_value
        return np.concatenate(parts), valid

    def __call__(self, item: tuple) -> tuple:
        y, xs = item
        strip, valid = self.read(y, xs[0], xs[-1] + self.T)
        return _run_batch(self.fn, strip, valid, xs, xs[0], self.T, self.out_bands), valid


def memory_files(paths) -> dict:
    """``{path: bytes}`` of every file in GDAL's memory file system (``/vsimem/``) the rasters ``paths`` are
    made of (a VRT's sources too)."""
    files = {}
    for path in paths:
        if str(path).startswith("/vsimem/"):
            for name in open_raster(path).GetFileList() or []:
                if name.startswith("/vsimem/") and name not in files:
                    files[name] = _read_memory_file(name)
    return files


def _read_memory_file(path: str) -> bytes:
    f = gdal.VSIFOpenL(path, "rb")
    try:
        gdal.VSIFSeekL(f, 0, 2)
        size = gdal.VSIFTellL(f)
        gdal.VSIFSeekL(f, 0, 0)
        return bytes(gdal.VSIFReadL(1, size, f))
    finally:
        gdal.VSIFCloseL(f)


def _unlink(paths: list) -> None:
    for path in paths:
        if gdal.VSIStatL(path) is not None:
            gdal.Unlink(path)
