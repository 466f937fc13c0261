"""Build the shipped Processing model "Cloud-free image from a stack" with the QGIS API, validate it and save it.

    .venv/bin/python scripts/build_chain_model.py

writes processing_provider/chains/cloud_free_stack.model3 (what processing_provider/chains/stack_model.py
describes). Run it after changing that module; tests/qgis/test_chain_model.py checks the two agree.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import cloudfree_import  # noqa: E402,F401  (this checkout as the package `cloudfree`)
from qgis.core import QgsApplication  # noqa: E402


def main() -> int:
    app = QgsApplication([], False)
    app.initQgis()
    from cloudfree.processing_provider.chains.stack_model import FILE, build_model
    from cloudfree.processing_provider.provider import CloudFreeProvider

    provider = CloudFreeProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    model = build_model()
    ok, errors = model.validate()
    if not ok:
        print("The model does not validate:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    if not model.toFile(FILE):
        print(f"Cannot write {FILE}", file=sys.stderr)
        return 1
    print(f"wrote {FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
