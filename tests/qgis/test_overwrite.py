"""No algorithm writes over one of its inputs (processing_provider/overwrite.py): every output path is
checked against every input file, masks, guides, models and pairs files included, before anything runs."""

import shutil

import numpy as np
import pytest
from qgis.core import QgsProcessingException

from cloudfree.models.raster import write_array


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a", "g", "r"):
        paths[name] = write_array(str(tmp_path / f"{name}.tif"), rng.uniform(1000, 3000, (4, 64, 64)).astype(np.float32))
    paths["m"] = write_array(str(tmp_path / "m.tif"), (rng.random((64, 64)) < 0.3).astype(np.uint8))
    return paths


def _copy(path, tmp_path, name):
    out = tmp_path / name
    shutil.copy(path, out)
    return str(out)


@pytest.mark.parametrize("target", ["GUIDES", "MASK", "INPUT"])
def test_removeclouds_refuses_to_write_over_any_input(run_alg, files, tmp_path, target):
    before = open(files["g"], "rb").read()
    params = {"INPUT": files["a"], "MASK": files["m"], "MASK_VALUES": "1", "GUIDES": [files["g"]]}
    out = {"GUIDES": files["g"], "MASK": files["m"], "INPUT": files["a"]}[target]
    with pytest.raises(QgsProcessingException, match=rf"OUTPUT.*'{out}'.*input {target}.*overwrite"):
        run_alg("cloudfree:removeclouds", {**params, "OUTPUT": out})
    assert open(files["g"], "rb").read() == before


def test_removeclouds_refuses_to_write_over_its_model(run_alg, files, tmp_path):
    from cloudfree.models.weights import shipped_model

    model = _copy(shipped_model("cloud_removal_small.safetensors"), tmp_path, "mine.safetensors")
    with pytest.raises(QgsProcessingException, match="input MODEL"):
        run_alg("cloudfree:removeclouds", {"INPUT": files["a"], "MASK": files["m"], "MODEL": model, "OUTPUT": model})


def test_comparerasters_refuses_a_report_over_the_reference(run_alg, files):
    with pytest.raises(QgsProcessingException, match="input REFERENCE"):
        run_alg("cloudfree:comparerasters", {"INPUT": files["a"], "REFERENCE": files["r"], "OUTPUT_REPORT": files["r"]})


def test_register_refuses_tie_points_over_the_reference(run_alg, files, tmp_path):
    with pytest.raises(QgsProcessingException, match="input REFERENCE"):
        run_alg("cloudfree:register", {"REFERENCE": files["r"], "INPUT": files["a"], "OUTPUT": str(tmp_path / "o.tif"),
                                       "OUTPUT_TIEPOINTS": files["r"]})


def test_a_new_output_path_runs(run_alg, files, tmp_path):
    result = run_alg("cloudfree:simulateclouds", {"INPUT": files["a"], "OUTPUT": str(tmp_path / "new.tif"),
                                                  "OUTPUT_MASK": str(tmp_path / "new_mask.tif")})
    assert result["OUTPUT"]
