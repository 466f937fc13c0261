"""Dialogs of the multi-image workflows: Fuse dates, Register images.

Dates are picked from a checkable list of the project's rasters in time order (dates read from the
names or the files' metadata), so the order the algorithms need (masks in the order of the dates)
comes for free. Results are styled to compare: the fused image and the first date with one stretch, the
per-date weights in pseudocolour; the registered image with the sensed image's stretch and the tie
points graduated by residual.
"""

from __future__ import annotations

from qgis.gui import QgsRasterBandComboBox
from qgis.PyQt.QtWidgets import QCheckBox

from . import styles
from .pickers import (
    BandList,
    DateList,
    MaskValues,
    ModelPicker,
    device_combo,
    enum_combo,
    image_layers,
    looks_like_mask,
    raster_combo,
)
from .workflow import OutputFile, WorkflowDialog


class FuseDatesDialog(WorkflowDialog):
    ALGORITHM = "cloudfree:fusedates"
    TITLE = "Fuse dates"
    INTRO = ("One clean image from several dates of the same place: per pixel, each date gets a weight (the quality "
             "network scores it; cloudy pixels get none when masks are given) and the weighted dates are summed. "
             "Check the dates, and their masks (both lists are in time order).")

    def build_form(self, form):
        self.dates = DateList(accept=image_layers)
        form.addRow("Dates", self.dates)
        self.masks = DateList(accept=looks_like_mask)
        form.addRow("Their cloud masks", self.masks)
        self.mask_values = MaskValues(default=(1,))
        form.addRow("Mask values that mark clouds", self.mask_values)
        self.method = enum_combo(self.algorithm, "METHOD")
        form.addRow("Method", self.method)
        self.model = ModelPicker("fusion", "Default (fusion_default)")
        form.addRow("Model", self.model)
        self.bands = BandList()
        form.addRow("Bands (none = all)", self.bands)
        self.align = QCheckBox("Warp the dates onto the first one's grid")
        form.addRow("Grids", self.align)
        self.device = device_combo(self.algorithm)
        form.addRow("Device", self.device)
        self.output = OutputFile(self.GEOTIFF)
        form.addRow("Fused raster", self.output)
        self.weights = OutputFile(self.GEOTIFF, "Write them (band n: date n's weight)", True)
        form.addRow("Weight maps", self.weights)
        self.dates.changed.connect(self.dates_changed)
        self.masks.changed.connect(self.masks_changed)
        self.dates_changed()

    def first(self, picker):
        layers = picker.checked_layers()
        return layers[0] if layers else None

    def dates_changed(self):
        first = self.first(self.dates)
        if first is None or self.bands.count() != first.bandCount():
            self.bands.set_layer(first)

    def masks_changed(self):
        self.mask_values.set_layer(self.masks.checked_layers())

    def problem(self):
        dates, masks = self.dates.checked_ids(), self.masks.checked_ids()
        if len(dates) < 2:
            return f"Check at least 2 dates to fuse ({len(dates)} checked)."
        if masks and len(masks) != len(dates):
            return f"{len(masks)} mask(s) for {len(dates)} dates: check one mask per date, or none."
        return None

    def parameters(self):
        masks = self.masks.checked_ids()
        return {"INPUTS": self.dates.checked_ids(), "MASKS": masks or None,
                "MASK_VALUES": self.mask_values.value() if masks else None, "METHOD": self.method.currentData(),
                "MODEL": self.model.value(), "BANDS": self.bands.value(), "ALIGN": int(self.align.isChecked()),
                "DEVICE": self.device.currentData(), "OUTPUT": self.output.value(),
                "OUTPUT_WEIGHTS": self.weights.value()}

    def add_results(self, results):
        first = self.dates.checked_layers()[0]
        layer = self.add_raster(results["OUTPUT"], "fused")
        styles.style_before_after(first, layer, self.bands.checked() or None, from_result=True)
        lines = [f"fused image written to {results['OUTPUT']} ('{first.name()}' shown with the same stretch)"]
        if results.get("OUTPUT_WEIGHTS"):
            weights = self.add_raster(results["OUTPUT_WEIGHTS"], "fusion weights (band n = date n)")
            styles.style_weights(weights)
            self.publish(weights)
            lines.append(f"per-date weights to {results['OUTPUT_WEIGHTS']}")
        self.publish(layer)
        return lines


