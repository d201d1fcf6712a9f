"""The release pipeline: data -> baseline / all-mask / active-learning LAE -> evaluation ->
ONNX + model card + parity file.

Protocol (all arms share one warm start, so they differ only in mask use):

1. warm start: the network trained with labels only (no masks) for ``warm_epochs``;
2. three arms continue from it for ``rounds x round_epochs`` epochs each:
   * baseline  -- labels only (same network, same loss without the locality term);
   * all-mask  -- every training fake's mask used by the locality loss;
   * LAE-AL    -- each round, the current model scores the pool and picks budget/rounds fakes
     (active.py criterion), the picks go through the annotation batch export/import, and
     training continues with all masks revealed so far (total <= 3 % of training samples);
3. each arm's threshold is calibrated on the val split (balanced accuracy) and it is evaluated
   on the test split (seen families + unseen families, identity-disjoint from training);
4. the LAE-AL model is the release model: ONNX (+ metadata), checkpoint, card, parity JSON.

CLI (from the repo root):
  /usr/bin/python3 -m detector.training.train --crops CROPS_DIR [--crops ...] --work RUN_DIR
  /usr/bin/python3 -m detector.training.train --manifest RUN_DIR/data/manifest.jsonl --work RUN_DIR
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from . import active, common, export, synth
from .data import load_arrays
from .evaluate import evaluate_model, save_checkpoint, val_threshold
from .losses import LossWeights
from .model import LAE, n_params
from .prepare import prepare
from .trainer import TrainConfig, train

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.normpath(os.path.join(HERE, "..", "models"))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))


def data_sources(paths: Sequence[str]) -> List[Dict]:
    """Rows of shared/data/SOURCES.md for the folders the training data came from."""
    src = os.path.join(SHARED, "SOURCES.md")
    rows = []
    if not os.path.exists(src):
        return [{"folder": p} for p in paths]
    joined = " ".join(paths)
    for line in open(src):
        if not line.startswith("| ") or line.startswith("| folder") or line.startswith("|---"):
            continue
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) >= 4 and cols[0].split(" ")[0] and cols[0].split(" ")[0].rstrip("/*") in joined:
            rows.append({"folder": cols[0], "what": cols[1], "count": cols[2], "from": cols[3]})
    return rows or [{"folder": p} for p in paths]


def _slim(rep: Dict) -> Dict:
    return {"auc": rep.get("auc"), "acc": rep.get("acc")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", action="append", default=[], help="aligned crops dir(s) (lae crops output)")
    ap.add_argument("--manifest", help="use an existing manifest instead of preparing one")
    ap.add_argument("--work", required=True, help="run directory (data, checkpoints, logs)")
    ap.add_argument("--name", default="lae-v1")
    ap.add_argument("--version", default=None)
    ap.add_argument("--models-dir", default=MODELS)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--test-fakes-per-family", type=int, default=150)
    ap.add_argument("--per-identity", type=int, default=40)
    ap.add_argument("--warm-epochs", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-epochs", type=float, default=1.0)
    ap.add_argument("--budget", type=float, default=0.03, help="max fraction of training samples with masks")
    ap.add_argument("--widths", default="32,48,64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-release", action="store_true", help="do not write into --models-dir")
    a = ap.parse_args(argv)
    common.set_threads()
    common.seed_everything(a.seed)
    os.makedirs(a.work, exist_ok=True)
    logf = open(os.path.join(a.work, "train.log"), "a")

    def log(msg: str) -> None:
        line = f"{datetime.datetime.utcnow().strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    t_start = time.time()
    manifest = a.manifest
    if not manifest:
        if not a.crops:
            ap.error("give --crops or --manifest")
        manifest = prepare(a.crops, os.path.join(a.work, "data"), n_train=a.n_train, n_val=a.n_val,
                           n_test=a.n_test, test_fakes_per_family=a.test_fakes_per_family,
                           per_identity=a.per_identity, seed=a.seed, log=log)
    data = load_arrays(manifest, cache_dir=os.path.join(a.work, "cache"))
    tr = data.idx("train")
    n_masks_all = int(sum(1 for i in tr if data.has_mask_file[i]))
    bud = active.budget(len(tr), a.budget)
    log(f"data: {len(data.samples)} samples, train {len(tr)} ({n_masks_all} with masks), "
        f"val {len(data.idx('val'))}, test {len(data.idx('test'))}; AL budget {bud} masks")
    # Hide every mask from the AL arm: masks are revealed only through annotation batches.
    true_masks = data.masks.copy()
    true_has = data.has_mask_file.copy()

    widths = tuple(int(v) for v in a.widths.split(","))
    w = LossWeights()
    cfg = TrainConfig(epochs=a.warm_epochs, seed=a.seed)
    net = LAE(widths)
    log(f"model: LAE widths {widths}, {n_params(net)} parameters")
    summary: Dict = {"warm": train(net, data, tr, [], cfg, w, use_masks=False, log=log, tag="warm")}
    save_checkpoint(os.path.join(a.work, "warm.pt"), net, {})

    round_cfg = lambda r: TrainConfig(epochs=a.round_epochs, seed=a.seed + 100 + r, lr=cfg.lr * 0.5)
    arms: Dict[str, LAE] = {}
    # baseline: labels only
    base = copy.deepcopy(net)
    summary["baseline"] = [train(base, data, tr, [], round_cfg(r), w, use_masks=False, log=log, tag=f"baseline r{r}")
                           for r in range(a.rounds)]
    arms["baseline"] = base
    # active learning
    al = copy.deepcopy(net)
    revealed: List[int] = []
    picks_log = os.path.join(a.work, "al_picks.jsonl")
    open(picks_log, "w").close()
    summary["al"] = []
    for r in range(a.rounds):
        k = bud * (r + 1) // a.rounds - len(revealed)
        picks = active.run_round(al, data, tr, revealed, k, r + 1)
        # the human-annotation path: export the batch, paint (oracle), import the masks back
        bdir = os.path.join(a.work, f"annotation_round{r + 1}")
        data.masks[:] = 0  # nothing is known to the annotator tool but what it is given
        active.export_batch(data, picks, bdir)
        data.masks[:] = true_masks
        active.oracle_paint(data, bdir)
        got = active.apply_masks(data, active.import_batch(bdir))
        revealed.extend(got)
        with open(picks_log, "a") as f:
            for p in picks:
                f.write(json.dumps(p) + "\n")
        log(f"AL round {r + 1}: picked {len(picks)} ({', '.join(sorted({p['family'] for p in picks}))}); "
            f"{len(revealed)} masks = {len(revealed) / len(tr):.2%} of training samples")
        summary["al"].append(train(al, data, tr, revealed, round_cfg(r), w, use_masks=True, log=log, tag=f"al r{r + 1}"))
    arms["lae_al"] = al
    # all masks
    allm = copy.deepcopy(net)
    all_idx = [i for i in tr if true_has[i]]
    summary["all_mask"] = [train(allm, data, tr, all_idx, round_cfg(r), w, use_masks=True, log=log, tag=f"all r{r + 1}")
                           for r in range(a.rounds)]
    arms["lae_all"] = allm

    results = {}
    fractions = {"baseline": 0.0, "lae_al": len(revealed) / len(tr), "lae_all": len(all_idx) / len(tr)}
    for name, m in arms.items():
        thr = val_threshold(m, data)
        results[name] = evaluate_model(m, data, "test", thr, fractions[name])
        save_checkpoint(os.path.join(a.work, f"{name}.pt"), m, {"threshold": thr})
        log(f"eval {name}: thr {thr:.3f} overall {results[name]['overall']} seen {results[name].get('seen')} "
            f"unseen {results[name].get('unseen')} att {results[name]['attention_iou']}")
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    def gain(r, key):
        return (r.get("unseen", {}).get("auc") or 0) - (results["baseline"].get("unseen", {}).get("auc") or 0)

    lae, bl, al_all = results["lae_al"], results["baseline"], results["lae_all"]
    g_al, g_all = gain(lae, "unseen"), gain(al_all, "unseen")
    train_seconds = round(time.time() - t_start, 1)
    card = {
        "model": {
            "name": a.name, "version": a.version or datetime.datetime.utcnow().strftime("%Y%m%d.%H%M"),
            "input_size": common.INPUT_SIZE, "mean": list(common.MEAN), "std": list(common.STD),
            "color": common.COLOR, "input": {"name": "input", "shape": ["N", 3, common.INPUT_SIZE, common.INPUT_SIZE],
                                             "layout": "NCHW float32, (pixel/255-mean)/std"},
            "outputs": {"score": {"shape": ["N"], "meaning": "probability that the crop is fake"},
                        "heatmap": {"shape": ["N", 1, common.INPUT_SIZE // 4, common.INPUT_SIZE // 4],
                                    "meaning": "sigmoid of the per-cell fake-evidence logit the score pools "
                                               "(log-sum-exp, r=4); covers the whole crop"}},
            "preprocess": "aligned crop (lae crops / ingest alignment), cv2.resize to 128x128 with INTER_AREA "
                          "when shrinking, INTER_LINEAR when enlarging, BGR->RGB, (v/255-0.5)/0.5",
            "architecture": f"LAE: pixel-unshuffle(4) stem, 5 conv3x3-BN-ReLU encoder (dilations 1,2,1,2,4, widths "
                            f"{widths}), latent {widths[2]}x32x32, decoder 2 conv + conv + pixel-shuffle; "
                            "CAM head (1x1 conv) over the latent",
            "params": n_params(al), "opset": export.OPSET,
        },
        "threshold": None,
        "eval": {
            "split": "test (identities disjoint from train/val)",
            "seen": {"lae": _slim(lae.get("seen", {})), "baseline": _slim(bl.get("seen", {})),
                     "lae_all_masks": _slim(al_all.get("seen", {}))},
            "unseen": {"lae": _slim(lae.get("unseen", {})), "baseline": _slim(bl.get("unseen", {})),
                       "lae_all_masks": _slim(al_all.get("unseen", {}))},
            "overall": {"lae": lae["overall"], "baseline": bl["overall"], "lae_all_masks": al_all["overall"]},
            "attention_iou": lae["attention_iou"],
            "attention_iou_baseline": bl["attention_iou"],
            "attention_iou_all_masks": al_all["attention_iou"],
            "attention_iou_definition": "mean over test fakes of IoU(heatmap up-sampled to the crop and "
                                        "thresholded at 0.5*max, mask >= 0.5)",
            "localisation": {"lae": lae["localisation"], "baseline": bl["localisation"],
                             "lae_all_masks": al_all["localisation"]},
            "mask_fraction": round(fractions["lae_al"], 4),
            "mask_fraction_all_masks": round(fractions["lae_all"], 4),
            "per_family": {"lae": lae["per_family"], "baseline": bl["per_family"], "lae_all_masks": al_all["per_family"]},
            "targets": {
                "unseen_auc_gain_vs_baseline": round(g_al, 4),
                "unseen_auc_gain_target": 0.05, "unseen_auc_gain_met": g_al >= 0.05,
                "attention_iou_target": 0.5, "attention_iou_met": (lae["attention_iou"] or 0) >= 0.5,
                "al_share_of_all_mask_gain": round(g_al / g_all, 4) if g_all > 0 else None,
                "al_share_target": 0.9,
                "al_share_met": (g_all > 0 and g_al / g_all >= 0.9),
                "seen_auc_target": 0.95, "seen_auc_met": (lae.get("seen", {}).get("auc") or 0) >= 0.95,
            },
        },
        "data": data_sources([s for s in (a.crops or [manifest])] + [SHARED]),
        "dataset": json.load(open(os.path.join(os.path.dirname(manifest), "dataset.json")))
        if os.path.exists(os.path.join(os.path.dirname(manifest), "dataset.json")) else {"manifest": manifest},
        "protocol": {
            "families": {f: {"task": t, "split": s} for f, (t, s) in synth.FAMILIES.items()},
            "splits": "identities hashed into train 70% / val 10% / test 20%; donors of swaps come from the same split",
            "train": "real crops + one forgery of a seen family per real crop",
            "val": "threshold calibration (max balanced accuracy), seen families only",
            "test": "real crops + every family (seen and unseen)",
            "arms": "shared labels-only warm start, then baseline (no masks) / LAE-AL (<= budget masks picked "
                    "by active learning) / LAE all masks, each for rounds x round_epochs",
            "release_arm": "lae_al",
        },
        "training": {
            "losses": "L = BCE(pooled logit, label) + w_rec * L1(recon, input) + w_loc * [outside-mask heat share "
                      "+ w_cov * BCE(logit map, pooled mask)] (locality only on masked fakes; baseline w_loc=0)",
            "loss_weights": w.to_dict(), "warm": TrainConfig(epochs=a.warm_epochs).to_dict(),
            "round": round_cfg(0).to_dict(), "rounds": a.rounds, "summary": summary,
            "seconds_total": train_seconds, "machine": "CPU, torch.set_num_threads(2)",
            "torch": torch.__version__,
        },
        "active_learning": {
            "criterion": "priority = (1 - p_fake) + 0.5 * normalised heatmap entropy; round-robin over families",
            "budget_fraction": a.budget, "budget_masks": bud, "masks_used": len(revealed),
            "train_samples": int(len(tr)), "picks_log": "al_picks.jsonl (in the run dir)",
            "picks": [json.loads(l) for l in open(picks_log)],
        },
    }
    thr = float(results["lae_al"]["threshold"])
    card["threshold"] = thr
    if not a.no_release:
        os.makedirs(a.models_dir, exist_ok=True)
        onnx_path = os.path.join(a.models_dir, f"{a.name}.onnx")
        m = export.export_onnx(al, onnx_path, export.metadata(a.name, card["model"]["version"], thr))
        card["model"]["onnx_bytes"] = os.path.getsize(onnx_path)
        card["model"]["onnx_outputs"] = export.output_shapes(m)
        save_checkpoint(os.path.join(a.models_dir, f"{a.name}.pt"), al, {"threshold": thr, "name": a.name,
                                                                           "version": card["model"]["version"]})
        test = data.idx("test")
        reals = [i for i in test if data.y[i] == 0][:2]
        fakes = [i for i in test if data.y[i] == 1][:2]
        export.parity_file(al, data.x[reals + fakes], os.path.join(a.models_dir, f"{a.name}.parity.json"))
        with open(os.path.join(a.models_dir, f"{a.name}.card.json"), "w") as f:
            json.dump(card, f, indent=1)
        log(f"release: {onnx_path} ({card['model']['onnx_bytes']} bytes), card, parity written")
    with open(os.path.join(a.work, "card.json"), "w") as f:
        json.dump(card, f, indent=1)
    log(f"done in {train_seconds:.0f}s; targets {card['eval']['targets']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
