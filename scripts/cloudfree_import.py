"""Import this checkout as the package ``cloudfree`` (the plugin's name), whatever the folder is called.

Scripts and benchmarks do ``import cloudfree_import`` after putting ``scripts/`` on ``sys.path``;
QGIS itself imports the plugin by the folder it was installed under.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def register() -> object:
    if "cloudfree" not in sys.modules:
        spec = importlib.util.spec_from_file_location("cloudfree", ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["cloudfree"] = module
        spec.loader.exec_module(module)
    return sys.modules["cloudfree"]


register()
