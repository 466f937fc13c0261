"""Mask codes: classes from probabilities, dilation by a Euclidean disk, counts and fractions."""

import numpy as np

from cloudfree.models import detection as dt


def test_most_probable_class_and_nodata():
    cloud = np.array([[200, 10, 100, 255]], np.uint8)
    shadow = np.array([[10, 200, 100, 255]], np.uint8)  # clear = 250 - cloud - shadow: 40, 40, 50
    assert dt.classes_from_probabilities(cloud, shadow).tolist() == [[dt.CLOUD, dt.SHADOW, dt.CLOUD, dt.NODATA]]
    tie = np.array([[100]], np.uint8)  # 100 / 100 / 50: cloud and shadow tie, cloud (the lower code) wins
    assert dt.classes_from_probabilities(tie, tie)[0, 0] == dt.CLOUD


def test_dilation_is_a_euclidean_disk_into_clear_pixels_only():
    classes = np.zeros((11, 11), np.uint8)
    classes[5, 5] = dt.CLOUD
    grown = dt.dilate_classes(classes, 2)
    yy, xx = np.mgrid[:11, :11]
    assert np.array_equal(grown == dt.CLOUD, (yy - 5) ** 2 + (xx - 5) ** 2 <= 4)  # 13 pixels
    assert np.array_equal(dt.dilate_classes(classes, 0), classes)


def test_dilation_priorities_cloud_over_shadow_nodata_untouched():
    classes = np.zeros((1, 9), np.uint8)
    classes[0, 2], classes[0, 6], classes[0, 4] = dt.CLOUD, dt.SHADOW, dt.NODATA
    grown = dt.dilate_classes(classes, 3)
    # the cloud reaches 0..5 and the shadow 3..8; the nodata pixel and the original shadow stay
    assert grown.tolist() == [[1, 1, 1, 1, 255, 1, 2, 2, 2]]


def test_counts_and_fractions_over_valid_pixels():
    counts = dt.MaskCounts()
    counts.add(np.array([[0, 1, 1, 2], [255, 255, 0, 0]], np.uint8))
    counts.add(np.array([[1, 0]], np.uint8))
    assert (counts.clear, counts.cloud, counts.shadow, counts.nodata) == (4, 3, 1, 2)
    assert counts.cloud_fraction == 3 / 8 and counts.shadow_fraction == 1 / 8
    assert dt.MaskCounts().cloud_fraction == 0.0
