"""QGIS fixtures: processing initialised (pytest-qgis) and the CloudFree provider registered."""

import pytest
from qgis.core import QgsApplication

from cloudfree.processing_provider.provider import CloudFreeProvider

_KEEP_ALIVE = []  # Python owns the provider objects; keep them alive while QGIS uses them


def ensure_provider():
    registry = QgsApplication.processingRegistry()
    if registry.providerById("cloudfree") is None:
        provider = CloudFreeProvider()
        _KEEP_ALIVE.append(provider)
        registry.addProvider(provider)
    return registry.providerById("cloudfree")


@pytest.fixture()
def provider(qgis_processing):
    return ensure_provider()


@pytest.fixture()
def run_alg(provider):
    import processing

    def run(algorithm_id, params):
        return processing.run(algorithm_id, params)

    return run


@pytest.fixture()
def run_logged(provider):
    """``run_logged(algorithm_id, params)``: processing.run with a feedback whose log the test reads,
    returning ``(results, log text)``."""
    import processing
    from qgis.core import QgsProcessingFeedback

    def run(algorithm_id, params):
        feedback = QgsProcessingFeedback()
        return processing.run(algorithm_id, params, feedback=feedback), feedback.textLog()

    return run


@pytest.fixture()
def reregister():
    """For tests that remove the provider (QGIS deletes it): put a fresh one back."""
    return ensure_provider
