"""Print the metadata of CloudFree model files: scripts/model_info.py models/weights/*.safetensors"""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cloudfree", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
module = importlib.util.module_from_spec(spec)
sys.modules["cloudfree"] = module
spec.loader.exec_module(module)
from cloudfree.models.weights import read_metadata  # noqa: E402

for path in sys.argv[1:]:
    meta = read_metadata(path)
    print(f"== {path}")
    print(json.dumps(json.loads(meta.to_json()), indent=1))
