"""The other dates of a stack made ready for cloud removal: each registered onto the target date, its clouds detected.

The recipe, for every other layer in the order given (optical dates first, then radar):

1. **Align** it onto the target's grid. ``registration`` ``fallback`` (the default) registers it
   with :func:`..registration.register` (method ``auto``: SIFT between optical dates, image structure
   when either layer is radar), the target's own clouds left out of the tie points; when that is
   impossible (an overcast target, too few matches) it falls back to the layer's georeferencing, warped
   onto the target grid (:func:`..grids.align_to_reference`), and says why. ``strict`` stops on the
   registration error; ``georeferencing`` never registers.
   An optical date's own clouds are detected first, on its own grid, and kept out of the tie points
   too (an overcast date then falls back instead of matching clouds).
2. **Detect** the clouds of an optical date again on the target grid (:func:`..detection.detect_clouds`),
   so the mask that guides removal lies exactly over the registered pixels (detection runs twice per
   optical date; a mask cannot follow the registration otherwise). Radar sees through clouds: no mask.
   A date with no clear pixel left is not :attr:`PreparedLayer.usable` as a guide.

Every file goes into one folder and is written atomically; an error or a cancel removes the files this
run wrote, so the folder never holds half a stack. :func:`save_summary` writes what was done (per layer:
how it was aligned, shift, rotation, RMS, cloud fraction) as JSON for the chain's report.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field

from osgeo import gdal

from ..atomic import atomic_output, write_text
from ..detection import BandRoles, DetectionOptions, ReflectanceScaling, detect_clouds
from ..errors import InputError
from ..grids import align_to_reference, grid_difference
from ..radar import looks_like_radar
from ..raster import RasterInfo, default_creation_options, raster_info
from ..registration import TRANSFORMS, RegistrationOutputs, register
from ..runtime import Progress, CancelCheck, check_cancelled, report

#: how the other layers reach the target grid (see the module docstring)
REGISTRATION_MODES = ("fallback", "strict", "georeferencing")
#: share of one layer's progress that its registration takes (detection has the rest)
REGISTRATION_SHARE = 0.6


@dataclass(frozen=True)
class PrepareOptions:
    """How the other layers are prepared: band roles and scaling for detection, registration mode, transform and band."""

    roles: BandRoles
    scaling: ReflectanceScaling
    detection: DetectionOptions = DetectionOptions()
    registration: str = "fallback"
    transform: str = "affine"
    band: int | None = None  # band matched in the target and every optical date (None: the NIR role)

    def __post_init__(self):
        if self.registration not in REGISTRATION_MODES:
            raise InputError(f"Unknown registration mode '{self.registration}'; use {', '.join(REGISTRATION_MODES)}.")
        if self.transform not in TRANSFORMS:
            raise InputError(f"Unknown transform '{self.transform}'; use one of {', '.join(TRANSFORMS)}.")

    @property
    def registration_band(self) -> int:
        return self.band or self.roles.nir


@dataclass
class PreparedLayer:
    """One other layer on the target grid: where it is, its mask, and how it got there."""

    name: str
    kind: str                 # "optical" or "radar"
    source: str               # the input file
    path: str                 # the layer on the target grid
    mask: str | None = None   # its cloud mask on the target grid (optical only)
    aligned_by: str = "registration"   # or "georeferencing"
    note: str = ""            # why it was not registered
    registration: dict = field(default_factory=dict)
    detection: dict = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Whether the layer can guide removal: radar always, an optical date when some of it is clear."""
        d = self.detection
        return self.kind == "radar" or not d or d["valid_pixels"] > d["cloud_pixels"] + d["shadow_pixels"]

    def as_dict(self) -> dict:
        return {**asdict(self), "usable": self.usable}


def prepare_dates(target: RasterInfo, dates, radar, folder: str, options: PrepareOptions,
                  target_mask: RasterInfo | None = None, progress: Progress = None,
                  cancelled: CancelCheck = None) -> list:
    """Register every layer of ``dates`` (optical; a layer that looks like radar counts as radar) and ``radar``
    onto ``target``, detect the optical dates' clouds, write both into ``folder``; a :class:`PreparedLayer` each."""
    layers = [(info, "radar" if looks_like_radar(info) else "optical") for info in dates]
    layers += [(info, "radar") for info in radar]
    bases = [os.path.join(folder, f"{i + 1:02d}_{_file_name(info.name)}") for i, (info, _) in enumerate(layers)]
    check_inputs(target, layers, target_mask, bases)
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    written: list = []
    try:
        prepared = []
        for i, ((info, kind), base) in enumerate(zip(layers, bases)):
            check_cancelled(cancelled)
            step = _sub_progress(progress, i / len(layers), 1 / len(layers))
            prepared.append(prepare_layer(target, info, kind, base, options, target_mask, written, step, cancelled))
    except BaseException:
        for path in written:
            if os.path.exists(path):
                os.remove(path)
        if created and not os.listdir(folder):
            os.rmdir(folder)
        raise
    report(progress, 1.0, f"{len(prepared)} layer(s) on the grid of '{target.name}'")
    return prepared


