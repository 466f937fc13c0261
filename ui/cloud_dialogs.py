"""Dialogs of the single-image workflows: Detect clouds, Remove clouds.

Each runs its Processing algorithm through :class:`~.workflow.WorkflowDialog` and adds the result
styled for comparison: the mask paletted, the cloud-free raster with the input's stretch.
"""

from __future__ import annotations

from qgis.gui import QgsRasterBandComboBox
from qgis.PyQt.QtWidgets import QCheckBox, QSpinBox

from . import styles
from .pickers import (
    BandList,
    DateList,
    MaskValues,
    ModelPicker,
    device_combo,
    enum_combo,
    image_layers,
    layer_date,
    looks_like_mask,
    raster_combo,
    raster_layers,
)
from .workflow import OutputFile, WorkflowDialog

MODEL_ROLES = ("blue", "green", "red", "nir")  # the shipped mask-guided model's bands


def matching_mask(layer):
    """A mask layer of the same date as ``layer`` (or whose name starts like it), for preselection."""
    if layer is None:
        return None
    date = layer_date(layer)
    masks = [m for m in raster_layers() if looks_like_mask(m) and m.id() != layer.id()]
    return next((m for m in masks if date is not None and layer_date(m) == date), None)


class DetectCloudsDialog(WorkflowDialog):
    ALGORITHM = "cloudfree:detectclouds"
    TITLE = "Detect clouds and shadows"
    INTRO = ("A cloud and cloud-shadow mask (0 clear, 1 cloud, 2 shadow) from the pretrained ukis-csmask networks. "
             "Tell it which bands are blue, green, red and NIR (SWIR makes it more accurate) and how the values "
             "scale to reflectance. The mask feeds <i>Remove clouds</i> with mask values 1, 2.")
    ROLES = (("BLUE", "blue", "Blue"), ("GREEN", "green", "Green"), ("RED", "red", "Red"), ("NIR", "nir", "NIR"),
             ("SWIR1", "swir1", "SWIR1 (1.6 µm)"), ("SWIR2", "swir2", "SWIR2 (2.2 µm)"))

    def build_form(self, form):
        self.input = raster_combo(prefer=image_layers)
        form.addRow("Multispectral raster", self.input)
        self.bands = {}
        for key, _role, label in self.ROLES:
            combo = QgsRasterBandComboBox()
            combo.setShowNotSetOption(key.startswith("SWIR"))
            self.bands[key] = combo
            form.addRow(f"{label} band", combo)
        self.product = enum_combo(self.algorithm, "PRODUCT")
        form.addRow("Product level", self.product)
        self.scaling = enum_combo(self.algorithm, "SCALING")
        form.addRow("Scaling to reflectance", self.scaling)
        self.dilation = QSpinBox()
        self.dilation.setRange(0, 500)
        self.dilation.setValue(3)
        self.dilation.setSuffix(" px")
        form.addRow("Grow clouds and shadows by", self.dilation)
        self.device = device_combo(self.algorithm)
        form.addRow("Device", self.device)
        self.output = OutputFile(self.GEOTIFF)
        form.addRow("Cloud mask", self.output)
        self.input.layerChanged.connect(self.input_changed)
        self.input_changed(self.input.currentLayer())

    def input_changed(self, layer):
        """Bands named by their descriptions (blue, B02…), else 1-4 for blue-NIR and no SWIR."""
        roles = styles.find_roles(layer) if layer is not None else {}
        if not {"swir1", "swir2"} <= set(roles):
            roles = {r: b for r, b in roles.items() if not r.startswith("swir")}
        for position, (key, role, _label) in enumerate(self.ROLES):
            combo = self.bands[key]
            combo.setLayer(layer)
            default = position + 1 if not key.startswith("SWIR") and layer is not None and \
                position < layer.bandCount() else -1
            combo.setBand(roles.get(role, default))

    def problem(self):
        if self.input.currentLayer() is None:
            return "Choose the multispectral raster to make a cloud mask of."
        swir = [self.bands[k].currentBand() > 0 for k in ("SWIR1", "SWIR2")]
        if swir[0] != swir[1]:
            return "Give both SWIR bands or neither."
        return None

    def parameters(self):
        layer = self.input.currentLayer()
        params = {"INPUT": layer.id() if layer else None, "PRODUCT": self.product.currentData(),
                  "SCALING": self.scaling.currentData(), "DILATION": self.dilation.value(),
                  "DEVICE": self.device.currentData(), "OUTPUT": self.output.value()}
        for key in self.bands:
            band = self.bands[key].currentBand()
            params[key] = band if band > 0 else None
        return params

    def add_results(self, results):
        name = f"{self.input.currentLayer().name()} cloud mask"
        layer = self.add_raster(results["OUTPUT"], name)
        styles.style_mask(layer)
        self.publish(layer)
        cloud, shadow = results.get("CLOUD_FRACTION"), results.get("SHADOW_FRACTION")
        figures = f" (cloud {100 * cloud:.1f} %, shadow {100 * shadow:.1f} % of valid pixels)" \
            if cloud is not None and shadow is not None else ""
        return [f"mask '{name}' written to {results['OUTPUT']}{figures}"]


