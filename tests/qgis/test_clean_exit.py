"""A Python session that ran CloudFree algorithms exits cleanly after QGIS shuts down.

Objects of a run can outlive it in reference cycles (torch keeps frames of a lazy import in
one); a GDAL dataset they held used to be closed by the garbage collector after
``exitQgis()`` had shut GDAL down, and Python crashed at exit ("double free or corruption").
The run is done in a child process so that its exit status can be checked.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import gc
import sys
gc.disable()  # the worst case: no automatic collection before exit, whatever the allocations of the run
sys.path.insert(0, {scripts!r})
import cloudfree_import  # noqa: F401
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, "/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
import processing
from cloudfree.processing_provider.provider import CloudFreeProvider
provider = CloudFreeProvider()
QgsApplication.processingRegistry().addProvider(provider)
d = {data!r}
dates = [f"{{d}}/ndvi/ndvi_{{t}}.tif" for t in ("20160605T100650", "20160615T100608")]
result = processing.run("cloudfree:trainsegmentation", {{
    "INPUT": dates, "LABELS": f"{{d}}/landcover.tif", "IGNORE_VALUE": "0", "TILE_SIZE": 48, "EPOCHS": 1,
    "STEPS_PER_EPOCH": 1, "DEPTH": 2, "WIDTH": 4, "DEVICE": 1, "OUTPUT_MODEL": {out!r}}})
print("trained", result["OUTPUT_MODEL"])
app.exitQgis()
"""


def test_session_exits_cleanly_after_training(shared_data, tmp_path):
    script = SCRIPT.format(scripts=str(ROOT / "scripts"), data=str(shared_data / "s2_ndvi_timeseries"),
                           out=str(tmp_path / "seg"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "trained" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit status {proc.returncode}: {proc.stderr[-2000:]}"
