"""The training report (models/cloud_removal/report.py)."""

import os

import pytest

from cloudfree.models import cloud_removal as cr


def test_report_html(trained, tmp_path):
    pytest.importorskip("matplotlib")
    result, *_ = trained
    path = cr.report_html(result.history, result.samples, str(tmp_path / "report.html"))
    text = open(path, encoding="utf-8").read()
    assert text.count("data:image/png;base64,") == 2 + len(result.samples)
    assert os.path.getsize(path) > 1000
