"""Which cloudy/clear pairs a training run learns from: pairs listed in a CSV file, laid out in a
folder, or given as two matched lists of rasters, turned into paired training sources.

- CSV (:func:`pairs_in_csv`): one pair a line, ``cloudy,clear[,mask]``, paths relative to the
  CSV file (or absolute); an optional header line ``cloudy,clear[,mask]``; empty lines and
  lines starting with ``#`` are skipped.
- Folder (:func:`pairs_in_folder`): ``cloudy/`` and ``clear/`` subfolders whose rasters are
  matched by file name without its extension; an optional ``mask/`` subfolder gives a pair its
  mask by the same name. The names public paired benchmarks use are understood too (any case):
  ``cloud``, ``hazy``, ``input``... for the cloudy images and ``label``, ``gt``, ``ground_truth``,
  ``target``, ``clean``... for the clear ones (:data:`FOLDER_NAMES`); images may be PNG or JPEG,
  which GDAL reads (without georeferencing: pixel coordinates).

Each pair lies on its own grid (cloudy, clear and mask of one pair share it); pairs may differ in
size, place and grid.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Sequence

from ..errors import InputError
from .sources import TrainingSource

RASTER_EXTENSIONS = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".hdf", ".h5", ".bil", ".dat",
                     ".png", ".jpg", ".jpeg", ".bmp")
HEADER = ("cloudy", "clear", "mask")
#: subfolder names of a pairs folder, by role, in order of preference (compared in lower case)
FOLDER_NAMES = {
    "cloudy": ("cloudy", "cloud", "clouds", "hazy", "haze", "input", "inputs", "source"),
    "clear": ("clear", "cloudless", "cloud_free", "cloudfree", "clean", "label", "labels", "gt", "ground_truth",
              "groundtruth", "target", "targets", "reference"),
    "mask": ("mask", "masks", "cloud_mask", "cloud_masks"),
}


@dataclass(frozen=True)
class PairFiles:
    """One cloudy/clear pair (and its optional cloud mask) as file paths, with a name for reports."""

    cloudy: str
    clear: str
    mask: str | None = None
    name: str = ""


def read_pairs(path: str) -> list:
    """The pairs a CSV file or a folder lists (:class:`PairFiles`); :class:`InputError` naming the
    file and the line or name for anything that does not fit."""
    if os.path.isdir(path):
        return pairs_in_folder(path)
    if not os.path.isfile(path):
        raise InputError(f"Pairs file '{path}' does not exist (give a CSV file cloudy,clear[,mask] or a folder with "
                         "cloudy/ and clear/ subfolders).")
    return pairs_in_csv(path)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def pairs_in_csv(path: str) -> list:
    """``cloudy,clear[,mask]`` a line, paths relative to the CSV file."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"Pairs file '{path}' cannot be read as CSV ({exc}).") from exc
    pairs = []
    for line, row in enumerate(rows, start=1):
        fields = [v.strip() for v in row]
        if not any(fields) or fields[0].startswith("#"):
            continue
        if not pairs and tuple(v.lower() for v in fields[:2]) == HEADER[:2]:
            continue  # the header line
        while fields and not fields[-1]:
            fields.pop()
        if len(fields) not in (2, 3):
            raise InputError(f"Pairs file '{path}', line {line}: expected cloudy,clear[,mask]; found "
                             f"{len(fields)} field(s).")
        paths = [p if os.path.isabs(p) else os.path.join(folder, p) for p in fields]
        for p in paths:
            if not os.path.isfile(p):
                raise InputError(f"Pairs file '{path}', line {line}: the raster '{p}' does not exist.")
        pairs.append(PairFiles(paths[0], paths[1], paths[2] if len(paths) == 3 else None, _stem(paths[0])))
    if not pairs:
        raise InputError(f"Pairs file '{path}' lists no pair (one line cloudy,clear[,mask] per pair).")
    return pairs


def _rasters(folder: str) -> dict:
    """The rasters of ``folder`` by file name without extension."""
    return {_stem(name): os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.lower().endswith(RASTER_EXTENSIONS) and os.path.isfile(os.path.join(folder, name))}


