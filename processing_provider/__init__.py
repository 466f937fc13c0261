"""QGIS Processing side of CloudFree: the provider and one thin algorithm per file."""
