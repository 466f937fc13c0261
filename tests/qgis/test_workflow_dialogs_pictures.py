"""Pictures of the workflow dialogs with real layers loaded, and a before/after of a result made through them.

Every test renders offscreen and checks the picture is not empty. With ``CLOUDFREE_SCREENSHOTS=<folder>``
the pictures are also saved there (``make``-free: the README's pictures in docs/ come from
``CLOUDFREE_SCREENSHOTS=docs``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsProject
from qgis.PyQt.QtCore import QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter
from qgis.PyQt.QtWidgets import QApplication

from cloudfree.ui import styles
from cloudfree.ui.cloud_dialogs import DetectCloudsDialog, RemoveCloudsDialog
from cloudfree.ui.date_dialogs import FuseDatesDialog, RegisterDialog
from cloudfree.ui.train_dialog import TrainModelDialog
from test_workflow_dialogs_common import (
    REGISTRATION,
    STACK,
    by_name,
    copy_to,
    load,
    need,
    run_dialog,
    stack_paths,
)

DEMO_INPUT = Path(__file__).resolve().parents[2] / "demo_output" / "inputs" / "s2_20170216_thin_clouds_bgrn.tif"


@pytest.fixture()
def project(qgis_iface, provider):
    QgsProject.instance().removeAllMapLayers()
    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()


def keep(image_or_widget, name: str, tmp_path, publish: bool = True) -> Path:
    """Save a picture in tmp_path (and, to ``publish`` it, in $CLOUDFREE_SCREENSHOTS); check it holds something."""
    if hasattr(image_or_widget, "grab"):  # lay out what changed since it was shown, then fit the whole form
        for _ in range(3):
            QApplication.processEvents()
        image_or_widget.fit(1000)
        QApplication.processEvents()
    picture = image_or_widget.grab() if hasattr(image_or_widget, "grab") else image_or_widget
    path = tmp_path / name
    assert picture.save(str(path)) and path.stat().st_size > 5000
    if publish and os.environ.get("CLOUDFREE_SCREENSHOTS"):
        picture.save(os.path.join(os.environ["CLOUDFREE_SCREENSHOTS"], name))
    return path


def check(date_list, names) -> None:
    date_list.set_checked([by_name(n).id() for n in names])


def shown(qtbot, dialog):
    qtbot.addWidget(dialog)
    dialog.fit(1000)  # the whole form in the picture
    dialog.show()
    qtbot.waitExposed(dialog)
    qtbot.wait(100)  # let the scroll area lay the form out at its final width
    return dialog


def test_dialog_pictures(qtbot, project, tmp_path):
    load(stack_paths(need(STACK)))
    remove = shown(qtbot, RemoveCloudsDialog())
    remove.input.setLayer(by_name("s2_20150731"))
    check(remove.guides, ["s2_20150711", "s2_20150830"])
    check(remove.guide_masks, ["clm_20150711", "clm_20150830"])
    remove.model.combo.setCurrentIndex(remove.model.combo.findText("cloud_removal_guided_optical.safetensors"))
    keep(remove, "remove_clouds_dialog.png", tmp_path)
    fuse = shown(qtbot, FuseDatesDialog())
    check(fuse.dates, ["s2_20150711", "s2_20150731", "s2_20150830", "s2_20150909"])
    check(fuse.masks, ["clm_20150711", "clm_20150731", "clm_20150830", "clm_20150909"])
    keep(fuse, "fuse_dates_dialog.png", tmp_path)
    detect = shown(qtbot, DetectCloudsDialog())
    detect.input.setLayer(by_name("s2_20150820"))
    keep(detect, "detect_clouds_dialog.png", tmp_path)
    train = shown(qtbot, TrainModelDialog())
    train.clear_mask.setLayer(by_name("clm_20150711"))
    keep(train, "train_model_dialog.png", tmp_path)
    if REGISTRATION.is_dir():
        reference, sensed = load([REGISTRATION / "reference_20160608.tif", REGISTRATION / "target_20160529.tif"])
        register = shown(qtbot, RegisterDialog())
        register.reference.setLayer(reference)
        register.sensed.setLayer(sensed)
        keep(register, "register_dialog.png", tmp_path)


def render(layers, size: int) -> QImage:
    """The layers (first on top) drawn over the extent of the last one."""
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(layers[-1].crs())
    settings.setExtent(layers[-1].extent())
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def side_by_side(panels, size: int = 360) -> QImage:
    """``[(caption, layers)]`` rendered in a row with their captions above."""
    caption_height, gap = 30, 8
    image = QImage(len(panels) * (size + gap) + gap, size + caption_height + gap, QImage.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    font = QFont()
    font.setPointSize(11)
    painter.setFont(font)
    for i, (caption, layers) in enumerate(panels):
        x = gap + i * (size + gap)
        painter.drawText(QRectF(x, 0, size, caption_height), Qt.AlignCenter, caption)
        painter.drawImage(x, caption_height, render(layers, size))
    painter.end()
    return image


def test_before_after_picture_of_detect_then_remove(qtbot, project, tmp_path):
    """The demo's Sentinel-2 crop with real thin clouds (made by `make demo`): detect, then remove, in the dialogs."""
    if not DEMO_INPUT.exists():
        pytest.skip("run `make demo` first: it makes the Sentinel-2 crop with thin clouds")
    (source,) = load([copy_to(tmp_path, DEMO_INPUT)])
    detect = shown(qtbot, DetectCloudsDialog())
    detect.input.setLayer(source)
    detect.scaling.setCurrentIndex(detect.scaling.findData(2))  # Sentinel-2 DN x 1e-4 (before baseline 04.00)
    detect.output.set_path(str(tmp_path / "mask.tif"))
    assert run_dialog(qtbot, detect), detect.log.toPlainText()
    mask = by_name(f"{source.name()} cloud mask")
    remove = shown(qtbot, RemoveCloudsDialog())
    remove.input.setLayer(source)
    remove.cloud_mask.setLayer(mask)
    remove.output.set_path(str(tmp_path / "cloud_free.tif"))
    assert run_dialog(qtbot, remove), remove.log.toPlainText()
    result = by_name(f"{source.name()} cloud-free")
    picture = side_by_side([("before: real thin clouds", [source]), ("cloud mask (Detect clouds)", [mask, source]),
                            ("after (Remove clouds), same stretch", [result])])
    keep(picture, "detect_then_remove.png", tmp_path, publish=False)