def check_inputs(target: RasterInfo, layers: list, target_mask: RasterInfo | None, bases: list) -> None:
    """:class:`InputError` naming the layer for no other layer, a mask off the target grid, or an output that is an input."""
    if not layers:
        raise InputError(f"No other date or radar layer was given for '{target.name}'.")
    if target_mask is not None and grid_difference(target_mask, target) is not None:
        raise InputError(f"The cloud mask '{target_mask.name}' is not on the grid of '{target.name}' "
                         f"({grid_difference(target_mask, target)}).")
    inputs = {os.path.abspath(i.path) for i, _ in layers} | {os.path.abspath(target.path)}
    clash = [p for b in bases for p in (b + ".tif", b + "_mask.tif") if os.path.abspath(p) in inputs]
    if clash:
        raise InputError(f"The output {clash[0]} is one of the inputs; choose another folder, inputs are never "
                         "modified.")


def prepare_layer(target: RasterInfo, info: RasterInfo, kind: str, base: str, options: PrepareOptions,
                  target_mask, written: list, progress: Progress, cancelled: CancelCheck) -> PreparedLayer:
    """One layer: aligned onto the target grid (``base``.tif), then, when optical, its clouds (``base``_mask.tif)."""
    layer = PreparedLayer(info.name, kind, info.path, base + ".tif")
    with tempfile.TemporaryDirectory(prefix=".cloudfree-stack-", dir=os.path.dirname(base)) as scratch:
        own_mask = None
        if kind == "optical" and options.registration != "georeferencing":
            report(progress, 0.0, f"Detecting the clouds of '{info.name}' to keep them out of the tie points")
            own_mask = os.path.join(scratch, "own_mask.tif")
            detect_clouds(info, own_mask, options.roles, options.scaling, options.detection, None, cancelled)
        align(target, info, layer, options, (target_mask, own_mask), written,
              _sub_progress(progress, 0.0, REGISTRATION_SHARE), cancelled)
    if kind == "optical":
        report(progress, REGISTRATION_SHARE, f"Detecting the clouds of '{info.name}' on the target grid")
        registered = raster_info(layer.path, info.name)
        try:
            summary = detect_clouds(registered, base + "_mask.tif", options.roles, options.scaling, options.detection,
                                    _sub_progress(progress, REGISTRATION_SHARE, 1 - REGISTRATION_SHARE), cancelled)
        finally:
            registered.close()
        written.append(base + "_mask.tif")
        layer.mask, layer.detection = base + "_mask.tif", summary.as_dict()
    return layer


def align(target: RasterInfo, info: RasterInfo, layer: PreparedLayer, options: PrepareOptions, masks: tuple,
          written: list, progress: Progress, cancelled: CancelCheck) -> None:
    """Write ``info`` onto the target grid at ``layer.path``, registered (``masks``: the target's and the layer's
    clouds, each None or a mask raster) or georeferenced as ``options`` says."""
    if options.registration != "georeferencing":
        bands = (options.registration_band, 1 if layer.kind == "radar" else options.registration_band)
        report(progress, 0.0, f"Registering '{info.name}' ({layer.kind}) onto '{target.name}'")
        try:
            result = register(target, info, RegistrationOutputs(registered=layer.path), transform=options.transform,
                              method="auto", bands=bands, masks=masks, progress=progress,
                              cancelled=cancelled)
            written.append(layer.path)
            layer.registration = registration_figures(result)
            return
        except InputError as exc:
            if options.registration == "strict":
                raise
            layer.note = f"not registered: {exc}"
    else:
        layer.note = "not registered: georeferencing only was asked for"
    layer.aligned_by = "georeferencing"
    report(progress, 0.5, f"'{info.name}' placed by its georeferencing ({layer.note})")
    georeferenced_copy(info, target, layer.path, cancelled)
    written.append(layer.path)


def registration_figures(result) -> dict:
    """The figures of a registration worth a report: method, transform, shift, rotation, scale, RMS, N_red."""
    return {"method": result.method, "transform": result.transform, "shift_x": result.shift_x,
            "shift_y": result.shift_y, "rotation": result.rotation, "scale": result.scale,
            "rms_all": result.rms_all, "rms_loo": result.rms_loo, "n_red": int(result.n_red),
            "seconds": result.seconds}


def georeferenced_copy(info: RasterInfo, target: RasterInfo, path: str, cancelled: CancelCheck) -> str:
    """``info`` warped onto the target grid by its georeferencing alone (bilinear), written atomically to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix=".cloudfree-stack-", dir=folder) as scratch:
        aligned = align_to_reference([info], target, scratch)[0]
        with atomic_output(path, ".tif") as tmp:
            try:
                gdal.Translate(tmp, aligned.path, format="GTiff",
                               creationOptions=default_creation_options(aligned.dtype),
                               callback=lambda *_: 0 if cancelled is not None and cancelled() else 1)
            except RuntimeError:
                check_cancelled(cancelled)
                raise
    return path


def save_summary(path: str, target: RasterInfo, prepared: list, options: PrepareOptions) -> str:
    """The prepared layers as JSON (atomic): the target, the registration mode and one entry per layer."""
    return write_text(path, json.dumps({"target": target.name, "registration_mode": options.registration,
                                        "transform": options.transform, "layers": [p.as_dict() for p in prepared]},
                                       indent=1, default=str))


def _sub_progress(progress: Progress, start: float, span: float) -> Progress:
    """``progress`` for a stage that fills ``[start, start + span]`` of the whole."""
    if progress is None:
        return None
    return lambda fraction, message=None: progress(start + span * min(max(float(fraction), 0.0), 1.0), message)


def _file_name(name: str) -> str:
    """A layer name as a safe file name stem."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "layer"
