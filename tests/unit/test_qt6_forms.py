"""QGIS 4 runs on Qt6, whose PyQt6 removed the Qt5-only forms: unscoped enums (``Qt.AlignRight`` for
``Qt.AlignmentFlag.AlignRight``), ``exec_()``, and imports from ``PyQt5`` rather than ``qgis.PyQt``. This
test reads the plugin's Qt code (``ui/``, ``plugin.py``, ``processing_provider/``) and fails on any of
them, after QGIS's own ``pyqt5_to_pyqt6`` rules. (QGIS's ``Qgs*`` enums are left alone: QGIS 3.22 has
only their unscoped forms, and QGIS 4 keeps them.)"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([ROOT / "plugin.py", ROOT / "__init__.py"] + list((ROOT / "ui").rglob("*.py"))
               + list((ROOT / "processing_provider").rglob("*.py")))
# Qt.Name or QClass.Name, where Name is capitalised and not followed by another attribute or a call:
# an unscoped enum member (a scoped one reads Qt.Enum.Name, a nested class QClass.Name(...)).
UNSCOPED = re.compile(r"\b(Qt|Q(?!gs|gis)[A-Z][A-Za-z]+)\.([A-Z][A-Za-z0-9]*)\b(?![.(\w])")
QT5_ONLY = [(re.compile(r"\.exec_\("), "exec_() (use exec())"),
            (re.compile(r"^\s*(from|import)\s+PyQt5", re.M), "a PyQt5 import (use qgis.PyQt)"),
            (re.compile(r"^\s*(from|import)\s+PyQt6", re.M), "a PyQt6 import (use qgis.PyQt)")]


def _code(path: Path) -> str:
    """The file without comments and string literals (their words are not code)."""
    text = path.read_text()
    text = re.sub(r'("""|\'\'\')(.|\n)*?\1', '""', text)
    text = re.sub(r'"[^"\n]*"|\'[^\'\n]*\'', '""', text)
    return re.sub(r"#.*", "", text)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_qt5_only_forms(path):
    code = _code(path)
    found = [f"{m.group(0)} (unscoped enum)" for m in UNSCOPED.finditer(code)]
    found += [what for pattern, what in QT5_ONLY if pattern.search(code)]
    assert not found, f"{path.relative_to(ROOT)}: " + ", ".join(sorted(set(found)))


def test_the_pattern_catches_the_qt5_forms():
    assert UNSCOPED.search("w.setAlignment(Qt.AlignRight | Qt.AlignTop)")
    assert UNSCOPED.search("box.addButton(b, QDialogButtonBox.ActionRole)")
    assert not UNSCOPED.search("w.setAlignment(Qt.AlignmentFlag.AlignRight)")
    assert not UNSCOPED.search("QgsProcessingParameterNumber.Integer")
    assert not UNSCOPED.search("x = QTimer.singleShot(0, f)")


def test_metadata_declares_qt6_support():
    assert re.search(r"^supportsQt6=True$", (ROOT / "metadata.txt").read_text(), re.M)
