"""Shared test set-up: import this checkout as the package ``cloudfree`` and locate the data.

The repository root is the plugin folder, but a clone may be called anything
(``main``, ``fresh``...), so the package is registered under its plugin name here.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()


sys.path.insert(0, str(ROOT / "scripts"))
import cloudfree_import  # noqa: E402,F401  (registers this checkout as the package `cloudfree`)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# QGIS computes statistics when it loads a raster and GDAL would save them beside the input
# (INPUT.aux.xml): the tests, like the plugin's headless wrapper, never touch an input.
os.environ.setdefault("GDAL_PAM_ENABLED", "NO")
# Networks exported to ONNX (models/onnx_export.py) go to a folder of this test session, removed at
# the end, never to the user's cache.
if not os.environ.get("CLOUDFREE_ONNX_CACHE"):
    import atexit
    import shutil
    import tempfile

    os.environ["CLOUDFREE_ONNX_CACHE"] = tempfile.mkdtemp(prefix="cloudfree-onnx-tests-")
    atexit.register(shutil.rmtree, os.environ["CLOUDFREE_ONNX_CACHE"], True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the real test data is expected in {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA
