"""Exceptions raised by the engine.

Processing algorithms catch :class:`CloudFreeError` and re-raise it as
``QgsProcessingException`` with the same message, so every message here is
written for an analyst: it names the layer and says what is wrong.
"""


class CloudFreeError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputError(CloudFreeError):
    """An input raster or parameter cannot be used (missing file, bad band, all nodata...)."""


class GridMismatchError(InputError):
    """Rasters that must share a grid (CRS, pixel size, origin, size) do not."""


class ModelFileError(CloudFreeError):
    """A model file is corrupt, of an unknown format, or does not fit the input."""


class DependencyError(CloudFreeError):
    """A Python package the plugin needs is not installed in QGIS's Python."""


class ClusterError(CloudFreeError):
    """The Dask cluster asked for (SCHEDULER) cannot be reached, has no workers or lost the run."""


class Cancelled(CloudFreeError):
    """The user cancelled the run; outputs have been removed."""
