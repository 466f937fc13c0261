"""CloudFree engine: everything that computes, with no qgis or PyQt imports.

Open this package first to find "where the maths is":

- ``errors``    the exception hierarchy that Processing algorithms map to QgsProcessingException
- ``raster``    GDAL I/O: blocks, georeferencing, nodata, atomic outputs, grid checks, scaling
- ``tiling``    overlapping tiles, blending weights, the executor that runs a function over a raster
- ``runtime``   device selection and cancel/progress plumbing
- ``weights``   the model file format (safetensors + JSON metadata) and its validation
- ``networks``  torch building blocks shared by all models
- ``clouds``    synthetic cloud, shadow and gap simulation
- ``metrics``   PSNR, SSIM, MAE, RMSE, SAM between two rasters
- ``cloud_removal``  pix2pix training and tiled inference
- ``registration``   SIFT + CNN keypoint matching, robust fits, sub-pixel refinement, accuracy figures
- ``descriptors``    the CNN patch descriptor used by registration, and its training
- ``fusion``    multi-date fusion: quality network, baselines, training
- ``quicklook`` PNG previews

Weights of the models that ship with the plugin live in ``models/pretrained/``.
"""