class RemoveCloudsDialog(WorkflowDialog):
    ALGORITHM = "cloudfree:removeclouds"
    TITLE = "Remove clouds"
    INTRO = ("Replace the pixels a cloud mask marks. Without other dates the shipped model recovers the ground under "
             "thin clouds and fills thick ones from the surroundings; with other dates of the same place (guides) "
             "every cloudy pixel is predicted from every date that saw it (regression on nearby pixels, dates "
             "co-registered), with a map of where each pixel came from, its predicted error and a self-check on "
             "this scene. Clear pixels stay exactly as they were.")

    def build_form(self, form):
        self.input = raster_combo(prefer=image_layers)
        form.addRow("Cloudy raster", self.input)
        self.bands = BandList()
        form.addRow("Bands (none = the first)", self.bands)
        self.cloud_mask = raster_combo(allow_empty=True)
        form.addRow("Cloud mask", self.cloud_mask)
        self.mask_values = MaskValues(default=(1, 2))
        form.addRow("Mask values to replace", self.mask_values)
        self.guides = DateList(accept=self.is_guide)
        form.addRow("Other dates (guides)", self.guides)
        self.guide_masks = DateList(accept=looks_like_mask)
        form.addRow("Their cloud masks", self.guide_masks)
        self.method = enum_combo(self.algorithm, "METHOD")
        form.addRow("Method", self.method)
        self.model = ModelPicker("cloud_removal")
        form.addRow("Model", self.model)
        self.device = device_combo(self.algorithm)
        form.addRow("Device", self.device)
        self.self_check = QCheckBox("Score the reconstruction on clear pixels of this scene (other dates)")
        self.self_check.setChecked(True)
        form.addRow("Self-check", self.self_check)
        self.output = OutputFile(self.GEOTIFF)
        form.addRow("Cloud-free raster", self.output)
        self.provenance = OutputFile(self.GEOTIFF, "Write where each pixel came from", checked=True)
        form.addRow("Provenance", self.provenance)
        self.uncertainty = OutputFile(self.GEOTIFF, "Write the predicted error (other dates)", checked=True)
        form.addRow("Predicted error", self.uncertainty)
        self.input.layerChanged.connect(self.input_changed)
        self.cloud_mask.layerChanged.connect(self.mask_values.set_layer)
        self.input_changed(self.input.currentLayer())

    def is_guide(self, layer) -> bool:
        current = self.input.currentLayer() if hasattr(self, "input") else None
        return image_layers(layer) and (current is None or layer.id() != current.id())

    def input_changed(self, layer):
        self.bands.set_layer(layer, MODEL_ROLES)
        mask = matching_mask(layer)
        if mask is not None:
            self.cloud_mask.setLayer(mask)
        self.mask_values.set_layer(self.cloud_mask.currentLayer())
        self.guides.refresh()

    def problem(self):
        if self.input.currentLayer() is None:
            return "Choose the cloudy raster."
        guides, masks = self.guides.checked_ids(), self.guide_masks.checked_ids()
        if masks and len(masks) != len(guides):
            return (f"{len(masks)} guide mask(s) for {len(guides)} guide date(s): check one mask per date (both "
                    "lists are in time order), or none.")
        if self.cloud_mask.currentLayer() is not None and not self.mask_values.value():
            return "Check the mask values that mark clouds (and shadows)."
        return None

    def parameters(self):
        layer, mask = self.input.currentLayer(), self.cloud_mask.currentLayer()
        values = self.mask_values.value()
        return {"INPUT": layer.id() if layer else None, "BANDS": self.bands.value(),
                "MASK": mask.id() if mask else None, "MASK_VALUES": values if mask else None,
                "GUIDES": self.guides.checked_ids() or None, "GUIDE_MASKS": self.guide_masks.checked_ids() or None,
                "GUIDE_MASK_VALUES": values if self.guide_masks.checked_ids() else None,
                "METHOD": self.method.currentData(), "MODEL": self.model.value(),
                "DEVICE": self.device.currentData(), "SELF_CHECK": self.self_check.isChecked(),
                "OUTPUT": self.output.value(), "OUTPUT_PROVENANCE": self.provenance.value(),
                "OUTPUT_UNCERTAINTY": self.uncertainty.value() if self.guides.checked_ids() else None}

    def add_results(self, results):
        source = self.input.currentLayer()
        name = f"{source.name()} cloud-free"
        layer = self.add_raster(results["OUTPUT"], name)
        styles.style_before_after(source, layer, self.bands.checked() or None, from_result=True)
        self.publish(layer)
        lines = [f"'{name}' written to {results['OUTPUT']}"]  # shown with the input's stretch
        if results.get("OUTPUT_UNCERTAINTY"):
            error = self.add_raster(results["OUTPUT_UNCERTAINTY"], f"{source.name()} predicted error")
            styles.style_error(error)
            self.publish(error)
            lines.append(f"predicted error written to {results['OUTPUT_UNCERTAINTY']}")
        if results.get("OUTPUT_PROVENANCE"):
            provenance = self.add_raster(results["OUTPUT_PROVENANCE"], f"{source.name()} provenance")
            styles.style_provenance(provenance)
            self.publish(provenance)
            lines.append(f"provenance written to {results['OUTPUT_PROVENANCE']}")
        if results.get("SELF_CHECK_PSNR", -1) > 0:
            lines.append(f"self-check: {results['SELF_CHECK_PSNR']:.2f} dB PSNR on hidden clear pixels (see the log)")
        return lines

