"""Print the metadata of CloudFree model files: scripts/model_info.py models/pretrained/*.safetensors"""

import json
import sys

import cloudfree_import  # noqa: F401  (scripts/ is on sys.path when this file runs)
from cloudfree.models.weights import read_metadata

for path in sys.argv[1:]:
    meta = read_metadata(path)
    print(f"== {path}")
    print(json.dumps(json.loads(meta.to_json()), indent=1))
