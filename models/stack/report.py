"""The report of the cloud-free chain: what each step did, as JSON or as a self-contained HTML page.

:func:`chain_summary` gathers the figures: the target's clouds (counted from its mask), every other
layer as :func:`.prepare.save_summary` recorded it (registered or placed by georeferencing, shift,
rotation, RMS, its own clouds), the removal method, and a check of the result against the target,
block by block: how many pixels changed inside and outside the mask (a removal that keeps clear pixels
changes none outside). :func:`write_chain_report` writes them atomically, as JSON when the path ends in
``.json``, else as an HTML page (the one report writer, :mod:`..reports`) with a before / after / mask
quick-look that shares one stretch.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..atomic import write_text
from ..detection import MaskCounts
from ..errors import InputError
from ..grids import grid_difference
from ..normalization import stretch, stretch_limits
from ..raster import RasterInfo, read_decimated, read_window
from ..reports import Section, metrics_block, new_figure, write_report
from ..runtime import CancelCheck, check_cancelled
from ..windows import iter_windows

QUICKLOOK_SIZE = 512  # pixels along the longer side of the report's pictures


def chain_summary(target: RasterInfo, mask: RasterInfo, cloud_free: RasterInfo, prepared: str | None,
                  method: str, mask_values=(1, 2), cancelled: CancelCheck = None, removal: str | None = None) -> dict:
    """The figures of one chain run (see the module docstring); ``prepared``: the JSON file
    :func:`.prepare.save_summary` wrote, or None; ``removal``: the removal's JSON report (removeclouds REPORT:
    the method used, the provenance legend and counts, the self-check), or None."""
    layers = read_prepared(prepared) if prepared else None
    removed = read_prepared(removal) if removal else None
    for info in (mask, cloud_free):
        if grid_difference(info, target) is not None:
            raise InputError(f"Layer '{info.name}' is not on the grid of '{target.name}' "
                             f"({grid_difference(info, target)}).")
    counts, changed = compare(target, mask, cloud_free, tuple(mask_values), cancelled)
    return {"target": {"name": target.name, "path": target.path, "width": target.width, "height": target.height,
                       "bands": target.band_count, "crs": target.crs_label()},
            "target_clouds": {"cloud_fraction": counts.cloud_fraction, "shadow_fraction": counts.shadow_fraction,
                              "valid_pixels": counts.valid, "nodata_pixels": counts.nodata, "mask": mask.path},
            "other_layers": (layers or {}).get("layers", []),
            "registration_mode": (layers or {}).get("registration_mode"),
            "method": method,
            "removal": removal_figures(removed) if removed else None,
            "result": {"path": cloud_free.path, "mask_values": list(mask_values), **changed}}


def removal_figures(report: dict) -> dict:
    """What the chain report keeps of the removal's report: the method used, the provenance (legend and pixel
    counts per code), the self-check and the time taken."""
    counts = report.get("counts") or report.get("provenance_counts") or {}
    legend = {str(k): v for k, v in (report.get("legend") or {}).items()}
    return {"method": report.get("method"), "provenance": {legend.get(str(k), str(k)): n for k, n in counts.items()},
            "self_check": report.get("self_check"), "seconds": report.get("seconds")}


def read_prepared(path: str) -> dict:
    """The prepared layers' summary, or an :class:`InputError` naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(f"The prepared dates summary '{path}' cannot be read ({exc}).") from exc


def compare(target: RasterInfo, mask: RasterInfo, cloud_free: RasterInfo, mask_values: tuple,
            cancelled: CancelCheck = None, block: int = 1024) -> tuple:
    """``(MaskCounts of the mask, {changed_inside, changed_outside, masked_pixels})``: pixels where any band of
    ``cloud_free`` differs from ``target`` (NaN equals NaN), inside and outside the mask values."""
    comparable = cloud_free.band_count == target.band_count  # else the removal kept only some bands
    counts, inside, outside, masked = MaskCounts(), 0, 0, 0
    for window in iter_windows(target.width, target.height, block):
        check_cancelled(cancelled)
        m = read_window(mask.dataset(), window, [1], dtype=np.int64)[0]
        counts.add(np.clip(m, 0, 255).astype(np.uint8))
        flagged = np.isin(m, mask_values)
        masked += int(flagged.sum())
        if comparable:
            a = read_window(target.dataset(), window, dtype=np.float64)
            b = read_window(cloud_free.dataset(), window, dtype=np.float64)
            differs = ((a != b) & ~(np.isnan(a) & np.isnan(b))).any(axis=0)
            inside += int((differs & flagged).sum())
            outside += int((differs & ~flagged).sum())
    if not comparable:
        return counts, {"changed_inside": None, "changed_outside": None, "masked_pixels": masked,
                        "not_compared": f"'{cloud_free.name}' has {cloud_free.band_count} band(s), the target "
                                        f"{target.band_count}"}
    return counts, {"changed_inside": inside, "changed_outside": outside, "masked_pixels": masked}


