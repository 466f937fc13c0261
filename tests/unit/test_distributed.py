"""Scaling out on Dask: the same output as in-process, retries after a dead worker, clear errors, cancel.

The tiler's scaled-out path is checked first without a cluster (a stand-in executor that pickles the
shipped job as Dask does, then runs it here); the rest runs on a LocalCluster of 2 worker processes
on loopback, started once for the module.
"""

import gc
import logging
import os
import pickle
import socket
import sys
import time

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models import raster, tiling
from cloudfree.models.errors import Cancelled, ClusterError, InputError, ModelFileError

GT = (300000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)


def make(path, arr, nodata=None):
    return raster.raster_info(raster.write_array(str(path), arr, geotransform=GT, crs_wkt="", nodata=nodata))


def read_all(path):
    return gdal.Open(str(path)).ReadAsArray()


def context_sensitive(batch, valid):
    """Output that depends on every input pixel of the tile, the mirrored ones too."""
    return batch * 2 + batch.mean(axis=(2, 3), keepdims=True) + valid[:, None].mean(axis=(2, 3), keepdims=True)


def identity(batch, valid):
    return batch


class PickledLoop:
    """A stand-in executor: the shared callable crosses a pickle round trip, as it does to a Dask worker."""

    description = "pickled loop"

    def map_in_order(self, shared, items, *, ahead=0, progress=None, cancelled=None):
        copy = pickle.loads(pickle.dumps(shared))
        for item in items:
            yield copy(item)


@pytest.mark.parametrize("shape", [(3, 37, 53), (2, 301, 517), (1, 1, 7), (2, 5, 300), (4, 10, 10)])
def test_the_scaled_out_tiler_reads_and_blends_exactly_as_in_process(tmp_path, shape):
    arr = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    arr[:, : shape[1] // 3, : shape[2] // 4] = -9999
    src = make(tmp_path / "in.tif", arr, nodata=-9999)
    kw = dict(tile=64, overlap=16, batch_size=3)
    here = tiling.run_tiled(context_sensitive, src, str(tmp_path / "here.tif"), **kw)
    there = tiling.run_tiled(context_sensitive, src, str(tmp_path / "there.tif"), executor=PickledLoop(), **kw)
    np.testing.assert_array_equal(read_all(there), read_all(here))


def test_rasters_in_gdal_memory_travel_with_the_job_and_go_when_it_goes(tmp_path):
    src = make(tmp_path / "in.tif", np.ones((1, 40, 50), dtype=np.float32))
    tif, vrt = "/vsimem/test_distributed_prior.tif", "/vsimem/test_distributed_prior.vrt"
    small = gdal.GetDriverByName("GTiff").Create(tif, 5, 4, 1, gdal.GDT_Float32)  # as the coarse fill prior is
    small.SetGeoTransform((GT[0], 100, 0, GT[3], 0, -100))
    small.GetRasterBand(1).Fill(3)
    small.FlushCache()
    gdal.Translate(vrt, small, format="VRT", width=50, height=40)
    small = None
    extra = raster.raster_info(vrt)
    run = tiling._TiledRun(identity, src, [1], [(extra, [1])], 2, np.dtype("float32"),
                           tiling.TileLayout(40, 32, 8), tiling.TileLayout(50, 32, 8), 2, 0.0, None, None)
    shipped = pickle.dumps(tiling._BatchJob(run))
    run.datasets.clear()
    del run, extra
    gc.collect()
    for path in (vrt, tif):
        gdal.Unlink(path)
    job = pickle.loads(shipped)  # as on a worker, which cannot see this process's memory files
    tiles, _ = job((-4, (-4, 20)))
    assert np.all(tiles[:, 1] == 3)
    del job, tiles
    gc.collect()
    assert gdal.VSIStatL(tif) is None and gdal.VSIStatL(vrt) is None


@pytest.mark.parametrize("spec,message", [("local:0", "from 1 to 512"), ("local:x", "local:N"),
                                          ("127.0.0.1:8786", "tcp://host:port"), ("cluster", "not understood")])
def test_a_scheduler_spec_that_means_nothing_is_refused_by_name(spec, message):
    pytest.importorskip("distributed")
    from cloudfree.models.distributed import parse_scheduler

    with pytest.raises(InputError, match=message):
        parse_scheduler(spec)
    assert parse_scheduler(" local:3 ") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")


def test_an_empty_scheduler_runs_here_without_dask():
    with tiling.open_executor("  ") as executor:
        assert executor is None and tiling.describe_executor(executor) == "in-process"


def test_an_unreachable_scheduler_is_refused_at_once_by_its_address():
    pytest.importorskip("distributed")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.perf_counter()
    with pytest.raises(ClusterError, match=f"{address} does not answer"):
        with tiling.open_executor(address):
            pass
    assert time.perf_counter() - started < 20


def test_workers_that_cannot_import_the_plugin_are_refused_with_what_to_do(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from cloudfree.models.distributed import DaskExecutor

    src = make(tmp_path / "in.tif", np.ones((1, 40, 40), dtype=np.float32))
    # Spawned workers start with this process's sys.path and PYTHONPATH. In a checkout whose folder is named
    # `cloudfree` (the plugin's name), pytest put its parent folder there, and a worker would import the plugin
    # from it: leave out every folder that holds a `cloudfree` package while the bare workers start.
    hiding = [p for p in sys.path if os.path.isfile(os.path.join(p or ".", "cloudfree", "__init__.py"))]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in hiding])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if p and not os.path.isfile(os.path.join(p, "cloudfree", "__init__.py"))))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as bare, \
            distributed.Client(bare, set_as_default=False) as client:  # no preload: the plugin is not importable
        with pytest.raises(ClusterError, match="PYTHONPATH"):
            tiling.run_tiled(identity, src, str(tmp_path / "out.tif"), tile=32, overlap=8,
                             executor=DaskExecutor(client, "bare workers"))
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


