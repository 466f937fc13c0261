"""Shared test set-up: import this checkout as the package ``cloudfree`` and locate the data.

The repository root is the plugin folder, but a clone may be called anything
(``main``, ``fresh``...), so the package is registered under its plugin name here.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()
SAMPLE_DATA = ROOT / "sample_data"


def _register_package() -> None:
    if "cloudfree" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "cloudfree", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["cloudfree"] = module
    spec.loader.exec_module(module)


_register_package()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the real test data is expected in {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA
