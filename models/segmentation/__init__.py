"""Segmentation: a U-Net trained with Dice on labelled rasters, applied to whole rasters; regions; automatic-K clustering.

Modules: ``classes`` (class values, names, colours), ``losses`` (Dice, Dice + cross-entropy),
``model`` (the U-Net in use: build, scale inputs, save, load), ``data`` (inputs, labels, the
spatial validation block, tiles), ``config`` (training settings and result), ``train``
(train_segmentation), ``infer`` (segment: class raster and probabilities through the tiler),
``regions`` (connected regions of chosen classes as polygons), ``khistogram`` (per-band
histogram k-means that splits clusters until they look normal), ``autocluster`` (its raster
classification), ``report`` (the training report). Class metrics live in the shared
``models.class_metrics`` (``comparerasters`` uses them too).
"""

from .classes import NODATA_CLASS, ClassTable, default_colours
from .config import SegmentationTrainConfig, SegmentationTrainResult
from .data import LabelSource, TrainingData, load_training_data
from .losses import LOSSES, dice_ce_loss, segmentation_loss, soft_dice_loss
from .model import FUSION_TASK, TASK, SegmentationModel, array_logits, unet_hyperparameters
from .autocluster import AutoclusterOptions, autocluster
from .infer import SegmentOptions, segment
from .khistogram import BandClusters, KHistogramSettings, cluster_band
from .regions import RegionOptions, regions
from .report import write_training_report
from .train import train_segmentation

__all__ = [
    "AutoclusterOptions", "BandClusters", "KHistogramSettings", "RegionOptions", "SegmentOptions", "autocluster",
    "cluster_band", "regions", "segment", "write_training_report", "FUSION_TASK", "LOSSES", "NODATA_CLASS", "TASK", "ClassTable", "LabelSource", "SegmentationModel",
    "SegmentationTrainConfig", "SegmentationTrainResult", "TrainingData", "array_logits", "default_colours",
    "dice_ce_loss", "load_training_data", "segmentation_loss", "soft_dice_loss", "train_segmentation",
    "unet_hyperparameters",
]
