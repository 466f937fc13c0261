"""Training on cloudy/clear pairs (models/cloud_removal/train.py, config.py, pairs.py, sources.py,
crops.py, validation.py, report.py): the pix2pix generator, fixed scaling learned once and applied
to inputs and targets alike, masks optional, many pairs of different sizes, held-out pairs and their
figures, the discriminator's real and fake losses, early stopping.

The pairs are real Sentinel-2 L2A patches (BigEarthNet, UInt16 digital numbers) whose clear image
is, by construction, a radiometric change of the cloudy one: ``clear = 0.8 x DN + 1000`` (in
reflectance ``0.8 x r + 0.1``: the whole histogram lifted and compressed, as haze does in reverse).
"""

import json

import numpy as np
import pytest
import torch
from osgeo import gdal

from cloudfree.models import cloud_removal as cr
from cloudfree.models import networks
from cloudfree.models.cloud_removal.sources import hold_out_pairs
from cloudfree.models.cloud_removal.train import total_steps
from cloudfree.models.errors import InputError
from cloudfree.models.normalization import FIXED_SCHEME, FixedScaling
from cloudfree.models.raster import raster_info, write_array
from cloudfree.models.weights import load_model, read_metadata

TINY_PAIRS = dict(depth=4, base=8, tile=64, disc_layers=2, batch_size=4, device="cpu", num_samples=1)
#: runs on one or two 120-row patches: a block of rows for validation needs two tiles of rows
SMALL_TILES = {**TINY_PAIRS, "tile": 32}
#: ben patch -> the crop (x0, y0, width, height) it trains with: four pairs of four sizes
CROPS = {0: (0, 0, 120, 120), 1: (0, 0, 96, 120), 2: (10, 0, 110, 100), 3: (0, 5, 88, 110)}
GAIN, OFFSET = 0.8, 1000.0  # clear = GAIN x cloudy + OFFSET (digital numbers)


def changed(dn):
    return GAIN * np.asarray(dn, dtype=np.float64) + OFFSET


def write_pair(folder, shared_data, k, crop, mask=None):
    """A real patch (cloudy, UInt16 DN) and its radiometric change (clear, Float32) on the patch's grid."""
    x0, y0, w, h = crop
    ds = gdal.Open(str(shared_data / "s1_s2_pairs" / f"ben{k}_s2_bgrn.tif"))
    dn = ds.ReadAsArray(x0, y0, w, h)
    gt = list(ds.GetGeoTransform())
    gt[0] += x0 * gt[1]
    gt[3] += y0 * gt[5]
    grid = dict(geotransform=tuple(gt), crs_wkt=ds.GetProjection())
    cloudy = write_array(str(folder / f"cloudy_ben{k}.tif"), dn.astype(np.uint16), dtype="uint16", **grid)
    clear = write_array(str(folder / f"clear_ben{k}.tif"), changed(dn).astype(np.float32), **grid)
    if mask is not None:
        mask = write_array(str(folder / f"mask_ben{k}.tif"), mask.astype(np.uint8), dtype="uint8", **grid)
    return cr.PairFiles(cloudy, clear, mask, f"ben{k}")


