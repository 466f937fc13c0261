"""cloudfree:comparerasters - PSNR, SSIM, MAE, RMSE and SAM of a raster against a reference."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import CloudFreeAlgorithm
from .common import BAND_ORDER_HELP, band_parameter, band_values, parse_values, values_parameter

METRICS = ("PSNR", "SSIM", "MAE", "RMSE", "SAM")


class CompareRastersAlgorithm(CloudFreeAlgorithm):
    # parameter and output names (the ids headless calls use)
    INPUT = "INPUT"
    REFERENCE = "REFERENCE"
    MASK = "MASK"
    MASK_VALUES = "MASK_VALUES"
    BANDS = "BANDS"
    REFERENCE_BANDS = "REFERENCE_BANDS"
    DATA_RANGE = "DATA_RANGE"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    PER_BAND = "PER_BAND"
    CLASSES = "CLASSES"
    OVERALL_ACCURACY = "OVERALL_ACCURACY"
    MIOU = "MIOU"
    PER_CLASS = "PER_CLASS"
    NAME = "comparerasters"
    DISPLAY_NAME = "Compare rasters (PSNR, SSIM, MAE, RMSE, SAM)"
    GROUP = "Quality"
    REQUIRES = ("numpy", "osgeo", "skimage")
    HELP = (
        "<p>Measures how close a raster is to a reference on the same grid, per band and overall: "
        "PSNR (dB), SSIM, MAE, RMSE and the spectral angle SAM (degrees, needs two bands or more).</p>"
        "<p>Only pixels valid in both rasters are compared; with a <b>mask</b> raster, only pixels whose "
        "mask value is in <b>mask values</b> (for example 1 for cloud, or 0 for clear).</p>"
        "<p><b>Bands</b> of the input (empty = all) are compared with the <b>reference bands</b> (empty = the "
        "same numbers), pair by pair in the order given. " + BAND_ORDER_HELP + "</p>"
        "<p><b>Data range</b> (for PSNR and SSIM): when set above 0 it is used for every band; when 0, "
        "each band uses the reference's max - min over the compared pixels, and the overall PSNR uses the "
        "largest of those ranges with the MSE pooled over all bands. SSIM uses Wang et al.'s settings "
        "(Gaussian window, sigma 1.5); overall SSIM is the mean of the bands.</p>"
        "<p>The JSON report holds every figure, the bands, the data range and the number of pixels.</p>"
        "<p><b>Classes</b>: compare two class rasters instead (a classification against a reference map, band 1 "
        "or the first of the chosen bands): per class IoU, Dice (= F1), precision and recall, the overall "
        "accuracy, mIoU (mean IoU over the reference's classes) and the confusion matrix (rows: reference, "
        "columns: input) go to the report; the overall accuracy and mIoU are also outputs, and PSNR ... SAM are "
        "not computed.</p>"
        "<p>Outputs: PSNR, SSIM, MAE, RMSE and SAM (overall), PER_BAND (the per-band figures as JSON, also given "
        "as PSNR_B1, SSIM_B1... per band), OVERALL_ACCURACY, MIOU and PER_CLASS (classes), and the <b>report</b> "
        "file (JSON).</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster to evaluate"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, "Reference raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, "Mask raster", optional=True))
        self.addParameter(values_parameter(self.MASK_VALUES, "Mask values to compare (comma-separated)", "1",
                                           self.MASK))
        self.addParameter(band_parameter(self.BANDS, "Bands of the input (empty = all)", self.INPUT))
        self.addParameter(band_parameter(self.REFERENCE_BANDS, "Bands of the reference (empty = same as input)",
                                         self.REFERENCE))
        self.addParameter(QgsProcessingParameterNumber(self.DATA_RANGE, "Data range for PSNR/SSIM (0 = per band from "
                                                       "the reference)", QgsProcessingParameterNumber.Double, 0.0,
                                                       minValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean(self.CLASSES, "Compare classes (class rasters)", False,
                                                        optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Report (JSON)",
                                                                "JSON files (*.json)", optional=True,
                                                                createByDefault=True))
        for key in METRICS:
            self.addOutput(QgsProcessingOutputNumber(key, f"{key} (overall)"))
        self.addOutput(QgsProcessingOutputString(self.PER_BAND, "Per-band figures (JSON)"))
        self.addOutput(QgsProcessingOutputNumber(self.OVERALL_ACCURACY, "Overall accuracy (classes)"))
        self.addOutput(QgsProcessingOutputNumber(self.MIOU, "Mean IoU (classes)"))
        self.addOutput(QgsProcessingOutputString(self.PER_CLASS, "Per-class figures (JSON)"))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.atomic import write_text
        from ..models.comparison import compare_rasters, report_to_json
        from ..models.raster import parse_bands

        image = self.raster_info(parameters, self.INPUT, context)
        reference = self.raster_info(parameters, self.REFERENCE, context)
        mask = self.raster_info(parameters, self.MASK, context, optional=True)
        bands = parse_bands(band_values(self, parameters, self.BANDS, context), image.band_count, image.name)
        ref_bands = parse_bands(band_values(self, parameters, self.REFERENCE_BANDS, context), reference.band_count,
                                reference.name, default=bands)
        mask_values = parse_values(self.parameterAsString(parameters, self.MASK_VALUES, context) or "1", self.MASK_VALUES)
        if self.parameterAsBool(parameters, self.CLASSES, context):
            return self.compare_classes(parameters, context, feedback, (image, reference, mask, bands, ref_bands,
                                                                        mask_values), progress, cancelled)
        data_range = self.parameterAsDouble(parameters, self.DATA_RANGE, context) or None
        report = compare_rasters(image, reference, bands=bands, reference_bands=ref_bands, mask=mask,
                                 mask_values=mask_values, data_range=data_range, progress=progress,
                                 cancelled=cancelled)
        overall = report["overall"]
        # plain floats (numpy scalars do not convert to QVariant); SAM is None for one band
        results = {key: None if overall[src] is None else float(overall[src])
                   for key, src in (("PSNR", "psnr"), ("SSIM", "ssim"), ("MAE", "mae"), ("RMSE", "rmse"),
                                    ("SAM", "sam_degrees"))}
        results[self.PER_BAND] = report_to_json(report["per_band"], indent=None)
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
        out = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        if out:
            results[self.OUTPUT_REPORT] = write_text(out, report_to_json(report))
        return results

    def compare_classes(self, parameters, context, feedback, inputs, progress, cancelled) -> dict:
        """CLASSES=true: class agreement of the first chosen bands (confusion matrix and class metrics)."""
        from ..models.atomic import write_text
        from ..models.comparison import compare_class_rasters, report_to_json

        image, reference, mask, bands, ref_bands, mask_values = inputs
        report = compare_class_rasters(image, reference, band=bands[0], reference_band=ref_bands[0], mask=mask,
                                       mask_values=mask_values, progress=progress, cancelled=cancelled)
        overall = report["overall"]
        feedback.pushInfo(f"Compared the classes of {report['n_pixels']} pixels of '{image.name}' (band {bands[0]}) "
                          f"with '{reference.name}' (band {ref_bands[0]}): overall accuracy {overall['accuracy']:.4f}, "
                          f"mIoU {overall['miou']:.4f}")
        for entry in report["per_class"]:
            feedback.pushInfo("  class {}: IoU {}, Dice {}, {} reference px".format(
                entry["class"], *(("n/a" if entry[k] is None else f"{entry[k]:.4f}") for k in ("iou", "dice")),
                entry["reference_pixels"]))
        results = {self.OVERALL_ACCURACY: float(overall["accuracy"]),
                   self.MIOU: None if overall["miou"] is None else float(overall["miou"]),
                   self.PER_CLASS: report_to_json(report["per_class"], indent=None)}
        out = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        if out:
            results[self.OUTPUT_REPORT] = write_text(out, report_to_json(report))
        return results
