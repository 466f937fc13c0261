"""Parameters that speak raster: band pickers tied to their layer (and the headless band syntax, order kept),
shipped models by name with their metadata in the help, device labels from this machine, every parameter and
output documented, an icon for every algorithm."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterString,
    QgsProperty,
)

from cloudfree.models.errors import InputError
from cloudfree.processing_provider import common

ROOT = Path(__file__).resolve().parents[2]
#: text parameters that hold values, never bands
VALUE_TEXTS = {"MASK_VALUES", "GUIDE_MASK_VALUES", "CLASSES", "CLASS_WEIGHTS", "IGNORE_VALUE", "SCHEDULER"}


def write(path, array, nodata=None):
    """A GeoTIFF (UTM 32N, 10 m pixels) of ``array`` (bands, rows, cols) or (rows, cols)."""
    array = np.asarray(array)
    array = array[None] if array.ndim == 2 else array
    kind = gdal.GDT_Byte if array.dtype == np.uint8 else gdal.GDT_Float32
    ds = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[2], array.shape[1], array.shape[0], kind)
    ds.SetGeoTransform((500000, 10, 0, 5000000, 0, -10))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    ds.SetProjection(srs.ExportToWkt())
    for b, band in enumerate(array, start=1):
        ds.GetRasterBand(b).WriteArray(band)
        if nodata is not None:
            ds.GetRasterBand(b).SetNoDataValue(nodata)
    ds = None
    return str(path)


@pytest.fixture()
def rasters(tmp_path):
    """A 4-band image, the same image with its bands reversed, and a mask (0 clear, 1 cloud, 2 shadow)."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0.05, 0.4, (4, 48, 48)).astype(np.float32) + np.arange(4, dtype=np.float32)[:, None, None]
    mask = np.zeros((48, 48), np.uint8)
    mask[10:20, 10:24] = 1
    mask[30:36, 5:15] = 2
    return {"image": write(tmp_path / "image.tif", image), "reversed": write(tmp_path / "reversed.tif", image[::-1]),
            "mask": write(tmp_path / "mask.tif", mask), "array": image, "mask_array": mask}


def algorithms(provider):
    return sorted(provider.algorithms(), key=lambda a: a.id())


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


# --------------------------------------------------------------------------- band pickers


def test_every_band_list_is_a_band_picker_tied_to_its_layer(provider):
    for alg in algorithms(provider):
        for p in alg.parameterDefinitions():
            if isinstance(p, QgsProcessingParameterString):
                assert "BAND" not in p.name() and p.name() in VALUE_TEXTS, f"{alg.id()} {p.name()} is typed text"
            if p.name() in ("BANDS", "REFERENCE_BANDS"):
                assert isinstance(p, QgsProcessingParameterBand) and p.allowMultiple(), f"{alg.id()} {p.name()}"
                assert alg.parameterDefinition(p.parentLayerParameterName()) is not None
                assert p.flags() & p.FlagOptional and p.defaultValue() is None  # empty = the default bands


@pytest.mark.parametrize("value, bands", [("1,2,3", [1, 2, 3]), ("3;1;2", [3, 1, 2]), (" 4, 2 ", [4, 2]),
                                          ([3, 2, 1], [3, 2, 1]), (["2", "1"], [2, 1]), (2, [2]), ("", None),
                                          (None, None), ([], None), (QgsProperty.fromValue("2,4"), [2, 4])])
def test_band_values_read_every_headless_form_in_the_order_given(provider, value, bands):
    alg = QgsApplication.processingRegistry().algorithmById("cloudfree:comparerasters")
    assert common.band_values(alg, {"BANDS": value}, "BANDS", QgsProcessingContext()) == bands


def test_band_text_that_is_not_numbers_is_a_clear_error(provider):
    alg = QgsApplication.processingRegistry().algorithmById("cloudfree:comparerasters")
    with pytest.raises(InputError, match=r"BANDS 'blue,red' must be band numbers"):
        common.band_values(alg, {"BANDS": "blue,red"}, "BANDS", QgsProcessingContext())


@pytest.mark.parametrize("bands, reference_bands, identical", [
    ("1,2,3,4", "4,3,2,1", True), ([1, 2, 3, 4], [4, 3, 2, 1], True), ("2;1", [3, 4], True),
    ("1,2,3,4", "", False), ([1, 2], None, False)])
def test_processing_run_takes_text_and_lists_and_keeps_the_order(run_alg, rasters, bands, reference_bands,
                                                                  identical):
    params = {"INPUT": rasters["image"], "REFERENCE": rasters["reversed"], "BANDS": bands,
              "REFERENCE_BANDS": reference_bands, "OUTPUT_REPORT": "TEMPORARY_OUTPUT"}
    result = run_alg("cloudfree:comparerasters", params)
    assert (result["MAE"] == 0) == identical


def test_removeclouds_feeds_the_bands_in_the_order_given(run_logged, rasters, tmp_path):
    """The fill method copies clear pixels bit for bit: output band k is input band BANDS[k]."""
    out = tmp_path / "filled.tif"
    _, log = run_logged("cloudfree:removeclouds", {"INPUT": rasters["image"], "BANDS": [4, 2, 3], "METHOD": 3,
                                                   "MASK": rasters["mask"], "MASK_VALUES": "1,2", "OUTPUT": str(out)})
    got, clear = read(out), rasters["mask_array"] == 0
    assert got.shape[0] == 3 and "bands [4, 2, 3]" in log
    for k, band in enumerate((4, 2, 3)):
        assert np.array_equal(got[k][clear], rasters["array"][band - 1][clear])


def qgis_process(*args):
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), "--json", "run", *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["results"]


