"""lae-v2 training: the LAE on a pretrained MobileNetV2, self-blended and landmark-masked
forgeries made on the fly, the codec in the loop, active learning for masks.

Protocol (one config, ``Config``; every phase checkpoints and resumes):

1. warm start: labels only (no mask ever), ``warm_steps`` batches of real/forgery pairs;
2. arms from the warm start, ``arm_steps`` each, for each seed in ``seeds``:
   * ``baseline`` -- labels only;
   * ``lae`` -- each of ``rounds`` rounds, the current model scores a fixed pool of training
     forgeries and active learning (active.py criterion) picks pool items for a person to paint;
     the annotation batch is exported, painted (here by the synthetic oracle, which knows the
     masks) and imported, and training continues with every mask revealed so far in the
     locality loss; at most ``mask_frac`` (3 %) of the training samples ever get a mask;
3. every arm is evaluated on test persons: AUC on seen and unseen forgery families, the
   localisation of its interpretation map (pointing game, attention IoU); the unseen gain of
   ``lae`` over ``baseline`` is reported per seed;
4. the release is ``lae`` seed 0: ONNX with metadata, checkpoint, parity file, card. The
   operating threshold is then chosen at video level by ``fieldeval`` (validation persons and
   FF++ dev), not here.

CLI (from the repo root):
  /usr/bin/python3 -m detector.training.trainv2 --real RUN/real --work RUN [--version 2.0.0]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from . import active, common, export, forge, metrics
from .losses import LossWeights, total_loss
from .model import build, n_params
from .realdata import RealSet, data_block
from .sampler import EvalSet, Sampler, build_eval, predict, to_batch

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.normpath(os.path.join(HERE, "..", "models"))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
NAME = "lae-v2"


@dataclass
class Config:
    """Every setting of a release run (copied into the card)."""

    size: int = common.INPUT_SIZE
    latent: int = 64
    pairs_per_batch: int = 16          # a batch holds these reals and a forgery of each
    lr: float = 1e-3
    lr_trunk: float = 3e-4
    weight_decay: float = 1e-4
    warm_steps: int = 2400
    arm_steps: int = 300
    arm_lr_scale: float = 0.3          # arms fine-tune the warm start at a lower rate
    rounds: int = 3
    mask_frac: float = 0.03
    mask_per_batch: int = 8
    pool_size: int = 1200
    seeds: List[int] = field(default_factory=lambda: [0, 1])
    loss: LossWeights = field(default_factory=lambda: LossWeights(rec=0.2, loc=1.0, cov=0.5))
    n_val_real: int = 300
    n_val_per_family: int = 100
    n_test_real: int = 400
    n_test_per_family: int = 120
    threads: int = 2
    ckpt_every: int = 100

    def to_dict(self) -> dict:
        """JSON form."""
        d = asdict(self)
        d["loss"] = self.loss.to_dict()
        return d


def _lr(cfg: Config, base: float, step: int, total: int) -> float:
    frac = step / max(1, total - 1)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def _optimizer(model, cfg: Config) -> torch.optim.Optimizer:
    trunk = [p for n, p in model.named_parameters() if n.startswith(("s8.", "s16."))]
    rest = [p for n, p in model.named_parameters() if not n.startswith(("s8.", "s16."))]
    return torch.optim.AdamW([{"params": trunk, "base": cfg.lr_trunk}, {"params": rest, "base": cfg.lr}],
                             lr=cfg.lr, weight_decay=cfg.weight_decay)


def fit(model, sampler: Sampler, cfg: Config, steps: int, seed: int, ckpt: str, tag: str,
        masked: Optional[EvalSet] = None, use_masks: bool = False, lr_scale: float = 1.0, log=print) -> Dict:
    """Train for `steps` batches (resuming from ckpt when it exists). Masked items (revealed
    annotations) feed the locality and reconstruction terms only."""
    opt = _optimizer(model, cfg)
    rng = np.random.default_rng(seed)
    start = 0
    if os.path.exists(ckpt):
        st = torch.load(ckpt, map_location="cpu")
        model.load_state_dict(st["model"])  # map_location cpu: load_state_dict copies onto the model's device
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        start = st["step"]
        log(f"{tag}: resumed at step {start}/{steps}")
    else:
        torch.manual_seed(seed)
    model.train()
    dev = next(model.parameters()).device
    model.to(memory_format=torch.channels_last)
    t0 = time.time()
    hist: List[List[float]] = []
    n = len(sampler.real)
    for step in range(start, steps):
        items = sampler.pairs(rng.integers(0, n, cfg.pairs_per_batch), rng)
        n_regular = len(items)
        x, y, m = to_batch(items)
        has = torch.zeros(len(items), dtype=torch.bool)
        if use_masks and masked is not None and len(masked.y):
            k = rng.integers(0, len(masked.y), cfg.mask_per_batch)
            flip = rng.random(len(k)) < 0.5
            mx = np.stack([masked.x[j][:, ::-1] if f else masked.x[j] for j, f in zip(k, flip)])
            mm = np.stack([masked.masks[j][:, ::-1] if f else masked.masks[j] for j, f in zip(k, flip)])
            x = torch.cat([x, common.to_tensor(mx)])
            y = torch.cat([y, torch.ones(len(k), dtype=torch.long)])
            m = torch.cat([m, torch.from_numpy(mm.astype(np.float32)).unsqueeze(1)])
            has = torch.cat([has, torch.ones(len(k), dtype=torch.bool)])
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, g["base"] * lr_scale, step, steps)
        x, y, m, has = x.to(dev), y.to(dev), m.to(dev), has.to(dev)
        out = model(x.contiguous(memory_format=torch.channels_last))
        cls_sel = torch.arange(len(y), device=dev) < n_regular
        ls = total_loss(out, x, y, m, has, cfg.loss, use_masks, cls_sel)
        opt.zero_grad()
        ls["total"].backward()
        opt.step()
        hist.append([float(ls[k]) for k in ("total", "cls", "rec", "loc")])
        done = step + 1
        if done % 25 == 0 or done == steps:
            h = np.mean(hist[-25:], axis=0)
            rate = (done - start) * len(y) / max(1e-9, time.time() - t0)
            log(f"{tag} step {done}/{steps} loss {h[0]:.3f} cls {h[1]:.3f} rec {h[2]:.3f} loc {h[3]:.3f} "
                f"{rate:.1f} img/s")
        if done % cfg.ckpt_every == 0 or done == steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state(), "step": done}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    model.eval()
    return {"steps": steps, "seconds": round(time.time() - t0, 1),
            "last_loss": [round(v, 4) for v in np.mean(hist[-25:], axis=0).tolist()] if hist else None}


def evaluate(model, ev: EvalSet, thr: Optional[float] = None) -> Dict:
    """AUC on seen and unseen families, per family, and the localisation of the map on fakes."""
    s, h = predict(model, ev.x)
    real = ev.family == "real"
    out: Dict = {}
    for name, fams in (("seen", forge.SEEN), ("unseen", forge.UNSEEN)):
        sel = real | np.isin(ev.family, fams)
        out[f"auc_{name}"] = metrics.rounded(metrics.auc(ev.y[sel], s[sel]))
    out["auc_per_family"] = {f: metrics.rounded(metrics.auc(ev.y[real | (ev.family == f)], s[real | (ev.family == f)]))
                             for f in forge.FAMILIES if (ev.family == f).any()}
    loc = [metrics.localisation(h[i], ev.masks[i].astype(np.float32)) for i in np.flatnonzero(~real)]
    if loc:
        out["pointing_game"] = metrics.rounded(np.mean([d["pointing"] for d in loc]))
        out["attention_iou"] = metrics.rounded(np.mean([d["iou_rel"] for d in loc]))
        out["outside_mass"] = metrics.rounded(np.mean([d["outside"] for d in loc]))
    if thr is not None:
        out["fpr"] = metrics.rounded(float((s[real] >= thr).mean()))
        out["tpr"] = metrics.rounded(float((s[~real] >= thr).mean()))
    return out



def make_pool(sampler: Sampler, cfg: Config, seed: int) -> EvalSet:
    """The fixed pool of training forgeries that active learning may ask a person to mask."""
    return build_eval(sampler, forge.SEEN, 0, cfg.pool_size // len(forge.SEEN), seed)


def al_round(model, pool: EvalSet, revealed: List[int], k: int, round_no: int, work: str, log=print) -> List[Dict]:
    """Score the unrevealed pool, pick k by the active.py criterion, export the annotation batch,
    paint it with the oracle, import it; returns the picks (their pool indices are revealed)."""
    done = set(revealed)
    cand = np.array([i for i in range(len(pool.y)) if i not in done], np.int64)
    if len(cand) == 0 or k <= 0:
        return []
    s, h = predict(model, pool.x[cand])
    picks = active.select(list(pool.family[cand]), s, h, k)
    for p in picks:
        i = int(cand[p.pop("pool_pos")])
        p.update({"index": i, "id": f"pool-{i:05d}", "round": round_no})
    batch_dir = os.path.join(work, f"annotation-round{round_no}")
    active.export_batch(pool.x, picks, batch_dir)
    active.oracle_paint(pool.masks, batch_dir)  # a person paints these by hand
    # allow_empty: the oracle paints soft masks, and one blended at ratio < 0.5 has no pixel at
    # the >= 128 a hand-painted mask must reach
    painted = active.import_batch(batch_dir, allow_empty=True)
    for p in picks:
        pool.masks[p["index"]] = painted[p["id"]].astype(np.float16)
    log(f"active learning round {round_no}: {len(picks)} masks ({batch_dir})")
    return picks


def run(real_dir: str, work: str, cfg: Config, version: str, log=print, out_dir: Optional[str] = None) -> Dict:
    """The whole protocol (see module doc); returns the card."""
    common.seed_everything(0)
    torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = (f"GPU {torch.cuda.get_device_name(0)}" if device.type == "cuda"
             else f"{platform.machine()} CPU, {cfg.threads} threads")
    log(f"training on {where}")
    os.makedirs(work, exist_ok=True)
    train_set = Sampler(RealSet(os.path.join(real_dir, "train.npz")), cfg.size)
    val_set = Sampler(RealSet(os.path.join(real_dir, "val.npz")), cfg.size)
    test_set = Sampler(RealSet(os.path.join(real_dir, "test.npz")), cfg.size)
    log(f"real crops: train {len(train_set.real)}, val {len(val_set.real)}, test {len(test_set.real)}")
    val = build_eval(val_set, forge.SEEN, cfg.n_val_real, cfg.n_val_per_family, seed=101)
    test = build_eval(test_set, list(forge.FAMILIES), cfg.n_test_real, cfg.n_test_per_family, seed=202)
    pretrained = os.path.join(SHARED, "models", "backbones", "mobilenet_v2_imagenet.pth")

    def fresh():
        return build(NAME, latent=cfg.latent, pretrained=pretrained).to(device)

    warm_ck = os.path.join(work, "warm.ckpt")
    net = fresh()
    card_train = {"warm": fit(net, train_set, cfg, cfg.warm_steps, 0, warm_ck, "warm", log=log)}
    warm_state = {k: v.clone() for k, v in net.state_dict().items()}
    log(f"warm: val {json.dumps(evaluate(net, val))}")

    samples_per_epoch = 2 * len(train_set.real)
    budget = active.budget(samples_per_epoch, cfg.mask_frac)
    arms: Dict[str, Dict] = {}
    release = None
    for seed in cfg.seeds:
        for arm in ("baseline", "lae"):
            tag = f"{arm}-s{seed}"
            net = fresh()
            net.load_state_dict(warm_state)
            picks: List[Dict] = []
            if arm == "baseline":
                info = fit(net, train_set, cfg, cfg.arm_steps, 1000 + seed, os.path.join(work, f"{tag}.ckpt"), tag,
                           lr_scale=cfg.arm_lr_scale, log=log)
            else:
                pool = make_pool(train_set, cfg, seed=500 + seed)
                per_round = budget // cfg.rounds
                steps_per_round = cfg.arm_steps // cfg.rounds
                revealed: List[int] = []
                info = {}
                for r in range(cfg.rounds):
                    picks += al_round(net, pool, revealed, per_round, r, os.path.join(work, tag), log)
                    revealed = [p["index"] for p in picks]
                    sel = np.zeros(len(pool.y), bool)
                    sel[revealed] = True
                    info = fit(net, train_set, cfg, steps_per_round, 2000 + 10 * seed + r,
                               os.path.join(work, f"{tag}-r{r}.ckpt"), f"{tag} round {r}",
                               masked=pool.subset(sel), use_masks=True, lr_scale=cfg.arm_lr_scale, log=log)
            thr = metrics.fpr_threshold(predict(net, val.x[val.y == 0])[0], 0.05)
            arms[tag] = {"train": info, "val": evaluate(net, val, thr), "test": evaluate(net, test, thr),
                         "threshold_val_fpr5": metrics.rounded(thr), "masks": len(picks),
                         "mask_fraction": metrics.rounded(len(picks) / samples_per_epoch)}
            if arm == "lae":
                arms[tag]["picks"] = picks
            log(f"{tag}: test {json.dumps(arms[tag]['test'])}")
            torch.save({"name": NAME, "kwargs": {"latent": cfg.latent}, "state_dict": net.state_dict()},
                       os.path.join(work, f"{tag}.pt"))
            if tag == "lae-s0":
                release = net
    gains = {s: metrics.rounded(arms[f"lae-s{s}"]["test"]["auc_unseen"] - arms[f"baseline-s{s}"]["test"]["auc_unseen"])
             for s in cfg.seeds}
    card = {
        "model": {"name": NAME, "version": version, "input_size": cfg.size, "mean": list(common.MEAN),
                  "std": list(common.STD), "color": common.COLOR, "params": n_params(release),
                  "architecture": "LAE on ImageNet MobileNetV2 (features[:14], stride 8+16 fused latent "
                                  f"{cfg.latent}x{cfg.size // 8}x{cfg.size // 8}), pixel-shuffle decoder "
                                  "(training only), CAM head with log-sum-exp pooling",
                  "preprocess": f"aligned 256x256 crop (YuNet + 5-landmark alignment), cv2.resize to {cfg.size} "
                                "(INTER_AREA shrinking, INTER_LINEAR enlarging), BGR->RGB, (v/255-0.5)/0.5"},
        "training": {"config": cfg.to_dict(), "trained_on": where,
                     "date": datetime.date.today().isoformat(), "real_crops": {
                         "train": len(train_set.real), "val": len(val_set.real), "test": len(test_set.real)},
                     "families": forge.FAMILIES, "train_mix": forge.TRAIN_MIX, "warm": card_train["warm"],
                     "active_learning_budget": budget, "samples_per_epoch": samples_per_epoch},
        "data": data_block(SHARED),
        "arms": arms,
        "eval": {"synthetic": {
            "pointing_game": arms["lae-s0"]["test"].get("pointing_game"),
            "attention_iou": arms["lae-s0"]["test"].get("attention_iou"),
            "unseen_gain_auc": gains, "mask_fraction": arms["lae-s0"]["mask_fraction"]}},
        "threshold": arms["lae-s0"]["threshold_val_fpr5"],
    }
    write_release(release, card, test_set, cfg, version, log, out_dir or MODELS)
    return card


def write_release(net, card: Dict, test_set: Sampler, cfg: Config, version: str, log=print,
                  out_dir: str = MODELS) -> None:
    """NAME.onnx (+ metadata), NAME.pt, NAME.card.json, NAME.parity.json in out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, NAME)
    net = net.cpu().to(memory_format=torch.contiguous_format).eval()
    m = export.export_onnx(net, base + ".onnx", export.metadata(NAME, version, card["threshold"], cfg.size), cfg.size)
    card["model"]["onnx_outputs"] = export.output_shapes(m)
    card["model"]["onnx_bytes"] = os.path.getsize(base + ".onnx")
    torch.save({"name": NAME, "kwargs": {"latent": cfg.latent}, "state_dict": net.state_dict()}, base + ".pt")
    rng = np.random.default_rng(3)
    xs = np.stack([test_set.real_item(int(i), rng).image for i in rng.choice(len(test_set.real), 2, replace=False)])
    export.parity_file(net, xs, base + ".parity.json")
    old = {}
    if os.path.exists(base + ".card.json"):
        old = json.load(open(base + ".card.json"))
    card.setdefault("eval", {}).setdefault("video", old.get("eval", {}).get("video", {}))
    with open(base + ".card.json", "w") as f:
        json.dump(card, f, indent=1)
    log(f"release written: {base}.onnx ({card['model']['onnx_bytes']} bytes)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="realdata output (train.npz, val.npz, test.npz)")
    ap.add_argument("--work", required=True, help="checkpoints and logs (resumable)")
    ap.add_argument("--version", default="2.0.0")
    ap.add_argument("--out", default=MODELS, help="where the release files go (default detector/models)")
    ap.add_argument("--warm-steps", type=int)
    ap.add_argument("--arm-steps", type=int)
    ap.add_argument("--seeds", type=str, help="comma-separated, e.g. 0,1")
    ap.add_argument("--size", type=int)
    a = ap.parse_args(argv)
    cfg = Config()
    if a.warm_steps is not None:
        cfg.warm_steps = a.warm_steps
    if a.arm_steps is not None:
        cfg.arm_steps = a.arm_steps
    if a.seeds:
        cfg.seeds = [int(s) for s in a.seeds.split(",")]
    if a.size:
        cfg.size = a.size
    os.makedirs(a.work, exist_ok=True)
    logf = open(os.path.join(a.work, "train.log"), "a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    run(a.real, a.work, cfg, a.version, log, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