# --------------------------------------------------------------------------- on a LocalCluster of 2 processes


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    with tiling.open_executor("local:2") as executor:
        yield executor


def test_the_cluster_is_described_for_the_log(cluster):
    assert cluster.description.startswith("Dask LocalCluster, 2 worker process(es)")
    assert cluster.threads == 2


def test_tiles_on_the_cluster_equal_the_in_process_run(cluster, tmp_path):
    arr = np.random.default_rng(2).normal(size=(2, 150, 203)).astype(np.float32)
    arr[:, 60:80, 10:40] = np.nan
    src = make(tmp_path / "in.tif", arr)
    kw = dict(tile=64, overlap=16, batch_size=2)
    here = tiling.run_tiled(context_sensitive, src, str(tmp_path / "here.tif"), **kw)
    there = tiling.run_tiled(context_sensitive, src, str(tmp_path / "there.tif"), executor=cluster, **kw)
    np.testing.assert_array_equal(read_all(there), read_all(here))


def reflectance(rng, bands, height, width):
    """A smooth synthetic scene in reflectance (0-0.5) with a little noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 0.15 + 0.08 * np.sin(xx / 23.0) * np.cos(yy / 17.0)
    return np.stack([base * (1 + 0.2 * b) + 0.01 * rng.standard_normal((height, width)) for b in range(bands)]
                    ).astype(np.float32)


def test_removeclouds_with_the_shipped_model_on_the_cluster_equals_in_process(cluster, tmp_path):
    from cloudfree.models.cloud_removal import RemovalOptions, remove_clouds
    from cloudfree.models.weights import shipped_model

    rng = np.random.default_rng(3)
    src = make(tmp_path / "scene.tif", reflectance(rng, 4, 256, 300))
    cloud = np.zeros((1, 256, 300), dtype=np.uint8)
    cloud[0, 60:140, 90:200] = 1
    mask = make(tmp_path / "mask.tif", cloud)
    model = shipped_model("cloud_removal_small.safetensors")
    outputs = []
    for name, executor in (("here", None), ("there", cluster)):
        options = RemovalOptions(device="cpu", executor=executor)
        remove_clouds(src, str(tmp_path / f"{name}.tif"), model, mask=mask, mask_values=(1,), options=options)
        outputs.append(read_all(tmp_path / f"{name}.tif"))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    assert np.abs(outputs[0] - read_all(tmp_path / "scene.tif"))[:, 60:140, 90:200].max() > 0  # clouds replaced


def test_fusion_on_the_cluster_equals_in_process(cluster, tmp_path):
    from cloudfree.models.fusion import FuseRasterOptions, fuse_rasters
    from cloudfree.models.weights import shipped_model

    rng = np.random.default_rng(4)
    dates, masks = [], []
    for k in range(3):
        dates.append(make(tmp_path / f"d{k}.tif", reflectance(rng, 2, 130, 170)))
        m = np.zeros((1, 130, 170), dtype=np.uint8)
        m[0, 20 * k:20 * k + 50, 30:90] = 1
        masks.append(make(tmp_path / f"m{k}.tif", m))
    results = []
    for name, executor in (("here", None), ("there", cluster)):
        options = FuseRasterOptions("quality", model_path=shipped_model("fusion_default.safetensors"), tile=64,
                                    overlap=16, device="cpu", executor=executor)
        fuse_rasters(dates, str(tmp_path / f"{name}.tif"), masks=masks, weight_map_path=str(tmp_path / f"{name}_w.tif"),
                     options=options)
        results.append((read_all(tmp_path / f"{name}.tif"), read_all(tmp_path / f"{name}_w.tif")))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)


def test_segment_on_the_cluster_equals_in_process(cluster, tmp_path):
    from cloudfree.models.segmentation import SegmentOptions, segment
    from cloudfree.models.weights import shipped_model

    ndvi = make(tmp_path / "ndvi.tif", reflectance(np.random.default_rng(6), 1, 110, 140) * 4 - 0.5)
    model = shipped_model("fusion_default.segmentation.safetensors")
    for name, executor in (("here", None), ("there", cluster)):
        options = SegmentOptions(device="cpu", executor=executor, probabilities_path=str(tmp_path / f"{name}_p.tif"))
        segment([ndvi], model, str(tmp_path / f"{name}.tif"), options)
    np.testing.assert_allclose(read_all(tmp_path / "there_p.tif"), read_all(tmp_path / "here_p.tif"), atol=1e-5)
    assert (read_all(tmp_path / "there.tif") != read_all(tmp_path / "here.tif")).mean() < 1e-3


class DiesOnce:
    """Doubles its tiles, but the first batch of the lower half kills the worker process that runs it."""

    def __init__(self, marker: str, row: int):
        self.marker, self.row = marker, row

    def __call__(self, batch, valid):
        if batch[0, 0, 0, 0] >= self.row and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return batch * 2


def test_a_worker_killed_in_the_middle_of_a_run_has_its_tasks_run_again(cluster, tmp_path):
    rows = np.broadcast_to(np.arange(192, dtype=np.float32)[None, :, None], (1, 192, 160)).copy()
    src = make(tmp_path / "rows.tif", rows)
    marker = str(tmp_path / "died")
    out = tiling.run_tiled(DiesOnce(marker, 96), src, str(tmp_path / "out.tif"), tile=32, overlap=8, batch_size=2,
                           executor=cluster)
    assert os.path.exists(marker)  # a worker did die
    np.testing.assert_array_equal(read_all(out), 2 * rows[0])


def wrong_shape(batch, valid):
    return batch[:, :1]


def test_an_engine_error_on_a_worker_reaches_the_caller_as_itself(cluster, tmp_path):
    src = make(tmp_path / "in.tif", np.ones((2, 40, 40), dtype=np.float32))
    with pytest.raises(ModelFileError, match="does not fit"):
        tiling.run_tiled(wrong_shape, src, str(tmp_path / "out.tif"), tile=32, overlap=8, executor=cluster)
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def slow_double(batch, valid):
    time.sleep(0.05)
    return batch * 2


def test_cancel_stops_the_cluster_run_and_leaves_no_output(cluster, tmp_path):
    src = make(tmp_path / "in.tif", np.ones((1, 300, 300), dtype=np.float32))
    seen = []

    def progress(fraction, message=None):
        seen.append(fraction)

    with pytest.raises(Cancelled):
        tiling.run_tiled(slow_double, src, str(tmp_path / "out.tif"), tile=32, overlap=8, batch_size=1,
                         executor=cluster, progress=progress, cancelled=lambda: bool(seen) and seen[-1] > 0.1)
    assert 0.1 < max(seen) < 1
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def test_the_cloud_detector_travels_with_its_network_file(tmp_path):
    pytest.importorskip("ukis_csmask")
    pytest.importorskip("onnxruntime")
    from cloudfree.models.detection import CsmaskDetector, CsmaskModel, ReflectanceScaling

    detector = CsmaskDetector(CsmaskModel.find(4, "l1c"), ("blue", "green", "red", "nir"),
                              ReflectanceScaling.preset("reflectance"), "cpu")
    copy = pickle.loads(pickle.dumps(detector))  # as a Dask worker gets it: its own ONNX Runtime session
    assert copy.session is not detector.session
    batch = np.random.default_rng(5).uniform(0, 0.4, (1, 4, 256, 256)).astype(np.float32)
    valid = np.ones((1, 256, 256), dtype=bool)
    np.testing.assert_array_equal(copy(batch, valid), detector(batch, valid))
