"""One comparison arm, continued from the shared warm start (see train.py for the protocol).

Arms: ``baseline`` (labels only), ``lae_al`` (active-learning masks, <= budget), ``lae_all``
(every training mask). Each arm trains ``rounds`` x ``round_epochs``, calibrates its threshold on
val, evaluates on test and writes WORK/<arm>.pt and WORK/<arm>.json. Arms are independent, so
train.py runs them as parallel processes (one thread each).

CLI: /usr/bin/python3 -m detector.training.arms --arm lae_al --manifest M --work W [--rounds 3 ...]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from . import active, common
from .data import Arrays, load_arrays
from .degrade import degraded_copy
from .evaluate import evaluate_model, load_checkpoint, save_checkpoint, val_threshold
from .losses import LossWeights
from .trainer import TrainConfig, train

ARMS = ("baseline", "lae_al", "lae_all")


def round_config(r: int, round_epochs: float, seed: int, lr: float) -> TrainConfig:
    """Optimiser settings of continuation round r (same for every arm)."""
    return TrainConfig(epochs=round_epochs, seed=seed + 100 + r, lr=lr)


def run_arm(arm: str, data: Arrays, work: str, rounds: int, round_epochs: float, budget_frac: float,
            seed: int = 0, lr: float = 1e-3, log: Callable[[str], None] = print,
            weights: Optional[LossWeights] = None, out_name: Optional[str] = None) -> Dict:
    """Train one arm from WORK/warm.pt, evaluate it, save WORK/<out_name or arm>.pt and .json
    (out_name keeps variants, e.g. other loss weights, beside the protocol's arms)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; want one of {ARMS}")
    net, _ = load_checkpoint(os.path.join(work, "warm.pt"))
    tr = data.idx("train")
    w = weights or LossWeights()
    name = out_name or arm
    pre = "" if name == arm else f"{name}_"  # variants keep their own picks and batches
    true_masks = data.masks.copy()
    true_has = data.has_mask_file.copy()
    summary: List[Dict] = []
    picks_all: List[Dict] = []
    revealed: List[int] = []
    if arm == "lae_al":
        bud = active.budget(len(tr), budget_frac)
        picks_log = os.path.join(work, f"{pre}al_picks.jsonl")
        open(picks_log, "w").close()
    for r in range(rounds):
        cfg = round_config(r, round_epochs, seed, lr)
        if arm == "baseline":
            summary.append(train(net, data, tr, [], cfg, w, use_masks=False, log=log, tag=f"baseline r{r + 1}"))
        elif arm == "lae_all":
            all_idx = [int(i) for i in tr if true_has[i]]
            summary.append(train(net, data, tr, all_idx, cfg, w, use_masks=True, log=log, tag=f"all r{r + 1}"))
        else:
            k = bud * (r + 1) // rounds - len(revealed)
            picks = active.run_round(net, data, tr, revealed, k, r + 1)
            # The human-annotation path: export the batch with empty masks, have it painted
            # (here by the synthetic oracle, which knows the synthesized masks), import it back.
            bdir = os.path.join(work, f"{pre}annotation_round{r + 1}")
            active.export_batch(data, picks, bdir)
            active.oracle_paint(data, bdir)
            got = active.apply_masks(data, active.import_batch(bdir))
            revealed.extend(got)
            with open(picks_log, "a") as f:
                for p in picks:
                    f.write(json.dumps(p) + "\n")
            picks_all.extend(picks)
            fams = sorted({p["family"] for p in picks})
            per_family = ", ".join(f"{f}:{sum(p['family'] == f for p in picks)}" for f in fams)
            log(f"AL round {r + 1}: picked {len(picks)} ({per_family}); "
                f"{len(revealed)} masks = {len(revealed) / len(tr):.2%} of {len(tr)} training samples")
            summary.append(train(net, data, tr, revealed, cfg, w, use_masks=True, log=log, tag=f"al r{r + 1}"))
    data.masks[:] = true_masks
    n_masks = {"baseline": 0, "lae_all": int(sum(1 for i in tr if true_has[i])), "lae_al": len(revealed)}[arm]
    thr = val_threshold(net, data)
    rep = evaluate_model(net, data, "test", thr, n_masks / len(tr))
    # The same test crops after a fixed resolution + JPEG loss (degrade.py): what survives coding.
    rep_deg = evaluate_model(net, degraded_copy(data, data.idx("test")), "test", thr, n_masks / len(tr))
    save_checkpoint(os.path.join(work, f"{name}.pt"), net, {"threshold": thr})
    out = {"arm": arm, "summary": summary, "threshold": thr, "masks_used": n_masks,
           "train_samples": int(len(tr)), "eval": rep,
           "eval_degraded": {k: rep_deg[k] for k in ("overall", "seen", "unseen", "per_family", "attention_iou")},
           "picks": picks_all,
           "train_config": round_config(0, round_epochs, seed, lr).to_dict(), "loss_weights": w.to_dict()}
    with open(os.path.join(work, f"{name}.json"), "w") as f:
        json.dump(out, f, indent=1)
    log(f"{name}: thr {thr:.3f} overall {rep['overall']} seen {rep.get('seen')} unseen {rep.get('unseen')} "
        f"attention_iou {rep['attention_iou']}")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point (train.py starts one process per arm)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", required=True, choices=ARMS)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-epochs", type=float, default=1.0)
    ap.add_argument("--budget", type=float, default=0.03)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--w-cov", type=float, default=LossWeights.cov, help="weight of the mask-coverage BCE")
    ap.add_argument("--w-loc", type=float, default=LossWeights.loc, help="weight of the locality loss")
    ap.add_argument("--name", help="write WORK/NAME.{pt,json,log} instead of the arm's name (variants)")
    ap.add_argument("--arms-only", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    common.set_threads()
    common.seed_everything(a.seed)
    logf = open(os.path.join(a.work, f"{a.name or a.arm}.log"), "a")

    def log(msg: str) -> None:
        line = f"{datetime.datetime.utcnow().strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    data = load_arrays(a.manifest, cache_dir=os.path.join(a.work, "cache"))
    w = LossWeights(rec=LossWeights.rec, loc=a.w_loc, cov=a.w_cov)
    run_arm(a.arm, data, a.work, a.rounds, a.round_epochs, a.budget, a.seed, a.lr, log, w, a.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
