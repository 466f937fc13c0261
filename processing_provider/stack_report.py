"""cloudfree:stackreport - the report of the chain "Cloud-free image from a stack": what each step did, and a check
of the cloud-free image against the target (pixels changed inside and outside the mask), as HTML or JSON."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import CloudFreeAlgorithm
from .common import parse_values
from .remove_clouds import RemoveCloudsAlgorithm


class StackReportAlgorithm(CloudFreeAlgorithm):
    TARGET = "TARGET"
    MASK = "MASK"
    MASK_VALUES = "MASK_VALUES"
    CLOUD_FREE = "CLOUD_FREE"
    PREPARED = "PREPARED"
    REMOVAL_REPORT = "REMOVAL_REPORT"
    METHOD = "METHOD"
    RED, GREEN, BLUE = "RED", "GREEN", "BLUE"
    OUTPUT = "OUTPUT"
    CLOUD_FRACTION = "CLOUD_FRACTION"
    CHANGED_INSIDE = "CHANGED_INSIDE"
    CHANGED_OUTSIDE = "CHANGED_OUTSIDE"

    NAME = "stackreport"
    DISPLAY_NAME = "Report of a cloud-free image from a stack"
    GROUP = "Cloud removal"
    REQUIRES = ("numpy", "osgeo", "matplotlib")
    HELP = (
        "<p>The last step of the model <i>Cloud-free image from a stack</i>: one report of what each step did. "
        "The <b>target</b> date and its clouds (cloud and shadow fractions from its <b>cloud mask</b>); every other "
        "date and radar layer as <i>Prepare other dates</i> recorded it in its JSON summary (<b>prepared "
        "dates</b>: registered or placed by georeferencing and why, shift, rotation, RMS_all, RMS_LOO, N_red, its "
        "own cloud fraction); the removal <b>method</b>; from the <b>report of the removal</b> (Remove clouds' JSON "
        "REPORT, optional) where the replaced pixels came from and the self-check; and a check of the <b>cloud-free image</b> against the "
        "target, block by block: how many pixels changed inside and outside the <b>mask values</b> (a removal "
        "that keeps clear pixels changes none outside).</p>"
        "<p><b>Report</b>: JSON when the file name ends in .json, else an HTML page with a before / after / mask "
        "quick-look (<b>red, green, blue</b> bands of the target, one shared stretch). Outputs also CLOUD_FRACTION, "
        "CHANGED_INSIDE and CHANGED_OUTSIDE (-1 when the image keeps other bands than the target).</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.TARGET, "Target date"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, "Cloud mask of the target"))
        self.addParameter(QgsProcessingParameterString(self.MASK_VALUES, "Mask values that were replaced", "1,2",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.CLOUD_FREE, "Cloud-free image"))
        self.addParameter(QgsProcessingParameterFile(self.PREPARED, "Prepared dates (the JSON summary of Prepare "
                                                     "other dates)", extension="json", optional=True))
        self.addParameter(QgsProcessingParameterFile(self.REMOVAL_REPORT, "Report of the removal (the JSON REPORT of "
                                                     "Remove clouds)", extension="json", optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, "Method of the removal",
                                                     [label for _, label in RemoveCloudsAlgorithm.METHODS],
                                                     defaultValue=0))
        for name, label, default in ((self.RED, "Red band of the picture", 3), (self.GREEN, "Green band", 2),
                                     (self.BLUE, "Blue band", 1)):
            self.addParameter(QgsProcessingParameterBand(name, f"{label} (default {default})", default, self.TARGET,
                                                         optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Report",
                                                                "HTML files (*.html);;JSON files (*.json)"))
        self.addOutput(QgsProcessingOutputNumber(self.CLOUD_FRACTION, "Cloud fraction of the target"))
        self.addOutput(QgsProcessingOutputNumber(self.CHANGED_INSIDE, "Pixels changed inside the mask"))
        self.addOutput(QgsProcessingOutputNumber(self.CHANGED_OUTSIDE, "Pixels changed outside the mask"))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.stack import chain_summary, write_chain_report

        target = self.raster_info(parameters, self.TARGET, context)
        mask = self.raster_info(parameters, self.MASK, context)
        cloud_free = self.raster_info(parameters, self.CLOUD_FREE, context)
        values = parse_values(self.parameterAsString(parameters, self.MASK_VALUES, context) or "1,2", self.MASK_VALUES)
        prepared = self.parameterAsFile(parameters, self.PREPARED, context) or None
        method = RemoveCloudsAlgorithm.METHODS[self.parameterAsEnum(parameters, self.METHOD, context)][1]
        removal = self.parameterAsFile(parameters, self.REMOVAL_REPORT, context) or None
        summary = chain_summary(target, mask, cloud_free, prepared, method, values, cancelled, removal)
        rgb = tuple(self.parameterAsInt(parameters, name, context) or default
                    for name, default in ((self.RED, 3), (self.GREEN, 2), (self.BLUE, 1)))
        out = self.output_path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        write_chain_report(out, summary, (target, cloud_free, mask), rgb)
        result = summary["result"]
        feedback.pushInfo(f"Target '{target.name}': clouds {100 * summary['target_clouds']['cloud_fraction']:.1f} %; "
                          + (f"{result['changed_inside']} pixels changed inside the mask, {result['changed_outside']} "
                             "outside" if result["changed_inside"] is not None else result["not_compared"]))
        if result["changed_outside"]:
            feedback.pushWarning(f"{result['changed_outside']} pixels changed outside the mask.")
        return {self.OUTPUT: out, self.CLOUD_FRACTION: summary["target_clouds"]["cloud_fraction"],
                self.CHANGED_INSIDE: -1 if result["changed_inside"] is None else result["changed_inside"],
                self.CHANGED_OUTSIDE: -1 if result["changed_outside"] is None else result["changed_outside"]}
