"""regions: connected regions of chosen classes of a class raster, as polygons with their area and perimeter.

GDAL's Polygonize traces the regions (pixels of one class joined through edges, or edges
and corners with ``eight_connected``), reading the raster line by line. Only pixels whose
class is among ``classes`` are traced (a mask band built block by block in a temporary file);
regions smaller than ``min_area`` (square map units, or pixels for a raster without a CRS)
are dropped. Each polygon carries its ``class`` value, class ``name`` (when the raster names
its classes), ``area``, ``perimeter`` (map units) and ``pixels``. The output is written
atomically in the format its extension names (GeoPackage, Shapefile, GeoJSON ...).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, ogr, osr

from ..atomic import atomic_output
from ..errors import InputError
from ..raster import RasterInfo, RasterWriter, read_window
from ..runtime import CancelCheck, Progress, check_cancelled, report
from ..windows import iter_windows
from .classes import class_names_of

DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON",  # one file each (atomic rename)
           ".sqlite": "SQLite", ".fgb": "FlatGeobuf", ".kml": "KML"}


@dataclass(frozen=True)
class RegionOptions:
    """Which classes (empty = every class), the smallest area kept, the connectivity, the block size."""

    classes: tuple = ()
    min_area: float = 0.0
    eight_connected: bool = True
    block: int = 2048


def regions(classes_raster: RasterInfo, output_path: str, options: RegionOptions = RegionOptions(),
            progress: Progress = None, cancelled: CancelCheck = None) -> dict:
    """Trace the regions and write the polygons; return ``{"regions", "dropped", "per_class"}``."""
    driver = _driver_for(output_path)
    if not np.issubdtype(np.dtype(classes_raster.dtype), np.integer):
        raise InputError(f"Layer '{classes_raster.name}' holds {classes_raster.dtype} values, not classes: regions "
                         "traces a class raster (integers, e.g. the output of segment or autocluster).")
    if options.min_area < 0:
        raise InputError(f"The minimum area must be 0 or more; it is {options.min_area}.")
    pixel_area = abs(classes_raster.geotransform[1] * classes_raster.geotransform[5]) or 1.0
    with tempfile.TemporaryDirectory(prefix="cloudfree-regions-") as folder:
        mask_path = write_selection(classes_raster, options, os.path.join(folder, "selected.tif"), cancelled)
        report(progress, 0.3, "Regions: tracing")
        traced = trace(classes_raster, mask_path, options.eight_connected, progress, cancelled)
    names = class_names_of(classes_raster.dataset().GetRasterBand(1))
    summary = write_polygons(traced, classes_raster, output_path, driver, names, options.min_area, pixel_area)
    report(progress, 1.0, "Regions: done")
    return summary


def _driver_for(path: str) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in DRIVERS:
        raise InputError(f"Output '{path}': unknown vector format '{ext}'; use {', '.join(sorted(DRIVERS))}.")
    return DRIVERS[ext]


def write_selection(info: RasterInfo, options: RegionOptions, path: str, cancelled: CancelCheck) -> str:
    """A uint8 mask (1 = a chosen class with data) on the raster's grid, block by block; None if it selects nothing."""
    nodata = info.nodata[0]
    wanted = np.asarray(options.classes, dtype=np.float64)
    found = False
    with RasterWriter(path, like=info, band_count=1, dtype="uint8") as out:
        for window in iter_windows(info.width, info.height, options.block):
            check_cancelled(cancelled)
            values = read_window(info.dataset(), window, [1], np.float64)[0]
            selected = np.isfinite(values) if wanted.size == 0 else np.isin(values, wanted)
            if nodata is not None:
                selected &= values != nodata
            found |= bool(selected.any())
            out.write(selected.astype(np.uint8), window.col_off, window.row_off)
    return path if found else None


def trace(info: RasterInfo, mask_path: str | None, eight_connected: bool, progress: Progress, cancelled: CancelCheck):
    """Polygonize the class raster under the mask into an in-memory layer (field ``class``; empty without a mask)."""
    srs = osr.SpatialReference()
    if info.crs_wkt:
        srs.ImportFromWkt(info.crs_wkt)
    memory = ogr.GetDriverByName("Memory").CreateDataSource("regions")
    layer = memory.CreateLayer("regions", srs if info.crs_wkt else None, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    if mask_path is None:
        return memory, layer
    mask = gdal.Open(mask_path)

    def callback(fraction, _message, _data):
        report(progress, 0.3 + 0.5 * fraction, None)
        return 0 if cancelled is not None and cancelled() else 1

    try:
        gdal.Polygonize(info.dataset().GetRasterBand(1), mask.GetRasterBand(1), layer, 0,
                        ["8CONNECTED=8"] if eight_connected else [], callback=callback)
    except RuntimeError as exc:  # a cancel through the callback arrives as GDAL's "user terminated"
        check_cancelled(cancelled)
        raise InputError(f"Layer '{info.name}': GDAL could not trace its regions ({exc}).") from exc
    check_cancelled(cancelled)
    return memory, layer


def write_polygons(traced, info: RasterInfo, path: str, driver_name: str, names: dict, min_area: float,
                   pixel_area: float) -> dict:
    """Keep regions of at least ``min_area``; write them with class, name, area, perimeter and pixels."""
    _memory, source = traced
    per_class: dict = {}
    dropped = 0
    ext = os.path.splitext(path)[1]
    with atomic_output(path, suffix=ext) as tmp:
        ds = ogr.GetDriverByName(driver_name).CreateDataSource(tmp)
        layer = ds.CreateLayer(os.path.splitext(os.path.basename(path))[0], source.GetSpatialRef(), ogr.wkbPolygon)
        for name, kind in (("class", ogr.OFTInteger), ("name", ogr.OFTString), ("area", ogr.OFTReal),
                           ("perimeter", ogr.OFTReal), ("pixels", ogr.OFTInteger64)):
            layer.CreateField(ogr.FieldDefn(name, kind))
        layer.StartTransaction()
        for feature in source:
            geom = feature.GetGeometryRef()
            area = geom.GetArea()
            if area < min_area:
                dropped += 1
                continue
            value = feature.GetField("class")
            out = ogr.Feature(layer.GetLayerDefn())
            out.SetGeometry(geom)
            out.SetField("class", value)
            out.SetField("name", names.get(value, f"class {value}"))
            out.SetField("area", area)
            out.SetField("perimeter", geom.Boundary().Length())
            out.SetField("pixels", int(round(area / pixel_area)))
            layer.CreateFeature(out)
            entry = per_class.setdefault(str(value), {"regions": 0, "area": 0.0})
            entry["regions"] += 1
            entry["area"] += area
        layer.CommitTransaction()
        ds = None
    return {"regions": sum(e["regions"] for e in per_class.values()), "dropped": dropped, "per_class": per_class}