def test_qgis_process_takes_comma_separated_and_repeated_bands(rasters, tmp_path):
    common_args = ["cloudfree:comparerasters", "--", f"INPUT={rasters['image']}", f"REFERENCE={rasters['reversed']}",
                   f"OUTPUT_REPORT={tmp_path / 'r.json'}"]
    assert qgis_process(*common_args, "BANDS=1,2,3,4", "REFERENCE_BANDS=4,3,2,1")["MAE"] == 0
    repeated = qgis_process(*common_args, "BANDS=1", "BANDS=2", "REFERENCE_BANDS=4", "REFERENCE_BANDS=3")
    assert repeated["MAE"] == 0 and json.loads(repeated["PER_BAND"])[1]["band"] == 2
    # the option form, without "--" (after "--", "--BANDS=1" would be an unknown parameter)
    options = [a if a == common_args[0] else "--" + a for a in common_args if a != "--"]
    repeated = qgis_process(*options, "--BANDS=1", "--BANDS=2", "--REFERENCE_BANDS=4", "--REFERENCE_BANDS=3")
    assert repeated["MAE"] == 0 and json.loads(repeated["PER_BAND"])[1]["reference_band"] == 3
    assert qgis_process(*common_args, "BANDS=1,2", "REFERENCE_BANDS=1,2")["MAE"] > 0


# --------------------------------------------------------------------------- models


def test_model_takes_a_shipped_name_or_a_file_and_names_the_choices_when_wrong(run_alg, provider, rasters, tmp_path):
    alg = QgsApplication.processingRegistry().algorithmById("cloudfree:removeclouds")
    context = QgsProcessingContext()
    for value in ("cloud_removal_small", "cloud_removal_small.safetensors",
                  str(ROOT / "models" / "pretrained" / "cloud_removal_small.safetensors")):
        ok, message = alg.checkParameterValues({"INPUT": rasters["image"], "MODEL": value,
                                                "OUTPUT": str(tmp_path / "x.tif")}, context)
        assert ok, message
        assert common.model_value(alg, {"MODEL": value}, "MODEL", context).endswith("cloud_removal_small.safetensors")
    out = tmp_path / "o.tif"
    result = run_alg("cloudfree:removeclouds", {"INPUT": rasters["image"], "MODEL": "cloud_removal_small",
                                                "MASK": rasters["mask"], "DEVICE": 1, "OUTPUT": str(out)})
    assert read(result["OUTPUT"]).shape == (4, 48, 48)
    with pytest.raises(QgsProcessingException, match=r"'no_such_model' is neither .*cloud_removal_small"):
        run_alg("cloudfree:fusedates", {"INPUTS": [rasters["image"], rasters["image"]], "MODEL": "no_such_model",
                                        "OUTPUT": str(tmp_path / "f.tif")})
    assert not (tmp_path / "f.tif").exists()


@pytest.mark.parametrize("algorithm_id, names", [
    ("cloudfree:removeclouds", ["cloud_removal_small", "cloud_removal_guided_optical", "cloud_removal_guided_radar"]),
    ("cloudfree:fusedates", ["fusion_default"]), ("cloudfree:segment", ["fusion_default.segmentation"])])
def test_help_lists_the_shipped_models_with_their_metadata(provider, algorithm_id, names):
    text = QgsApplication.processingRegistry().algorithmById(algorithm_id).shortHelpString()
    for name in names:
        entry = re.search(rf"<li><b>{re.escape(name)}</b>: (.*?)</li>", text)
        assert entry, f"{name} missing from the help of {algorithm_id}"
        assert "Trained on" in entry.group(1) and "Held-out figures" in entry.group(1)
    assert "registration_descriptor" not in text


# --------------------------------------------------------------------------- device


def test_device_keeps_its_indices_and_says_what_this_machine_has(provider, monkeypatch):
    for gpu, cuda_label in (("", "cuda (no GPU found here)"), ("NVIDIA H200", "cuda (NVIDIA H200 found)")):
        monkeypatch.setattr(common, "gpu_found", lambda gpu=gpu: gpu)
        options = common.device_parameter().options()
        assert len(options) == 3 and options[0].startswith("auto") and options[1] == "cpu"
        assert options[2] == cuda_label
    for alg in algorithms(provider):
        if alg.parameterDefinition("DEVICE") is not None:
            assert alg.parameterDefinition("DEVICE").options()[1] == "cpu"


# --------------------------------------------------------------------------- help and icons


def words(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).lower()


def test_every_algorithm_documents_every_parameter_and_output(provider):
    """Each parameter and output is named in the help: its id (underscores as spaces) or its label in the dialog
    (without what it says in brackets)."""
    missing = []
    for alg in algorithms(provider):
        text = words(alg.shortHelpString())
        for item in list(alg.parameterDefinitions()) + list(alg.outputDefinitions()):
            label = re.sub(r"\s*\([^)]*\)", "", item.description()).strip().lower()  # without "(empty = ...)"
            names = {item.name().lower(), item.name().lower().replace("_", " "), label}
            if not any(name in text for name in names):
                missing.append(f"{alg.id()}: {item.name()} ({item.description()})")
    assert not missing, "undocumented:\n" + "\n".join(missing)


def test_every_algorithm_has_an_icon_of_its_group(provider):
    for alg in algorithms(provider):
        assert not alg.icon().isNull(), alg.id()
        if hasattr(alg, "ICON"):  # a CloudFree algorithm (the shipped .model3 chain has the provider's icon)
            assert (ROOT / "icons" / f"{alg.ICON or alg.groupId()}.svg").exists(), alg.id()