@pytest.fixture(scope="module")
def ben_pairs(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ben_pairs")
    return [write_pair(folder, shared_data, k, crop) for k, crop in CROPS.items()], folder


@pytest.fixture(scope="module")
def radiometric(ben_pairs, tmp_path_factory):
    """A tiny pix2pix trained for 450 steps (about 8 s) on the four pairs, without masks, default scaling."""
    pairs, _ = ben_pairs
    folder = tmp_path_factory.mktemp("radiometric")
    cfg = cr.TrainConfig(sources=cr.pair_sources(pairs), band_names=["blue", "green", "red", "nir"], steps=450,
                         lr=5e-3, val_every=150, **TINY_PAIRS)
    lines = []
    result = cr.train_cloud_removal(cfg, str(folder / "pix2pix.safetensors"), log=lines.append)
    return result, lines, folder


def test_a_model_trained_on_a_radiometric_change_reproduces_it_on_an_unseen_scene(radiometric, shared_data, tmp_path):
    """Trained on digital numbers, applied to digital numbers of another place (ben4, never seen), without a
    mask: the output is the changed image, with an error well below the change itself."""
    result, *_ = radiometric
    unseen = shared_data / "s1_s2_pairs" / "ben4_s2_bgrn.tif"
    out = tmp_path / "ben4_changed.tif"
    cr.remove_clouds(raster_info(str(unseen)), str(out), result.model_path,
                     options=cr.RemovalOptions(tile=64, device="cpu"))
    dn = gdal.Open(str(unseen)).ReadAsArray().astype(np.float64)
    got = gdal.Open(str(out)).ReadAsArray().astype(np.float64)
    truth = changed(dn)
    change = np.abs(truth - dn).mean()
    error = np.abs(got - truth).mean()
    assert change > 600  # the change: hundreds of digital numbers
    assert error < 0.25 * change, (error, change)
    # the brightness moved with the change, in digital numbers
    assert abs(got.mean() - truth.mean()) < 0.25 * abs(truth.mean() - dn.mean())
    assert (got != dn).mean() > 0.99  # no mask: every pixel is generated


def test_scaling_is_learned_from_the_training_pairs_and_stored_in_the_model_file(radiometric, ben_pairs):
    result, *_ = radiometric
    pairs, _ = ben_pairs
    model, meta = load_model(result.model_path, task="cloud_removal", band_count=4)
    assert meta.architecture == "unet_generator" and meta.extra_channels == []  # pix2pix, no mask channel
    assert meta.hyperparameters["upsample"] == "transpose" and meta.hyperparameters["dropout_blocks"] == 3
    assert meta.training["generator"] == "pix2pix" and meta.training["scaling"] == "learned"
    assert meta.normalization["scheme"] == FIXED_SCHEME
    # learned once over the valid pixels of the training pairs' inputs AND targets (patches this small are read
    # whole), never from the held-out pair
    held = set(meta.training["held_out"])
    assert len(held) == 1
    values = [[] for _ in range(4)]
    for p in pairs:
        if p.name in held:
            continue
        for path in (p.cloudy, p.clear):
            for b, band in enumerate(gdal.Open(path).ReadAsArray().astype(np.float32)):
                values[b].append(band.ravel())
    expected = FixedScaling.learn([np.concatenate(v) for v in values])
    assert meta.normalization == expected.to_dict()
    assert min(meta.normalization["offset"]) > 500  # digital numbers, not reflectance


def test_the_model_records_its_input_range_and_warns_on_an_image_outside_it(radiometric, ben_pairs, tmp_path):
    """The training inputs' 0.5-99.5 % range per band is stored; an image of the same kind passes quietly, one
    whose values lie beyond it (a brighter surface: the unseen patch x 3) gets a warning naming the layer."""
    result, *_ = radiometric
    pairs, _ = ben_pairs
    stored = read_metadata(result.model_path).training["input_range"]
    assert stored["percentiles"] == [0.5, 99.5] and len(stored["low"]) == len(stored["high"]) == 4
    held = read_metadata(result.model_path).training["held_out"]
    inputs = np.concatenate([gdal.Open(p.cloudy).ReadAsArray().reshape(4, -1) for p in pairs if p.name not in held],
                            axis=1).astype(np.float64)
    assert np.allclose(stored["low"], np.percentile(inputs, 0.5, axis=1), rtol=0.02)
    assert np.allclose(stored["high"], np.percentile(inputs, 99.5, axis=1), rtol=0.02)
    seen = cr.remove_clouds(raster_info(pairs[0].cloudy), str(tmp_path / "a.tif"), result.model_path,
                            options=cr.RemovalOptions(tile=64, device="cpu"))
    assert seen["outside_training_range"] < 0.05 and seen["warning"] is None
    bright = write_array(str(tmp_path / "bright.tif"),
                         3.0 * gdal.Open(pairs[0].cloudy).ReadAsArray().astype(np.float32), like=raster_info(pairs[0].cloudy))
    warned = cr.remove_clouds(raster_info(bright, "bright"), str(tmp_path / "b.tif"), result.model_path,
                              options=cr.RemovalOptions(tile=64, device="cpu"))
    assert warned["outside_training_range"] > 0.5
    assert "of the pixels of 'bright' have values outside the range" in warned["warning"]


def test_several_pairs_of_different_sizes_train_with_whole_pairs_held_out(radiometric):
    result, lines, _ = radiometric
    meta = read_metadata(result.model_path)
    assert sorted(meta.training["sources"]) == ["ben0", "ben1", "ben2", "ben3"]
    assert any("held out for validation" in line for line in lines)
    # per-pair held-out figures: the cloudy input's and the output's, on the pair training never saw
    assert [f["pair"] for f in result.held_out] == meta.training["held_out"]
    fig = result.held_out[0]
    assert fig["held_out"] == "whole pair" and fig["tiles"] >= 1
    assert fig["psnr"] > fig["input_psnr"] + 6 and fig["ssim"] > fig["input_ssim"]
    assert meta.metrics["held_out_pairs"] == result.held_out


def test_discriminator_real_and_fake_losses_are_recorded(radiometric, tmp_path):
    result, *_ = radiometric
    h = result.history
    assert len(h["loss_d_real"]) == len(h["loss_d_fake"]) == len(h["loss_d"]) == 450
    np.testing.assert_allclose(h["loss_d"], 0.5 * (np.array(h["loss_d_real"]) + np.array(h["loss_d_fake"])),
                               rtol=1e-5)
    page = cr.report_html(h, result.samples, str(tmp_path / "report.html"), held_out=result.held_out)
    text = open(page, encoding="utf-8").read()
    assert "Held-out figures per pair" in text and result.held_out[0]["pair"] in text and "D real" in text


def test_two_pairs_of_different_sizes_each_keep_a_block_of_rows_for_validation(ben_pairs, tmp_path):
    """With fewer than three pairs, none is held out whole: each keeps its last rows for validation, and
    training crops come from both pairs, inside their training rows only."""
    pairs, _ = ben_pairs
    big, small = pairs[0], cr.PairFiles(pairs[1].cloudy, pairs[1].clear, None, "narrow")  # 120x120 and 96x120
    sampler = cr.CropSampler(cr.pair_sources([big, small]), 32, use_mask_channel=False)
    rng = np.random.default_rng(0)
    for _ in range(12):
        sampler.batch(2, rng)
    used = {k for k, _ in sampler.drawn_windows}
    assert used == {0, 1}
    for k, w in sampler.drawn_windows:
        o = sampler.sources[k]
        assert w.row_off + w.height <= o.t1 and w.col_off + w.width <= o.width
    cfg = cr.TrainConfig(sources=cr.pair_sources([big, small]), steps=4, val_every=2, lr=1e-3, **SMALL_TILES)
    result = cr.train_cloud_removal(cfg, str(tmp_path / "two.safetensors"))
    assert [(f["pair"], f["held_out"]) for f in result.held_out] == [("ben0", "last rows"), ("narrow", "last rows")]
    assert read_metadata(result.model_path).training["held_out"] == []


def test_pairs_of_one_place_are_held_out_together(ben_pairs):
    """Several cloudy images of one place (one clear raster) are one place: held out all together or not at all,
    so validation never sees a place training saw; with fewer than three places, no pair is held out whole."""
    pairs, _ = ben_pairs
    copies = [cr.PairFiles(pairs[1].cloudy, pairs[0].clear, None, "ben0 copy"),
              cr.PairFiles(pairs[2].cloudy, pairs[0].clear, None, "ben0 copy")]
    sources = cr.pair_sources(pairs + copies)
    for seed in range(8):
        held, names = hold_out_pairs(sources, 0.2, seed)
        roles = [s.role for s in held]
        assert roles[0] == roles[4] == roles[5] and roles.count("validation") in (1, 3)
        assert names == [s.name for s in held if s.role == "validation"]
    two_places = cr.pair_sources([pairs[0], pairs[1]] + copies)
    assert hold_out_pairs(two_places, 0.2, 0) == (two_places, [])


def test_pairs_smaller_than_a_tile_train_on_mirror_padded_crops(ben_pairs, tmp_path):
    """A 120 x 120 and a 96 x 120 pair with 128-pixel tiles (the small model's): each crop is the whole training
    block, mirror-padded to the tile as inference pads a small raster; the padding is never a target."""
    pairs, _ = ben_pairs
    sources = cr.pair_sources(pairs[:2])
    sampler = cr.CropSampler(sources, 128, use_mask_channel=False, augment=False)
    sampler.use_fixed_scaling(FixedScaling.preset("sentinel2_l1c", 4))
    x, y, known, mask = sampler.batch(6, np.random.default_rng(1))
    assert x.shape == (6, 4, 128, 128) and y.shape == (6, 4, 128, 128)
    for i, (k, w) in enumerate(sampler.drawn_windows):
        o = sampler.sources[k]
        assert (w.col_off, w.row_off, w.width, w.height) == (0, 0, o.width, o.t1)  # the whole training block
        assert known[i, :w.height, :w.width].all() and known[i].sum() == w.width * w.height
        np.testing.assert_array_equal(x[i, :, w.height:2 * w.height - 1][:, ::-1], x[i, :, :w.height - 1])
    cfg = cr.TrainConfig(sources=sources, steps=2, val_every=2, **{**TINY_PAIRS, "tile": 128})
    result = cr.train_cloud_removal(cfg, str(tmp_path / "padded.safetensors"))
    assert [f["tiles"] for f in result.held_out] == [1, 1]


def test_a_preset_scaling_maps_inputs_and_targets_alike(ben_pairs, tmp_path):
    """Targets are mapped with the same fixed scaling as the inputs (not with the input image's statistics)."""
    pairs, _ = ben_pairs
    preset = FixedScaling.preset("sentinel2_l1c", 4)
    sampler = cr.CropSampler(cr.pair_sources(pairs[:1]), 32, use_mask_channel=False)
    sampler.use_fixed_scaling(preset)
    x, y, known, mask = sampler.validation_set(2)
    k, w = sampler.validation_windows(2)[0]
    d = sampler.sources[k].read(w)
    np.testing.assert_array_equal(x[0], preset.to_network(d["cloudy"].astype(np.float64)))
    np.testing.assert_array_equal(y[0], np.clip(preset.to_network(d["clear"].astype(np.float64)), -1, 1))
    cfg = cr.TrainConfig(sources=cr.pair_sources(pairs[:2]), steps=2, val_every=2, scaling="sentinel2_l1c",
                         **SMALL_TILES)
    result = cr.train_cloud_removal(cfg, str(tmp_path / "preset.safetensors"))
    assert read_metadata(result.model_path).normalization == preset.to_dict()


def test_pairs_with_masks_train_with_the_mask_channel(ben_pairs, shared_data, tmp_path):
    pairs, _ = ben_pairs
    mask = np.zeros((110, 88), np.uint8)
    mask[20:60, 10:50] = 1
    masked = write_pair(tmp_path, shared_data, 3, CROPS[3], mask=mask)
    mixed = cr.pair_sources([pairs[0], masked])
    assert cr.resolve_choices(cr.TrainConfig(sources=mixed), mixed).mask_channel is False  # not every pair has one
    cfg = cr.TrainConfig(sources=cr.pair_sources([masked]), steps=2, val_every=2, **SMALL_TILES)
    result = cr.train_cloud_removal(cfg, str(tmp_path / "masked.safetensors"))
    meta = read_metadata(result.model_path)
    assert meta.extra_channels == ["cloud_mask"] and meta.hyperparameters["in_channels"] == 5
    assert "composite" in result.samples[0]  # inference keeps the clear pixels: generated inside the mask only


def test_generator_and_scaling_choices(scene_source, ben_pairs):
    pairs, _ = ben_pairs
    paired = cr.pair_sources(pairs)
    synthetic = [scene_source()]
    choose = cr.resolve_choices
    assert choose(cr.TrainConfig(sources=synthetic), synthetic) == cr.TrainingChoices(
        "unmix_blend", "resize", True, "per_image")  # as the shipped model was trained
    assert choose(cr.TrainConfig(sources=paired), paired) == cr.TrainingChoices("pix2pix", "transpose", False,
                                                                               "learned")
    assert choose(cr.TrainConfig(sources=paired, generator="plain"), paired).generator == "pix2pix"  # old name
    assert choose(cr.TrainConfig(sources=synthetic, generator="pix2pix"), synthetic).mask_channel is True
    with pytest.raises(InputError, match="unmix_blend generator needs a cloud mask for every"):
        choose(cr.TrainConfig(sources=paired, generator="unmix_blend", use_mask_channel=True), paired)
    with pytest.raises(InputError, match="needs the mask channel"):
        choose(cr.TrainConfig(sources=synthetic, generator="unmix_blend", use_mask_channel=False), synthetic)
    with pytest.raises(InputError, match="per-image scaling"):
        choose(cr.TrainConfig(sources=synthetic, scaling="landsat_c2_l2"), synthetic)
    with pytest.raises(InputError, match="Unknown scaling 'toa'"):
        cr.TrainConfig(sources=paired, scaling="toa").resolved()
    with pytest.raises(InputError, match="Unknown generator 'gan'"):
        cr.TrainConfig(sources=paired, generator="gan").resolved()


def test_pix2pix_weights_start_from_the_papers_normal_distribution():
    torch.manual_seed(0)
    g = cr.build_generator(4, 4, "small", kind="pix2pix")
    d = networks.init_pix2pix_weights(networks.PatchDiscriminator(8, base=32, layers=3, norm="instance"))
    for net in (g, d):
        convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        w = torch.cat([m.weight.detach().ravel() for m in convs])
        assert abs(float(w.mean())) < 1e-3 and float(w.std()) == pytest.approx(0.02, rel=0.02)
        assert all(m.bias is None or not m.bias.detach().any() for m in convs)
        norms = [m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
        scale = torch.cat([m.weight.detach() for m in norms])
        assert float(scale.mean()) == pytest.approx(1.0, abs=0.01) and 0.01 < float(scale.std()) < 0.03
    assert len([m for m in g.modules() if isinstance(m, torch.nn.Dropout)]) == 3  # the first three decoder blocks


def test_early_stopping_ends_a_run_that_stops_improving(ben_pairs, tmp_path):
    """With a zero learning rate nothing improves: patience 1 stops at the second validation."""
    pairs, _ = ben_pairs
    cfg = cr.TrainConfig(sources=cr.pair_sources(pairs[:2]), steps=40, val_every=2, early_stopping=1, lr=0.0,
                         **SMALL_TILES)
    lines = []
    result = cr.train_cloud_removal(cfg, str(tmp_path / "early.safetensors"), checkpoint_dir=str(tmp_path / "ck"),
                                    log=lines.append)
    assert result.steps == 4 and result.history["stopped_early"] == 4
    assert any("Early stopping at step 4" in line for line in lines)
    assert read_metadata(result.model_path).training["stopped_early"] is True
    assert json.loads((tmp_path / "ck" / "latest.json").read_text())["step"] == 4


def test_epochs_count_passes_over_the_training_pixels(ben_pairs):
    pairs, _ = ben_pairs
    cfg = cr.TrainConfig(sources=[], epochs=2.5, batch_size=4)
    assert total_steps(cfg, 64 * 64 * 4 * 10, 64) == 25
    assert total_steps(cr.TrainConfig(sources=[], steps=7), 10 ** 6, 64) == 7
    with pytest.raises(InputError, match="epochs"):
        cr.TrainConfig(sources=[], epochs=0).resolved()


def test_resume_keeps_the_scaling_the_run_started_with(ben_pairs, tmp_path):
    pairs, _ = ben_pairs
    cfg = cr.TrainConfig(sources=cr.pair_sources(pairs[:2]), steps=2, val_every=0, checkpoint_every=2,
                         **SMALL_TILES)
    first = cr.train_cloud_removal(cfg, str(tmp_path / "a.safetensors"), checkpoint_dir=str(tmp_path / "ck"))
    state = json.loads((tmp_path / "ck" / "step_00000002" / "state.json").read_text())
    assert state["scaling"] == read_metadata(first.model_path).normalization
    again = cr.TrainConfig(sources=cr.pair_sources(pairs[:2]), steps=4, val_every=0, **SMALL_TILES)
    resumed = cr.train_cloud_removal(again, str(tmp_path / "b.safetensors"), resume_from=str(tmp_path / "ck"))
    assert resumed.steps == 4
    assert read_metadata(resumed.model_path).normalization == state["scaling"]


def test_pairs_from_a_csv_file_a_folder_and_layer_lists(ben_pairs, tmp_path):
    pairs, folder = ben_pairs
    csv = folder / "pairs.csv"
    csv.write_text("cloudy,clear,mask\n# a comment\ncloudy_ben0.tif,clear_ben0.tif\n\n"
                   f"{pairs[1].cloudy},clear_ben1.tif,\n")
    read = cr.read_pairs(str(csv))
    assert [(p.cloudy, p.clear, p.mask) for p in read] == [(pairs[0].cloudy, pairs[0].clear, None),
                                                           (pairs[1].cloudy, pairs[1].clear, None)]
    bad = tmp_path / "bad.csv"
    bad.write_text("cloudy_ben0.tif,clear_ben0.tif\ncloudy_ben1.tif\n")
    with pytest.raises(InputError, match=r"bad.csv', line 1: the raster .*cloudy_ben0.tif' does not exist"):
        cr.read_pairs(str(bad))
    bad.write_text(f"{pairs[0].cloudy},{pairs[0].clear}\n{pairs[1].cloudy}\n")
    with pytest.raises(InputError, match=r"bad.csv', line 2: expected cloudy,clear\[,mask\]; found 1 field"):
        cr.read_pairs(str(bad))
    with pytest.raises(InputError, match="does not exist"):
        cr.read_pairs(str(tmp_path / "none.csv"))
    # a folder: cloudy/ and clear/ matched by file name, masks from mask/
    for sub in ("cloudy", "clear", "mask"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for k in (0, 1):
        (tmp_path / "set" / "cloudy" / f"p{k}.tif").write_bytes(open(pairs[k].cloudy, "rb").read())
        (tmp_path / "set" / "clear" / f"p{k}.tif").write_bytes(open(pairs[k].clear, "rb").read())
    (tmp_path / "set" / "mask" / "p1.tif").write_bytes(open(pairs[1].cloudy, "rb").read())
    (tmp_path / "set" / "clear" / "p0.tif.aux.xml").write_text("<PAMDataset/>")  # sidecars are not rasters
    found = cr.read_pairs(str(tmp_path / "set"))
    assert [(p.name, p.mask is not None) for p in found] == [("p0", False), ("p1", True)]
    (tmp_path / "set" / "clear" / "p2.tif").write_bytes(b"")
    with pytest.raises(InputError, match="p2 is not in both cloudy/ and clear/"):
        cr.read_pairs(str(tmp_path / "set"))
    with pytest.raises(InputError, match="has no cloudy/ or clear/ subfolder"):
        cr.read_pairs(str(tmp_path / "set" / "mask"))
    # two lists matched by order
    assert len(cr.match_layers(["a", "b"], ["c", "d"])) == 2
    with pytest.raises(InputError, match="2 cloudy raster.* and 1 clear raster"):
        cr.match_layers(["a", "b"], ["c"])
    with pytest.raises(InputError, match="1 mask.* for 2 cloudy/clear pair"):
        cr.match_layers(["a", "b"], ["c", "d"], ["m"])
    names = [s.name for s in cr.pair_sources([cr.PairFiles("a", "b", None, "x"), cr.PairFiles("c", "d", None, "x")])]
    assert names == ["x", "x (2)"]


def write_png(path, rgb):
    """An 8-bit RGB PNG without georeferencing, as public paired benchmarks ship their images."""
    mem = gdal.GetDriverByName("MEM").Create("", rgb.shape[2], rgb.shape[1], 3, gdal.GDT_Byte)
    for b in range(3):
        mem.GetRasterBand(b + 1).WriteArray(rgb[b])
    gdal.GetDriverByName("PNG").CreateCopy(str(path), mem)
    return str(path)


def test_a_benchmark_folder_of_png_pairs_trains_and_its_model_clears_a_png(shared_data, tmp_path):
    """cloud/ and label/ folders of 8-bit RGB PNGs (as RICE and other public sets lay them out) are
    pairs; the model trained on them runs on a PNG and writes a GeoTIFF in pixel coordinates."""
    root = tmp_path / "RICE-like"
    for sub in ("cloud", "label"):
        (root / sub).mkdir(parents=True)
    for k in range(3):
        dn = gdal.Open(str(shared_data / "s1_s2_pairs" / f"ben{k}_s2_bgrn.tif")).ReadAsArray()[[2, 1, 0], :96, :96]
        clear = np.clip(dn / 8.0, 0, 255)
        hazy = 0.6 * clear + 0.4 * 230
        write_png(root / "label" / f"{k}.png", clear.astype(np.uint8))
        write_png(root / "cloud" / f"{k}.png", hazy.astype(np.uint8))
    (root / "readme.txt").write_text("not a raster")
    pairs = cr.read_pairs(str(root))
    assert [p.name for p in pairs] == ["0", "1", "2"] and all(p.clear.endswith(".png") for p in pairs)
    cfg = cr.TrainConfig(sources=cr.pair_sources(pairs), steps=6, val_every=3, **SMALL_TILES)
    result = cr.train_cloud_removal(cfg, str(tmp_path / "rgb.safetensors"))
    out = tmp_path / "cleared.tif"
    cr.remove_clouds(raster_info(pairs[0].cloudy), str(out), result.model_path,
                     options=cr.RemovalOptions(device="cpu"))
    ds = gdal.Open(str(out))
    assert (ds.RasterCount, ds.RasterXSize, ds.RasterYSize) == (3, 96, 96) and np.isfinite(ds.ReadAsArray()).all()


def test_a_pair_whose_band_counts_differ_is_refused_by_name(tmp_path):
    from cloudfree.models.cloud_removal.pairs import PairFiles, pair_sources

    (tmp_path / "cloudy").mkdir()
    (tmp_path / "clear").mkdir()
    write_array(str(tmp_path / "cloudy" / "p1.tif"), np.ones((4, 32, 32), np.float32))
    write_array(str(tmp_path / "clear" / "p1.tif"), np.ones((3, 32, 32), np.float32))
    pair = PairFiles(str(tmp_path / "cloudy" / "p1.tif"), str(tmp_path / "clear" / "p1.tif"), None, "p1")
    with pytest.raises(InputError, match=r"Pair 'p1'.*4 band\(s\).*3"):
        pair_sources([pair])
