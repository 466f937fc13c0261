"""Multi-date fusion: one cloud-free image from K co-registered dates of the same place.

Method: Rafique, Blanton and Jacobs, "Weakly Supervised Fusion of Multiple Overhead Images"
(CVPRW 2019): a quality network scores every pixel of every date, a softmax across dates turns
the scores into per-date weight maps, and the fused image is the weighted sum of the dates;
with the baselines analysts expect (per-pixel mean, median, best available date).

Modules: ``scaling`` (normalisation scheme), ``quality`` (the quality network and loaded
models), ``baselines`` (mean, median, best), ``fuse`` (fusion of arrays), ``rasters`` (fusion
of rasters, block by block), ``config`` (training configuration), ``data`` (training data),
``segmentation`` (the weak-supervision segmentation network), ``validation`` (held-out
figures), ``train`` (the training run), ``report`` (the training report).
"""

from .baselines import allowed_dates, best_weight_maps, mean_weight_maps, median_fusion
from .config import MODES, FusionTrainConfig, ndvi_series_config
from .data import SeriesData, cloud_copies, self_supervised_batch, weak_batch
from .fuse import METHODS, FusionSettings, fuse_arrays, fuse_block
from .quality import (
    DEFAULT_MODEL_FILE,
    POLARITIES,
    QUALITY_NET,
    TASK,
    FusionModel,
    build_quality_net,
    fuse_batch,
    masked_softmax,
    quality_features,
    quality_hyperparameters,
    quality_logits,
    resolve_polarity,
)
from .rasters import FuseRasterOptions, fuse_rasters
from .report import write_training_report
from .scaling import NORMALIZATION, band_statistics, raster_statistics, to_network_space
from .segmentation import SEG_NET, SEG_TASK, segment, segmentation_scores
from .train import FusionTrainResult, train_fusion
from .validation import ValidationCase, validate, validation_cases, validation_samples, validation_targets

__all__ = [
    "DEFAULT_MODEL_FILE", "METHODS", "MODES", "NORMALIZATION", "POLARITIES", "QUALITY_NET", "SEG_NET", "SEG_TASK",
    "TASK", "FusionModel", "FusionSettings", "FusionTrainConfig", "FusionTrainResult", "SeriesData",
    "ValidationCase", "allowed_dates", "band_statistics", "best_weight_maps", "build_quality_net", "cloud_copies",
    "fuse_arrays", "fuse_batch", "fuse_block", "fuse_rasters", "FuseRasterOptions", "masked_softmax", "mean_weight_maps",
    "median_fusion", "ndvi_series_config", "quality_features", "quality_hyperparameters", "quality_logits",
    "raster_statistics", "resolve_polarity", "segment", "segmentation_scores", "self_supervised_batch",
    "to_network_space", "train_fusion", "validate", "validation_cases", "validation_samples", "validation_targets",
    "weak_batch", "write_training_report",
]