def test_before_after_picture_of_guided_removal(qtbot, project, tmp_path):
    """An overcast date of the real stack cleaned with two other dates as guides, through the dialog."""
    load([copy_to(tmp_path, p) for p in stack_paths(need(STACK), ("20150711", "20150731", "20150830"))])
    remove = shown(qtbot, RemoveCloudsDialog())
    remove.input.setLayer(by_name("s2_20150731"))
    check(remove.guides, ["s2_20150711", "s2_20150830"])
    check(remove.guide_masks, ["clm_20150711", "clm_20150830"])
    remove.output.set_path(str(tmp_path / "cloud_free.tif"))
    assert run_dialog(qtbot, remove), remove.log.toPlainText()
    keep(remove, "remove_clouds_dialog_done.png", tmp_path)
    result = by_name("s2_20150731 cloud-free")
    stretch = styles.compute_stretch(result)  # what the dialog gave the input and the result; the guides too
    for guide in ("s2_20150711", "s2_20150830"):
        styles.apply_stretch(by_name(guide), stretch, (4, 3, 2))
    assert by_name("s2_20150731").renderer().redContrastEnhancement().maximumValue() == stretch.limits[0][1]
    picture = side_by_side([("guide: 2015-07-11", [by_name("s2_20150711")]),
                            ("before: 2015-07-31, overcast", [by_name("s2_20150731")]),
                            ("after: Remove clouds, same stretch", [result]),
                            ("guide: 2015-08-30", [by_name("s2_20150830")])], size=300)
    keep(picture, "before_after.png", tmp_path)
