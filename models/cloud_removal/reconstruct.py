"""reconstruct_from_dates: a cloudy raster's masked pixels rebuilt from every other date clear there.

The recipe, stage by stage:

1. :func:`.dates.open_target` and :func:`.guides.open_optical`: the target, its mask and the optical
   guides on the target's grid (lazy warps, nothing loaded);
2. :func:`.dates.scene_statistics`: per guide the scene-wide line (:class:`.temporal.SceneFit`, from
   decimated reads) and the sub-pixel shift onto the target (:mod:`.coregister`, from full
   resolution chips), computed once, so no block sees statistics of its own;
3. :func:`.dates.predict_block`: per block with a halo, each date co-registered and fitted locally, the
   dates mixed (:mod:`.temporal`); :func:`write_outputs` writes the reconstruction, the provenance
   (:mod:`.provenance`) and the predicted absolute error block by block;
4. pixels no date sees get the unmixing fill (:func:`.baselines.fill_model`), only when there are any;
5. every output is renamed into place at the end: a cancelled or failed run leaves none.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..raster import RasterInfo, RasterWriter, raster_info, refuse_inputs
from ..runtime import CancelCheck, Progress, check_cancelled, report
from ..tiling import cast_output
from ..windows import iter_windows
from . import provenance
from .dates import Scene, Target, open_target, predict_block, read_block, scene_statistics
from .guides import close_guides, open_optical, split_guides
from .selfcheck import DIFFICULTY_BINS, bin_counts, check_scene
from .temporal import ERROR_SCALE, INTERVAL_80, TemporalParams


@dataclass(frozen=True)
class TemporalOptions:
    """How to reconstruct: the regression (:class:`.temporal.TemporalParams`), whether guides are
    co-registered to the target first, the block size and the optional extra outputs' paths."""

    params: TemporalParams = TemporalParams()
    coregister: bool = True
    block: int = 512
    provenance: str | None = None
    uncertainty: str | None = None
    self_check: object = None      # a selfcheck.SelfCheckOptions: run the self-check beside (outputs unchanged)


def check_paths(out_path: str, options: TemporalOptions, inputs: list) -> None:
    """No two outputs alike and no output equal to an input (the target, its mask, a guide or its mask)."""
    outs = [os.path.abspath(str(p)) for p in (out_path, options.provenance, options.uncertainty) if p]
    if len(set(outs)) != len(outs):
        raise InputError("The reconstruction, its provenance and its predicted error need three different files.")
    for o in outs:
        refuse_inputs(o, inputs)


@dataclass
class _Writers:
    out: RasterWriter
    provenance: RasterWriter | None
    error: RasterWriter | None
    need_fill: RasterWriter | None = None

    def all(self) -> list:
        return [w for w in (self.out, self.provenance, self.error, self.need_fill) if w is not None]


def _open_writers(target: Target, scratch: str, options: TemporalOptions, dates: list) -> _Writers:
    info, nb = target.info, len(target.bands)
    names = [info.descriptions[b - 1] if b <= len(info.descriptions) else "" for b in target.bands]
    nodata = target.nodata[0] if target.nodata else None
    out = RasterWriter(os.path.join(scratch, "reconstructed.tif"), like=info, band_count=nb, dtype=info.dtype,
                       nodata=nodata, descriptions=names)
    prov = RasterWriter(options.provenance, like=info, band_count=1, dtype="uint8", nodata=provenance.NODATA) \
        if options.provenance else None
    if prov is not None:   # styled before any block is written (GDAL 3.10 refuses a colour table after)
        provenance.style_band(prov.ds.GetRasterBand(1), [d.entry for d in dates])
    err = RasterWriter(options.uncertainty, like=info, band_count=nb, dtype="float32", nodata=float("nan"),
                       descriptions=[f"predicted absolute error: {n or f'band {b}'}" for n, b in
                                     zip(names, target.bands)]) if options.uncertainty else None
    fill = RasterWriter(os.path.join(scratch, "need_fill.tif"), like=info, band_count=1, dtype="uint8")
    return _Writers(out, prov, err, fill)