class RegisterDialog(WorkflowDialog):
    ALGORITHM = "cloudfree:register"
    TITLE = "Register images"
    INTRO = ("Move the sensed image onto the reference image's grid: tie points are matched between one band of "
             "each, a transform is fitted robustly and refined below a pixel. Non-zero mask pixels (clouds) give no "
             "tie points. The tie points come with their residuals, to judge the fit.")

    def build_form(self, form):
        self.reference = raster_combo(prefer=image_layers)
        form.addRow("Reference raster", self.reference)
        self.reference_band = QgsRasterBandComboBox()
        form.addRow("Reference band", self.reference_band)
        self.sensed = raster_combo(prefer=image_layers)
        form.addRow("Sensed raster (to move)", self.sensed)
        self.sensed_band = QgsRasterBandComboBox()
        form.addRow("Sensed band", self.sensed_band)
        self.transform = enum_combo(self.algorithm, "TRANSFORM")
        form.addRow("Transform", self.transform)
        self.method = enum_combo(self.algorithm, "METHOD")
        form.addRow("Features", self.method)
        self.reference_mask = raster_combo(allow_empty=True)
        form.addRow("Reference clouds (optional)", self.reference_mask)
        self.sensed_mask = raster_combo(allow_empty=True)
        form.addRow("Sensed clouds (optional)", self.sensed_mask)
        self.output = OutputFile(self.GEOTIFF)
        form.addRow("Registered raster", self.output)
        self.tiepoints = OutputFile("GeoPackage (*.gpkg)")
        form.addRow("Tie points", self.tiepoints)
        self.checkerboard = OutputFile(self.GEOTIFF, "Write one (reference and result alternate)")
        form.addRow("Checkerboard", self.checkerboard)
        self.reference.layerChanged.connect(self.reference_band.setLayer)
        self.sensed.layerChanged.connect(self.sensed_band.setLayer)
        self.reference_band.setLayer(self.reference.currentLayer())
        self.sensed_band.setLayer(self.sensed.currentLayer())

    def problem(self):
        reference, sensed = self.reference.currentLayer(), self.sensed.currentLayer()
        if reference is None or sensed is None:
            return "Choose the reference raster and the sensed raster."
        if reference.id() == sensed.id():
            return "The reference and the sensed raster are the same layer: choose the image to move as sensed."
        return None

    def parameters(self):
        reference, sensed = self.reference.currentLayer(), self.sensed.currentLayer()
        masks = self.reference_mask.currentLayer(), self.sensed_mask.currentLayer()
        return {"REFERENCE": reference.id() if reference else None, "INPUT": sensed.id() if sensed else None,
                "REFERENCE_BAND": max(self.reference_band.currentBand(), 1),
                "INPUT_BAND": max(self.sensed_band.currentBand(), 1),
                "TRANSFORM": self.transform.currentData(), "METHOD": self.method.currentData(),
                "REFERENCE_MASK": masks[0].id() if masks[0] else None,
                "INPUT_MASK": masks[1].id() if masks[1] else None,
                "OUTPUT": self.output.value(), "OUTPUT_TIEPOINTS": self.tiepoints.value(),
                "OUTPUT_CHECKERBOARD": self.checkerboard.value()}

    def add_results(self, results):
        sensed = self.sensed.currentLayer()
        layer = self.add_raster(results["OUTPUT"], f"{sensed.name()} registered")
        styles.style_before_after(sensed, layer)
        self.publish(layer)
        if results.get("OUTPUT_CHECKERBOARD"):
            board = self.add_raster(results["OUTPUT_CHECKERBOARD"], "checkerboard")
            styles.style_image(board)
            self.publish(board)
        points = self.add_vector(results["OUTPUT_TIEPOINTS"], "tie points (residual, px)")
        if points.featureCount() > 0:
            styles.style_tiepoints(points)
        self.publish(points)
        figures = ", ".join(f"{key} {results[key]:.2f}" for key in ("RMS_ALL", "RMS_LOO")
                            if isinstance(results.get(key), float))
        count = results.get("N_RED")
        return [f"registered raster written to {results['OUTPUT']}, tie points to {results['OUTPUT_TIEPOINTS']}"
                + (f" ({count} correct correspondences; {figures} px)" if count is not None else "")]
