"""The SCHEDULER parameter of removeclouds, fusedates, detectclouds and segment: advanced, empty by default,
the same output on a LocalCluster of 2 worker processes as here, the executor named in the log, and a
scheduler that cannot be used refused by name before anything is written."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingParameterDefinition

pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = ("removeclouds", "fusedates", "detectclouds", "segment")
NDVI = ["20160506T100527", "20160516T100647", "20160526T100611", "20160605T100650"]


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_scheduler_is_an_advanced_string_defaulting_to_here(provider, name):
    alg = QgsApplication.processingRegistry().algorithmById(f"cloudfree:{name}")
    parameter = alg.parameterDefinition("SCHEDULER")
    assert parameter.defaultValue() == "" and parameter.flags() & QgsProcessingParameterDefinition.FlagOptional
    assert parameter.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert "local:N" in alg.shortHelpString()


def test_removeclouds_on_two_local_workers_equals_the_run_here(run_logged, shared_data, tmp_path):
    pair = shared_data / "s2_cloud_pair"
    src = tmp_path / "cloudy_bgrn.tif"
    gdal.Translate(str(src), str(pair / "cloudy.tif"), bandList=[2, 3, 4, 8])
    params = {"INPUT": str(src), "MASK": str(pair / "mask.tif"), "MASK_VALUES": "1,2", "DEVICE": 1}
    here, log_here = run_logged("cloudfree:removeclouds", dict(params, OUTPUT=str(tmp_path / "here.tif")))
    there, log_there = run_logged("cloudfree:removeclouds", dict(params, OUTPUT=str(tmp_path / "there.tif"),
                                                                 SCHEDULER="local:2"))
    assert "Executor: in-process" in log_here
    assert "Executor: Dask LocalCluster, 2 worker process(es)" in log_there
    np.testing.assert_allclose(read(there["OUTPUT"]), read(here["OUTPUT"]), rtol=1e-5, atol=1e-5)


def test_fusedates_on_two_local_workers_equals_the_run_here(run_logged, shared_data, tmp_path):
    d = shared_data / "s2_ndvi_timeseries"
    params = {"INPUTS": [str(d / "ndvi" / f"ndvi_{t}.tif") for t in NDVI],
              "MASKS": [str(d / "cloud_mask" / f"clm_{t}.tif") for t in NDVI], "DEVICE": 1}
    here, _ = run_logged("cloudfree:fusedates", dict(params, OUTPUT=str(tmp_path / "here.tif")))
    there, log = run_logged("cloudfree:fusedates", dict(params, OUTPUT=str(tmp_path / "there.tif"),
                                                        SCHEDULER="local:2"))
    assert "Executor: Dask LocalCluster" in log
    np.testing.assert_allclose(read(there["OUTPUT"]), read(here["OUTPUT"]), rtol=1e-5, atol=1e-6)


def test_a_headless_run_starts_its_workers_with_qgis_own_python(shared_data, tmp_path):
    """Inside qgis_process (as in QGIS) ``sys.executable`` is not the Python of QGIS's installation."""
    d = shared_data / "s2_ndvi_timeseries"
    args = [str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:fusedates", "--", "METHOD=1",
            "SCHEDULER=local:2", f"OUTPUT={tmp_path / 'fused.tif'}"]
    args += [f"INPUTS={d / 'ndvi' / f'ndvi_{t}.tif'}" for t in NDVI]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = json.loads(proc.stdout[proc.stdout.index("{"):])["log"]["info"]
    assert any(line.startswith("Executor: Dask LocalCluster, 2 worker") for line in log)
    stack = np.stack([read(d / "ndvi" / f"ndvi_{t}.tif") for t in NDVI])
    np.testing.assert_allclose(read(tmp_path / "fused.tif"), stack.mean(axis=0), atol=1e-5)


@pytest.mark.parametrize("scheduler,message", [("somewhere", "Scheduler 'somewhere' is not understood"),
                                               ("tcp://127.0.0.1:9", "tcp://127.0.0.1:9 does not answer")])
def test_a_scheduler_that_cannot_be_used_is_refused_by_name_and_nothing_is_written(provider, shared_data, tmp_path,
                                                                                 scheduler, message):
    import processing

    d = shared_data / "s2_ndvi_timeseries"
    out = tmp_path / "out" / "classes.tif"
    with pytest.raises(QgsProcessingException, match=message):
        processing.run("cloudfree:segment", {"INPUT": [str(d / "ndvi" / f"ndvi_{NDVI[0]}.tif")],
                                             "MODEL": _shipped("fusion_default.segmentation.safetensors"),
                                             "OUTPUT": str(out), "SCHEDULER": scheduler})
    assert not out.exists() and not os.listdir(out.parent)


def _shipped(name):
    from cloudfree.models.weights import shipped_model

    return shipped_model(name)
