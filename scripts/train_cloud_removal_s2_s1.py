"""Train the shipped residual cloud-removal model ``cloud_removal_s2_s1`` (reproducible record).

Training data (all real, from ../shared/data; see its README): every triplet of
``sen12mscr_triplets`` (SEN12MS-CR: Sentinel-2 L1C cloudy date, the clear date, Sentinel-1 VV/VH
of the cloudy date, s2cloudless mask), bands B2/B3/B4/B8, and synthetic clouds of those masks'
shapes over ``sen12mscr_ts/clear_patches`` (30 % of the crops). Radar is dropped from half of the
real crops, so the model also clears images without radar.

The recipe is the one cross-validated by ``benchmarks/real_clouds.py --start fill`` (4 folds by whole
triplet, same steps and settings); its held-out figures (``--cv``, the benchmark's JSON) are written
into the model's metadata.

    .venv/bin/python scripts/train_cloud_removal_s2_s1.py --cv docs/real_clouds_fill400.json \
        --out models/pretrained/cloud_removal_s2_s1.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import cloudfree_import  # noqa: E402,F401

from cloudfree.models.cloud_removal import residual, triplets  # noqa: E402
from real_clouds import BANDS, TRIPLETS, clear_images  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--cv", required=True, help="the JSON of benchmarks/real_clouds.py for this recipe")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    cv = json.loads(Path(args.cv).read_text())
    ts = triplets.read_triplets(str(TRIPLETS), BANDS)
    config = residual.ResidualConfig(steps=args.steps, start="fill")
    res = residual.train_residual(ts, config, clear_images=clear_images(), log=lambda m: print(m, flush=True))
    s = cv["summary"]
    metrics = {"cross_validation": f"{len(cv['folds'])} folds by whole triplet on sen12mscr_triplets, "
                                   f"{cv['config']['steps']} steps per fold",
               "held_out_median": {k: s[k] for k in ("input", "fill", "dcp", "unguided", "radar")},
               "radar_minus_unguided_cloud_db": s["radar_minus_unguided_cloud_db"]}
    training = {"source": "sen12mscr_triplets (all %d triplets: %s), B2/B3/B4/B8 of Sentinel-2 L1C, Sentinel-1 "
                          "VV/VH dB; synthetic clouds of their mask shapes over sen12mscr_ts/clear_patches "
                          "(%d patches)" % (len(ts), ", ".join(t.id for t in ts), len(clear_images())),
                "data_summary": f"{len(ts)} real SEN12MS-CR triplets (sen12mscr_triplets) + synthetic clouds over "
                                "sen12mscr_ts clear patches",
                "hardware": "CPU, 2 threads", "device": "cpu"}
    residual.save_residual_model(args.out, res, ["B2", "B3", "B4", "B8"], training=training, metrics=metrics)
    print(f"wrote {args.out}: {res.seconds:.0f} s, {res.cpu_seconds:.0f} CPU s, {res.steps_per_second:.2f} steps/s")


if __name__ == "__main__":
    main()
