"""The *Train a model* dialog: a cloud removal model (the main use), a segmentation model or a fusion
model, each with the few inputs that matter; every other knob is in the algorithm's Processing dialog
(*Open in Processing*). The trained model is a ``.safetensors`` file that the other dialogs' model
pickers open with *File…*; the HTML report says how well it did on held-out data.
"""

from __future__ import annotations

from qgis.PyQt.QtWidgets import QComboBox, QLabel, QSpinBox

from .pickers import (
    BandList,
    DateList,
    MaskValues,
    compact,
    device_combo,
    enum_combo,
    image_layers,
    looks_like_mask,
    raster_combo,
)
from .workflow import OutputFile, WorkflowDialog

#: (algorithm id, label) of what the dialog trains
KINDS = (("cloudfree:traincloudremoval", "Cloud removal (pix2pix / mask-guided)"),
         ("cloudfree:trainsegmentation", "Segmentation (U-Net classes, e.g. clouds or land cover)"),
         ("cloudfree:trainfusion", "Fusion quality network (for Fuse dates)"))


def spin(value: int, low: int, high: int, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


def layer_id(combo):
    layer = combo.currentLayer()
    return layer.id() if layer is not None else None


class TrainModelDialog(WorkflowDialog):
    ALGORITHM = KINDS[0][0]
    TITLE = "Train a model"
    INTRO = ("Train a model on your own imagery. <b>Cloud removal</b>: a clear raster (and its cloud mask, so only its "
             "clear pixels are used) gets synthetic clouds to learn from; add a cloudy raster of the same place "
             "for a real cloudy/clear pair. A CPU manages a few hundred steps in minutes.")

    def build_form(self, form):
        self.form_layout = form
        self.kind = compact(QComboBox())
        for algorithm_id, label in KINDS:
            self.kind.addItem(label, algorithm_id)
        form.addRow("What to train", self.kind)
        self.rows = [self.cloud_removal_rows(), self.segmentation_rows(), self.fusion_rows()]
        self.device = device_combo(self.algorithm)
        form.addRow("Device", self.device)
        self.output = OutputFile("CloudFree model (*.safetensors)")
        form.addRow("Model file", self.output)
        self.report = OutputFile("HTML (*.html)", "Also write the training report (HTML)", True)
        form.addRow("Report", self.report)
        self.kind.currentIndexChanged.connect(self.kind_changed)
        self.kind_changed(0)

    @staticmethod
    def add_rows(rows) -> list:
        """``[(label, widget)]`` of one kind, labels made here so that the rows can leave and return to the form."""
        return [(QLabel(label), widget) for label, widget in rows]

    def cloud_removal_rows(self) -> list:
        self.clear = raster_combo(prefer=image_layers)
        self.clear_mask = raster_combo(allow_empty=True)
        self.mask_values = MaskValues(default=(1, 2))
        self.cloudy = raster_combo(allow_empty=True)
        self.bands = BandList()
        self.steps = spin(500, 1, 1_000_000, " steps")
        self.model_size = enum_combo(self.algorithm, "MODEL_SIZE")
        self.clear.layerChanged.connect(self.bands.set_layer)
        self.clear_mask.layerChanged.connect(self.mask_values.set_layer)
        self.bands.set_layer(self.clear.currentLayer())
        return self.add_rows((("Clear raster", self.clear), ("Its cloud mask", self.clear_mask),
                                    ("Mask values (clouds)", self.mask_values),
                                    ("Cloudy raster (a pair)", self.cloudy), ("Bands (none = all)", self.bands),
                                    ("Training", self.steps), ("Model size", self.model_size)))

    def segmentation_rows(self) -> list:
        self.seg_inputs = DateList(accept=image_layers)
        self.seg_labels = raster_combo(allow_empty=True, prefer=looks_like_mask)
        self.seg_epochs = spin(40, 1, 10_000, " epochs")
        return self.add_rows((("Input rasters (stacked)", self.seg_inputs),
                                    ("Labels raster (classes)", self.seg_labels), ("Training", self.seg_epochs)))

    def fusion_rows(self) -> list:
        self.fusion_dates = DateList(accept=image_layers)
        self.fusion_masks = DateList(accept=looks_like_mask)
        self.fusion_labels = raster_combo(allow_empty=True)
        self.fusion_epochs = spin(5, 1, 10_000, " epochs")
        return self.add_rows((("Dates", self.fusion_dates), ("Their cloud masks", self.fusion_masks),
                                    ("Labels raster (optional)", self.fusion_labels),
                                    ("Training", self.fusion_epochs)))

    def kind_changed(self, index: int):
        """Put the rows of what is trained into the form, after "What to train" (the others leave it, hidden)."""
        self.set_algorithm(KINDS[index][0])
        for kind, rows in enumerate(self.rows):
            for label, widget in rows:
                if kind != index and self.form_layout.indexOf(widget) >= 0:
                    self.form_layout.takeRow(widget)
                    label.hide()
                    widget.hide()
        for position, (label, widget) in enumerate(self.rows[index]):
            if self.form_layout.indexOf(widget) < 0:  # inserted first: a widget without a parent would be a window
                self.form_layout.insertRow(1 + position, label, widget)
                label.show()
                widget.show()

    def problem(self):
        index = self.kind.currentIndex()
        if index == 0 and self.clear.currentLayer() is None:
            return "Choose a clear raster to train on."
        if index == 1 and (not self.seg_inputs.checked_ids() or self.seg_labels.currentLayer() is None):
            return "Check the input raster(s) and choose the labels raster."
        if index == 2 and len(self.fusion_dates.checked_ids()) < 2:
            return "Check at least 2 dates."
        if index == 2 and self.fusion_masks.checked_ids() and \
                len(self.fusion_masks.checked_ids()) != len(self.fusion_dates.checked_ids()):
            return "Check one mask per date, or none."
        return None

    def parameters(self):
        common = {"DEVICE": self.device.currentData(), "OUTPUT_MODEL": self.output.value(),
                  "OUTPUT_REPORT": self.report.value()}
        index = self.kind.currentIndex()
        if index == 0:
            mask = layer_id(self.clear_mask)
            return {**common, "CLEAR": layer_id(self.clear), "MASK": mask, "CLOUDY": layer_id(self.cloudy),
                    "MASK_VALUES": self.mask_values.value() if mask else None, "BANDS": self.bands.value(),
                    "STEPS": self.steps.value(), "MODEL_SIZE": self.model_size.currentData()}
        if index == 1:
            return {**common, "INPUT": self.seg_inputs.checked_ids(), "LABELS": layer_id(self.seg_labels),
                    "EPOCHS": self.seg_epochs.value()}
        masks = self.fusion_masks.checked_ids()
        return {**common, "INPUTS": self.fusion_dates.checked_ids(), "MASKS": masks or None,
                "LABELS": layer_id(self.fusion_labels), "EPOCHS": self.fusion_epochs.value()}

    def add_results(self, results):
        model = results.get("OUTPUT_MODEL")
        lines = [f"model written to {model} (choose it with File… in the model picker of the other dialogs)"]
        if results.get("OUTPUT_REPORT"):
            lines.append(f"report (open it in a web browser): {results['OUTPUT_REPORT']}")
        return lines