def write_chain_report(path: str, summary: dict, pictures: tuple = (), rgb=(3, 2, 1)) -> str:
    """Write ``summary`` to ``path``: JSON for ``.json``, else HTML; ``pictures`` = (target, cloud-free, mask)
    RasterInfo for the HTML quick-look (``rgb``: 1-based bands of the target shown as red, green, blue)."""
    if str(path).lower().endswith(".json"):
        return write_text(path, json.dumps(summary, indent=1, default=str))
    return write_report(path, "Cloud-free image from a stack", report_sections(summary, pictures, rgb),
                        intro=f"Target '{summary['target']['name']}', method: {summary['method']}.")


def report_sections(summary: dict, pictures: tuple, rgb) -> list:
    target, clouds, result = summary["target"], summary["target_clouds"], summary["result"]
    sections = [
        Section("Target date", text=f"{target['name']}: {target['width']} x {target['height']} px, {target['bands']} "
                f"band(s), {target['crs']}. Clouds {100 * clouds['cloud_fraction']:.1f} %, shadows "
                f"{100 * clouds['shadow_fraction']:.1f} % of {clouds['valid_pixels']} valid pixels."),
        Section("Other dates and radar", preformatted=layers_table(summary["other_layers"])),
        Section("Cloud removal", text=f"Method: {summary['method']}. {result['masked_pixels']} pixels have a mask "
                f"value in {result['mask_values']}; " + (
                    f"{result['changed_inside']} of them changed, and {result['changed_outside']} pixels outside "
                    "the mask." if result["changed_inside"] is not None else
                    f"the result was not compared with the target ({result['not_compared']}).")),
    ]
    removal = summary.get("removal")
    if removal:
        lines = [f"{label}: {n} px" for label, n in removal["provenance"].items()]
        check = removal.get("self_check") or {}
        if "temporal" in check:
            t, c = check["temporal"], check["matched_copy"]
            lines.append(f"self-check on {check['pixels']} hidden clear pixels: PSNR {t['psnr']:.2f} dB (90 % "
                         f"{t['psnr_interval'][0]:.2f}-{t['psnr_interval'][1]:.2f}), SSIM {t['ssim']:.3f}, SAM "
                         f"{t['sam']:.2f} deg; matched copy {c['psnr']:.2f} dB")
        elif check.get("skipped"):
            lines.append(f"self-check skipped: {check['skipped']}")
        sections.append(Section(f"Where the pixels came from (method {removal['method']})",
                                preformatted="\n".join(lines) or "no provenance recorded"))
    if len(pictures) == 3:
        sections.append(Section("Before, after and the mask", figure=quicklook(*pictures, rgb=rgb)))
    sections.append(Section("All figures", preformatted=metrics_block(summary)))
    return sections


def layers_table(layers: list) -> str:
    """One line per prepared layer: how it reached the target grid, its figures and its clouds."""
    lines = [f"{'layer':<28} {'kind':<8} {'aligned by':<15} {'shift x,y (px)':>16} {'RMS_LOO':>8} {'N_red':>6} "
             f"{'cloud %':>8}"]
    for layer in layers:
        reg, det = layer.get("registration") or {}, layer.get("detection") or {}
        shift = f"{reg['shift_x']:+.2f},{reg['shift_y']:+.2f}" if reg else "-"
        lines.append(f"{os.path.basename(layer['name'])[:28]:<28} {layer['kind']:<8} {layer['aligned_by']:<15} "
                     f"{shift:>16} {reg.get('rms_loo', float('nan')):>8.3f} {reg.get('n_red', 0):>6} "
                     + (f"{100 * det['cloud_fraction']:>8.1f}" if det else f"{'-':>8}")
                     + (f"\n    {layer['note']}" if layer.get("note") else ""))
    return "\n".join(lines) if layers else "none"


#: grey level of each mask code in the picture: clear black, shadow grey, cloud white, nodata dark grey
MASK_GREYS = {0: 0.0, 1: 1.0, 2: 0.55, 255: 0.2}


def quicklook(target: RasterInfo, cloud_free: RasterInfo, mask: RasterInfo, rgb=(3, 2, 1)):
    """A figure: the target and the cloud-free image with one shared stretch (the cloud-free image's, so that the
    ground is readable and clouds saturate), and the mask."""
    scale = min(1.0, QUICKLOOK_SIZE / max(target.width, target.height))
    size = (max(1, round(target.width * scale)), max(1, round(target.height * scale)))
    bands = [b for b in rgb if b <= min(target.band_count, cloud_free.band_count)]
    bands = bands if len(bands) == 3 else [1]
    before, after = (read_decimated(i, bands, size=size).transpose(1, 2, 0) for i in (target, cloud_free))
    lo, hi = stretch_limits(after, (2, 98))
    codes = read_decimated(mask, [1], size=size, dtype=None)[0]
    greys = np.full(codes.shape, MASK_GREYS[255])
    for code, grey in MASK_GREYS.items():
        greys[codes == code] = grey
    fig = new_figure(12, 4.4)
    for k, (image, title) in enumerate(((stretch(before, lo, hi), "target"), (stretch(after, lo, hi), "cloud-free"),
                                        (greys, "mask: cloud white, shadow grey"))):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.imshow(image.squeeze(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    return fig
