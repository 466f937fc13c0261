"""CloudFree engine: everything that computes, with no qgis or PyQt imports. Read this map first.

Capabilities (each a package; its ``__init__`` lists its public API, its modules one job each):

- ``cloud_removal``  pix2pix cloud removal: config, scaling, sources, pairs, synthetic, crops,
                     generators, checkpoints, validation, train, prior, feathering, infer, report;
                     domain (training range); guides, guided, baselines (guided removal); sample (one
                     decimated read); triplets, residual (the residual generator on real triplets),
                     choice (which shipped model fits an input); temporal, coregister, dates,
                     reconstruct, provenance, provenance_map, selfcheck (reconstruction from other
                     dates with provenance, predicted error and a self-check)
- ``fusion``         multi-date fusion (Rafique et al. 2019): scaling, quality, baselines, fuse,
                     rasters, config, data, segmentation, validation, train, report
- ``registration``   SIFT + CNN registration (Ye et al. 2018): sources, detect, describe, train,
                     match, transforms, refine, result, outputs, pipeline; structure (across modalities)
- ``detection``      cloud and shadow masks from a pretrained detector (ukis-csmask, ONNX Runtime):
                     bands, csmask, trained, masks, detect
- ``segmentation``   U-Net segmentation with Dice, regions, automatic-K clustering: classes, losses,
                     model, data, config, train, infer, report, regions, khistogram, autocluster
- ``stack``          a stack of dates made ready for removal (prepare) and the chain's report (report)

Shared modules underneath (they never import a capability):

- ``errors``         the exception hierarchy; Processing maps it to QgsProcessingException
- ``checks``         checks of chosen settings, with messages that name the setting
- ``runtime``        devices, threads, progress and cancel callbacks, dependency hints
- ``windows``        the one ``Window`` type and block iterator
- ``atomic``         the one atomic writer (temporary file beside the output, renamed when whole)
- ``raster``         GDAL I/O: ``RasterInfo`` (opened once), window, padded and decimated reads, writer
- ``grids``          same-grid checks, overlap, warping onto a reference, rasterising labels
- ``tiling``         the tiled executor: overlapping tiles, seamless blending, bounded memory
- ``distributed``    the Dask executor (SCHEDULER): tiles and windows as tasks on a cluster, imported only
                     when a scheduler is asked for
- ``normalization``  percentile scaling to network space (numpy and torch) and display stretches
- ``augment``        rotation/flip augmentation of training crops
- ``networks``       every nn.Module: the U-Net family, pix2pix generators, PatchGAN, descriptor CNN
- ``unmixing``       the fill and the linear unmixing of masked pixels (torch functions, no weights)
- ``weights``        the model file (safetensors + JSON metadata) and the one strict loader
- ``backends``       what runs a network at inference (auto, torch, ONNX Runtime), behind one callable
- ``backend_choice`` the engine ``auto`` measured as faster for a network here, remembered for later runs
- ``catalogue``      the shipped models: list them, find one by name, describe one
- ``onnx_export``    a network exported to ONNX once, cached per weights in the user's cache folder
- ``reports``        self-contained HTML training reports
- ``metrics``        PSNR, SSIM, MAE, RMSE, SAM on arrays
- ``class_metrics``  confusion matrix, Dice, IoU, accuracy, mIoU of class maps
- ``comparison``     the same figures (and class metrics) between two rasters, block by block, as a JSON report
- ``noise``          hashed gradient noise any window computes on its own
- ``radar``          SAR layers: recognised, dB <-> linear power, the Lee speckle filter
- ``clouds``         synthetic clouds, shadows and gaps over rasters or arrays
- ``quicklook``      PNG previews

Models that ship with the plugin live in ``models/pretrained/``.
"""