def role_folders(folder: str) -> dict:
    """``{role: subfolder}`` for the roles of :data:`FOLDER_NAMES` found in ``folder`` (first name that fits)."""
    present = {name.lower(): os.path.join(folder, name) for name in os.listdir(folder)
               if os.path.isdir(os.path.join(folder, name))}
    found = {}
    for role, names in FOLDER_NAMES.items():
        for name in names:
            if name in present:
                found[role] = present[name]
                break
    return found


def pairs_in_folder(folder: str) -> list:
    """Rasters of ``cloudy/`` and ``clear/`` (or their synonyms) matched by name, masks from ``mask/``."""
    sub = role_folders(folder)
    missing = [role for role in ("cloudy", "clear") if role not in sub]
    if missing:
        raise InputError(f"Pairs folder '{folder}' has no {' or '.join(m + '/' for m in missing)} subfolder "
                         "(it needs cloudy/ and clear/, or names such as cloud/ and label/, with rasters matched "
                         "by file name).")
    cloudy, clear = _rasters(sub["cloudy"]), _rasters(sub["clear"])
    unmatched = sorted(set(cloudy) ^ set(clear))
    if unmatched:
        raise InputError(f"Pairs folder '{folder}': {', '.join(unmatched[:5])} "
                         f"{'is' if len(unmatched) == 1 else 'are'} not in both {os.path.basename(sub['cloudy'])}/ "
                         f"and {os.path.basename(sub['clear'])}/ (pairs are matched by file name).")
    if not cloudy:
        raise InputError(f"Pairs folder '{folder}' holds no raster in {os.path.basename(sub['cloudy'])}/ and "
                         f"{os.path.basename(sub['clear'])}/.")
    masks = _rasters(sub["mask"]) if "mask" in sub else {}
    return [PairFiles(cloudy[n], clear[n], masks.get(n), n) for n in sorted(cloudy)]


def match_layers(cloudy: Sequence[str], clear: Sequence[str], masks: Sequence[str] | None = None,
                 names: Sequence[str] | None = None) -> list:
    """Pairs from two lists of rasters matched by order (and optionally one mask per pair)."""
    if len(cloudy) != len(clear):
        raise InputError(f"{len(cloudy)} cloudy raster(s) and {len(clear)} clear raster(s) were given: give one "
                         "clear raster per cloudy raster, in the same order.")
    if masks and len(masks) != len(cloudy):
        raise InputError(f"{len(masks)} mask(s) for {len(cloudy)} cloudy/clear pair(s): give one mask per pair, "
                         "in the same order, or none.")
    names = list(names) if names else [_stem(c) for c in cloudy]
    return [PairFiles(c, k, masks[i] if masks else None, names[i]) for i, (c, k) in enumerate(zip(cloudy, clear))]


def pair_sources(pairs: Sequence[PairFiles], *, bands=None, cloud_values=(1, 2)) -> list:
    """Paired :class:`~.sources.TrainingSource` objects, one a pair, with unique names; a pair whose cloudy and
    clear rasters differ in band count is refused by name."""
    from ..raster import raster_info

    sources, seen = [], {}
    for p in pairs:
        both = os.path.isfile(p.cloudy) and os.path.isfile(p.clear)  # (a missing file is reported when opened)
        counts = (raster_info(p.cloudy).band_count, raster_info(p.clear).band_count) if both else (0, 0)
        if counts[0] != counts[1]:
            raise InputError(f"Pair '{p.name or _stem(p.cloudy)}': the cloudy raster '{os.path.basename(p.cloudy)}' has "
                             f"{counts[0]} band(s) and the clear raster '{os.path.basename(p.clear)}' {counts[1]}; "
                             "both need the same bands.")
        name = p.name or _stem(p.cloudy)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} ({seen[name]})"
        sources.append(TrainingSource(clear=p.clear, cloudy=p.cloudy, mask=p.mask, bands=bands,
                                      cloud_values=tuple(cloud_values), name=name))
    return sources
