"""The BACKEND parameter (auto / torch / onnxruntime) of removeclouds, fusedates, detectclouds and segment:
advanced, the same outputs with either engine, and the engine used named in the log."""

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingParameterDefinition

from cloudfree.models.weights import shipped_model

pytest.importorskip("onnxruntime")
ALGORITHMS = ("removeclouds", "fusedates", "detectclouds", "segment")
NDVI = ["20160506T100527", "20160516T100647", "20160526T100611", "20160605T100650"]


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_backend_is_an_advanced_choice_defaulting_to_auto(provider, name):
    alg = QgsApplication.processingRegistry().algorithmById(f"cloudfree:{name}")
    parameter = alg.parameterDefinition("BACKEND")
    assert parameter.options() == ["auto", "torch", "onnxruntime"] and parameter.defaultValue() == 0
    assert parameter.flags() & QgsProcessingParameterDefinition.FlagAdvanced


def test_removeclouds_gives_the_same_output_with_both_engines_and_logs_which(run_logged, shared_data, tmp_path):
    scene = shared_data / "s2_cloudy_scene"
    src, mask = tmp_path / "scene.tif", tmp_path / "mask.tif"
    gdal.Translate(str(src), str(scene / "scene.tif"), bandList=[1, 2, 3, 4], srcWin=[0, 0, 200, 180])
    gdal.Translate(str(mask), str(scene / "mask.tif"), srcWin=[0, 0, 200, 180])
    outputs = {}
    for choice, engine in ((1, "torch"), (2, "onnxruntime")):
        result, log = run_logged("cloudfree:removeclouds", {
            "INPUT": str(src), "MASK": str(mask), "MASK_VALUES": "0,4", "BACKEND": choice, "DEVICE": 1,
            "OUTPUT": str(tmp_path / f"{engine}.tif")})
        assert f"Inference: {engine}" in log
        outputs[engine] = read(result["OUTPUT"])
    np.testing.assert_allclose(outputs["onnxruntime"], outputs["torch"], rtol=0, atol=1e-4)


def test_fusedates_quality_network_on_onnx_runtime(run_logged, shared_data, tmp_path):
    folder = shared_data / "s2_ndvi_timeseries"
    dates = [str(folder / "ndvi" / f"ndvi_{t}.tif") for t in NDVI]
    weights = {}
    for choice, engine in ((1, "torch"), (2, "onnxruntime")):
        result, log = run_logged("cloudfree:fusedates", {
            "INPUTS": dates, "METHOD": 0, "BACKEND": choice, "DEVICE": 1, "OUTPUT": str(tmp_path / f"{engine}.tif"),
            "OUTPUT_WEIGHTS": str(tmp_path / f"{engine}_w.tif")})
        assert f"Inference: {engine}" in log
        weights[engine] = read(result["OUTPUT_WEIGHTS"])
    np.testing.assert_allclose(weights["onnxruntime"], weights["torch"], atol=1e-4)


def test_segment_with_either_engine_gives_the_same_probabilities(run_logged, shared_data, tmp_path):
    ndvi = str(shared_data / "s2_ndvi_timeseries" / "ndvi" / f"ndvi_{NDVI[0]}.tif")
    probabilities = {}
    for choice, engine in ((1, "torch"), (2, "onnxruntime")):
        result, log = run_logged("cloudfree:segment", {
            "INPUT": [ndvi], "MODEL": shipped_model("fusion_default.segmentation.safetensors"), "BACKEND": choice,
            "DEVICE": 1, "OUTPUT": str(tmp_path / f"{engine}.tif"),
            "OUTPUT_PROBABILITIES": str(tmp_path / f"{engine}_p.tif")})
        assert f"Inference: {engine}" in log
        probabilities[engine] = read(result["OUTPUT_PROBABILITIES"])
    np.testing.assert_allclose(probabilities["onnxruntime"], probabilities["torch"], atol=1e-4)


def test_detectclouds_runs_a_trained_model_on_the_chosen_engine(run_logged, shared_data, tmp_path):
    """An untrained 4-band cloud model (classes clear and cloud) on the real Landsat 8 patch with cloud labels."""
    import torch

    from cloudfree.models.normalization import FixedScaling
    from cloudfree.models.segmentation import ClassTable, unet_hyperparameters
    from cloudfree.models.segmentation.model import build_network, save_segmentation_model

    image = shared_data / "l8_cloud_labels" / "bgrn.tif"
    torch.manual_seed(0)
    hp = unet_hyperparameters(4, 2, depth=2, width=8)
    model = str(tmp_path / "clouds.safetensors")
    save_segmentation_model(model, build_network(hp).eval(), hp, bands=["blue", "green", "red", "nir"],
                            classes=ClassTable.from_values([0, 1], ["clear", "cloud"]),
                            scaling=FixedScaling.learn([read(image)[b].ravel() for b in range(4)]), tile_size=64,
                            training={}, metrics={})
    masks = {}
    for choice, engine in ((1, "torch"), (2, "onnxruntime")):
        result, log = run_logged("cloudfree:detectclouds", {
            "INPUT": str(image), "MODEL": model, "BACKEND": choice, "DEVICE": 1, "OVERLAP": 16,
            "OUTPUT": str(tmp_path / f"{engine}.tif")})
        assert f"Inference: {engine}" in log
        masks[engine] = read(result["OUTPUT"])
    assert (masks["onnxruntime"] == masks["torch"]).mean() > 0.999  # argmax ties may fall either way
