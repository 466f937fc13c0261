"""cloudfree:comparerasters - PSNR, SSIM, MAE, RMSE and SAM of a raster against a reference."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import CloudFreeAlgorithm
from .common import parse_values

METRICS = ("PSNR", "SSIM", "MAE", "RMSE", "SAM")


class CompareRastersAlgorithm(CloudFreeAlgorithm):
    NAME = "comparerasters"
    DISPLAY_NAME = "Compare rasters (PSNR, SSIM, MAE, RMSE, SAM)"
    GROUP = "Quality"
    REQUIRES = ("numpy", "osgeo", "skimage")
    HELP = (
        "<p>Measures how close a raster is to a reference on the same grid, per band and overall: "
        "PSNR (dB), SSIM, MAE, RMSE and the spectral angle SAM (degrees, needs two bands or more).</p>"
        "<p>Only pixels valid in both rasters are compared; with a <b>mask</b> raster, only pixels whose "
        "mask value is in <b>mask values</b> (for example 1 for cloud, or 0 for clear).</p>"
        "<p><b>Data range</b> (for PSNR and SSIM): when set above 0 it is used for every band; when 0, "
        "each band uses the reference's max - min over the compared pixels, and the overall PSNR uses the "
        "largest of those ranges with the MSE pooled over all bands. SSIM uses Wang et al.'s settings "
        "(Gaussian window, sigma 1.5); overall SSIM is the mean of the bands.</p>"
        "<p>The JSON report holds every figure, the bands, the data range and the number of pixels.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster to evaluate"))
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference raster"))
        self.addParameter(QgsProcessingParameterRasterLayer("MASK", "Mask raster", optional=True))
        self.addParameter(QgsProcessingParameterString("MASK_VALUES", "Mask values to compare (comma-separated)",
                                                       "1", optional=True))
        self.addParameter(QgsProcessingParameterString("BANDS", "Bands of the input (comma-separated, empty = all)",
                                                       "", optional=True))
        self.addParameter(QgsProcessingParameterString("REFERENCE_BANDS",
                                                       "Bands of the reference (empty = same as input)", "",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterNumber("DATA_RANGE", "Data range for PSNR/SSIM (0 = per band from "
                                                       "the reference)", QgsProcessingParameterNumber.Double, 0.0,
                                                       minValue=0.0))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_REPORT", "Report (JSON)",
                                                                "JSON files (*.json)", optional=True,
                                                                createByDefault=True))
        for key in METRICS:
            self.addOutput(QgsProcessingOutputNumber(key, f"{key} (overall)"))
        self.addOutput(QgsProcessingOutputString("PER_BAND", "Per-band figures (JSON)"))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.metrics import compare_rasters, report_to_json
        from ..models.raster import parse_bands

        image = self.raster_info(parameters, "INPUT", context)
        reference = self.raster_info(parameters, "REFERENCE", context)
        mask = self.raster_info(parameters, "MASK", context, optional=True)
        bands = parse_bands(self.parameterAsString(parameters, "BANDS", context), image.band_count, image.name)
        ref_text = self.parameterAsString(parameters, "REFERENCE_BANDS", context)
        ref_bands = parse_bands(ref_text, reference.band_count, reference.name, default=bands)
        mask_values = parse_values(self.parameterAsString(parameters, "MASK_VALUES", context) or "1", "MASK_VALUES")
        data_range = self.parameterAsDouble(parameters, "DATA_RANGE", context) or None
        report = compare_rasters(image, reference, bands=bands, reference_bands=ref_bands, mask=mask,
                                 mask_values=mask_values, data_range=data_range, progress=progress,
                                 cancelled=cancelled)
        overall = report["overall"]
        # plain floats (numpy scalars do not convert to QVariant); SAM is None for one band
        results = {key: None if overall[src] is None else float(overall[src])
                   for key, src in (("PSNR", "psnr"), ("SSIM", "ssim"), ("MAE", "mae"), ("RMSE", "rmse"),
                                    ("SAM", "sam_degrees"))}
        results["PER_BAND"] = report_to_json(report["per_band"], indent=None)
        for entry in report["per_band"]:
            for key in ("psnr", "ssim", "mae", "rmse"):
                results[f"{key.upper()}_B{entry['band']}"] = float(entry[key])
        feedback.pushInfo(f"Compared {report['n_pixels']} pixels of '{image.name}' with '{reference.name}'.")
        for entry in report["per_band"]:
            feedback.pushInfo("  band {band}: PSNR {psnr:.2f} dB, SSIM {ssim:.4f}, MAE {mae:.5g}, RMSE {rmse:.5g}"
                              .format(**entry))
        sam = overall["sam_degrees"]
        feedback.pushInfo(f"  overall: PSNR {overall['psnr']:.2f} dB, SSIM {overall['ssim']:.4f}, "
                          f"MAE {overall['mae']:.5g}, RMSE {overall['rmse']:.5g}, "
                          f"SAM {'n/a' if sam is None else f'{sam:.3f} deg'}")
        out = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        if out:
            folder = os.path.dirname(os.path.abspath(out))
            os.makedirs(folder, exist_ok=True)
            tmp = out + ".partial"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(report_to_json(report))
            os.replace(tmp, out)
            results["OUTPUT_REPORT"] = out
        return results