def write_outputs(target: Target, scene: Scene, writers: _Writers, options: TemporalOptions, progress: Progress,
                  cancelled: CancelCheck, share: float = 1.0) -> dict:
    """Every block reconstructed and written; returns pixel counts per provenance code and the counts of
    reconstructed pixels per difficulty bin (:func:`.selfcheck.bin_counts`, for the self-check)."""
    info, params = target.info, options.params
    counts: dict = {}
    difficulty = np.zeros(len(DIFFICULTY_BINS))
    windows = list(iter_windows(info.width, info.height, options.block))
    for i, w in enumerate(windows):
        check_cancelled(cancelled)
        block = read_block(target, scene, w, params)
        r, c = block.inner
        native, valid, cloudy = block.native[:, r, c], block.valid[r, c], block.cloudy[r, c]
        out, code = native.copy(), np.where(valid, provenance.CLEAR, provenance.NODATA).astype(np.uint8)
        error = np.where(valid, 0.0, np.nan)[None].repeat(len(target.bands), axis=0)
        if cloudy.any():
            combined = predict_block(block, scene, params)
            value, err, source = combined.value[:, r, c], combined.error[:, r, c], combined.source[r, c]
            seen = cloudy & np.isfinite(value).all(axis=0)
            out[:, seen] = cast_output(value[:, seen], info.dtype)
            error[:, seen] = err[:, seen]
            code[seen] = (source[seen] + 1).astype(np.uint8)
            difficulty += bin_counts(err[:, seen], scene.spread)
            unseen = cloudy & ~seen
            code[unseen] = provenance.FILL
            error[:, unseen] = (ERROR_SCALE * scene.spread)[:, None]
            writers.need_fill.write(unseen.astype(np.uint8), w.col_off, w.row_off)
        else:
            writers.need_fill.write(np.zeros((w.height, w.width), np.uint8), w.col_off, w.row_off)
        writers.out.write(out, w.col_off, w.row_off)
        if writers.provenance:
            writers.provenance.write(code, w.col_off, w.row_off)
        if writers.error:
            writers.error.write(error.astype(np.float32), w.col_off, w.row_off)
        values, n = np.unique(code, return_counts=True)
        for v, k in zip(values.tolist(), n.tolist()):
            counts[v] = counts.get(v, 0) + k
        report(progress, share * (i + 1) / len(windows), "Reconstructing from the other dates")
    return counts, difficulty


def _fill(reconstructed: str, need_fill: str, out_path: str, nb: int, scratch: str, progress, cancelled) -> None:
    """The unmixing fill of the pixels no date sees, from the reconstructed raster around them."""
    from .baselines import fill_model
    from .infer import remove_clouds

    remove_clouds(raster_info(reconstructed), out_path, fill_model(scratch, nb), bands=list(range(1, nb + 1)),
                  mask=raster_info(need_fill), mask_values=(1,), progress=progress, cancelled=cancelled)


def reconstruct_from_dates(src: RasterInfo, out_path: str, guides: list, *, bands=None, mask: RasterInfo | None,
                           mask_values=(1, 2), options: TemporalOptions = TemporalOptions(),
                           progress: Progress = None, cancelled: CancelCheck = None) -> dict:
    """Rebuild the pixels of ``src`` that ``mask`` marks (values ``mask_values``) from the optical guides.

    Every other pixel is copied bit for bit. ``options.provenance`` (uint8) and ``options.uncertainty``
    (float32, one band per band, the predicted absolute error in the input's units; 0 on clear pixels) are
    written on the input's grid when given. Radar guides are not used by this method. Returns a summary
    (dates and their shifts, pixel counts per provenance code, the legend, seconds)."""
    started = time.perf_counter()
    optical, radar = split_guides(guides)
    if not optical:
        raise InputError(f"Reconstruction of '{src.name}' from other dates needs at least one other date of the "
                         "same place (an optical guide).")
    if len(optical) > provenance.MAX_GUIDES:
        raise InputError(f"At most {provenance.MAX_GUIDES} other dates can be used at once, not {len(optical)}.")
    check_paths(out_path, options, [src.path, mask.path if mask else None]
                + [g.path for g in optical] + [g.mask for g in optical])
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cloudfree-dates-", dir=folder) as scratch:
        target = open_target(src, bands, mask, mask_values, scratch)
        dates = open_optical(src, target.bands, optical, scratch)
        writers = None
        try:
            report(progress, 0.0, "Other dates: scene-wide fits and co-registration")
            scene = scene_statistics(target, dates, options.coregister, cancelled)
            writers = _open_writers(target, scratch, options, dates)
            counts, difficulty = write_outputs(target, scene, writers, options, progress, cancelled, share=0.95)
            check = None
            if options.self_check is not None:
                real = difficulty / difficulty.sum() if difficulty.sum() else difficulty
                check = check_scene(target, scene, options.self_check, options.params, real, None, cancelled)
            for w in (writers.out, writers.need_fill):
                w.commit()
            if counts.get(provenance.FILL):
                _fill(writers.out.path, writers.need_fill.path, out_path, len(target.bands), scratch, None, cancelled)
            else:
                os.replace(writers.out.path, out_path)
            for w in (writers.provenance, writers.error):
                if w is not None:
                    w.commit()
        except BaseException:
            for w in (writers.all() if writers else []):
                if not w.target.done:
                    w.abort()
            raise
        finally:
            close_guides(dates)
    report(progress, 1.0, "Reconstruction done")
    return {"output": out_path, "method": "temporal", "provenance": options.provenance,
            "uncertainty": options.uncertainty, "seconds": time.perf_counter() - started,
            "dates": [d.entry for d in dates], "radar_guides_ignored": len(radar),
            "counts": {int(k): int(v) for k, v in sorted(counts.items())},
            "legend": provenance.legend([d.entry for d in dates]),
            "error_scale": ERROR_SCALE, "interval_80": INTERVAL_80, "params": vars(options.params),
            "self_check": check}
