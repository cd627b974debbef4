"""Is SynthAct a fair test? A non-neural baseline with ordered and with shuffled frames.

    python bench/synthact_baseline.py [--clips-per-class 120] [--levels easy,medium,hard] [--out DIR]

Generates SynthAct (or reuses DIR/<level> if its manifests exist), decodes every clip with decord
and describes each frame by its silhouette only (no ground truth): the figure's pixels are those
far from the border colour (plain backgrounds) or from the clip's per-pixel temporal median
(textured ones); per frame we keep its centroid, size and second moments relative to the clip's
own position and scale, plus a 10x10 thumbnail of the silhouette in the clip's box.
A clip is the mean of those per-frame features over 8 equal time bins, in frame order. A softmax
regression (L2, L-BFGS) is trained on train (each clip also mirrored) and scored on test:
- ordered: frames in order, as generated;
- shuffled test: the same model, test frames permuted (5 draws);
- shuffled both: trained and tested on permuted frames (an order-blind model).
sit and stand contain the same poses in opposite order, so with shuffled frames their pair
accuracy must fall to about chance (0.5), while classes that differ in pose stay high.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import reasonact  # noqa: E402, F401  (first: the CPU torchvision shim)
from reasonact.data import synthact as sa  # noqa: E402
from reasonact.data.manifest import read_manifest  # noqa: E402

BINS = 8  # time bins per clip: ~4 frames each at 10-15 fps
THUMB = 10  # silhouette thumbnail side


def frame_features(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, 8 + THUMB**2) silhouette features, invariant to position and size."""
    f = frames.astype(np.int16)
    border = np.concatenate([f[:, 0], f[:, -1], f[:, :, 0], f[:, :, -1]], axis=1).reshape(-1, 3)
    if border.std(0).max() < 12:  # a plain background: the figure is what differs from its colour
        mask = np.abs(f - np.median(border, axis=0)).sum(-1) > 90
    else:  # a textured one: background subtraction against the clip's per-pixel temporal median
        mask = np.abs(f - np.median(f, axis=0)).sum(-1) > 90
    T, H, W = mask.shape
    if not mask.any():
        return np.zeros((T, 8 + THUMB * THUMB))
    ever = mask.any(0)  # the clip's box: wherever the figure goes
    rows, cols = np.where(ever.any(1))[0], np.where(ever.any(0))[0]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    ref = max(y1 - y0, x1 - x0, THUMB)  # the clip's scale
    # silhouette thumbnail: the square around the clip's box, block-averaged to THUMB x THUMB
    top, left = (y0 + y1 - ref) // 2 + ref, (x0 + x1 - ref) // 2 + ref
    crop = np.pad(mask, ((0, 0), (ref, ref), (ref, ref)))[:, top : top + ref, left : left + ref].astype(float)
    e = np.linspace(0, ref, THUMB + 1).astype(int)
    thumb = np.add.reduceat(np.add.reduceat(crop, e[:-1], axis=1), e[:-1], axis=2)
    thumb /= np.diff(e)[None, :, None] * np.diff(e)[None, None, :]
    # moments of the silhouette, relative to the clip's mean position and scale
    ys, xs = np.mgrid[0:H, 0:W]
    area = mask.sum((1, 2)).clip(1)
    cx, cy = (mask * xs).sum((1, 2)) / area, (mask * ys).sum((1, 2)) / area
    ddx, ddy = xs - cx[:, None, None], ys - cy[:, None, None]
    vx, vy = (mask * ddx**2).sum((1, 2)) / area / ref**2, (mask * ddy**2).sum((1, 2)) / area / ref**2
    cxy = (mask * ddx * ddy).sum((1, 2)) / area / ref**2
    top_y = np.array([np.argmax(m.any(1)) if m.any() else y1 for m in mask])
    reach = (y1 - top_y) / ref  # how high the figure reaches above the clip's lowest point
    dx, dy = (cx - cx.mean()) / ref, (cy - cy.mean()) / ref
    scalars = np.stack([dx, dy, vx, vy, cxy, area / ref**2, reach, np.sqrt(vx / np.maximum(vy, 1e-6))], 1)
    return np.concatenate([scalars, thumb.reshape(T, -1)], 1)


ODD = [0, 4]  # scalar features that change sign when the picture is mirrored: dx, cxy


def mirror(feats: np.ndarray) -> np.ndarray:
    out = feats.copy()
    out[:, ODD] *= -1
    out[:, 8:] = out[:, 8:].reshape(len(out), THUMB, THUMB)[:, :, ::-1].reshape(len(out), -1)
    return out


def clip_vector(feats: np.ndarray) -> np.ndarray:
    bins = np.array_split(np.arange(len(feats)), BINS)
    return np.concatenate([feats[b].mean(0) for b in bins])


def fit_softmax(X, y, n_classes, l2=1e-2):
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Xs = np.c_[(X - mu) / sd, np.ones(len(X))]
    Y = np.eye(n_classes)[y]

    def loss(w):
        W = w.reshape(Xs.shape[1], n_classes)
        z = Xs @ W
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        nll = -np.log(p[np.arange(len(y)), y] + 1e-12).mean() + l2 * (W[:-1] ** 2).sum()
        grad = Xs.T @ (p - Y) / len(y)
        grad[:-1] += 2 * l2 * W[:-1]
        return nll, grad.ravel()

    w = minimize(
        loss, np.zeros(Xs.shape[1] * n_classes), jac=True, method="L-BFGS-B", options={"maxiter": 500}
    ).x
    W = w.reshape(Xs.shape[1], n_classes)
    return lambda X: np.c_[(X - mu) / sd, np.ones(len(X))] @ W


def load_split(manifest, rng_shuffles):
    """Per clip: ordered features and a list of shuffled-frame features (one per draw)."""
    import decord

    recs = read_manifest(manifest)
    ordered, shuffled, labels = [], [], []
    for rec in recs:
        frames = decord.VideoReader(rec["video"]).get_batch(list(range(rec["num_frames"]))).asnumpy()
        feats = frame_features(frames)
        ordered.append(feats)
        shuffled.append([feats[r.permutation(len(feats))] for r in rng_shuffles])
        labels.append(sa.CLASSES.index(rec["label"]))
    return ordered, shuffled, np.array(labels)


def scores(logits, y):
    pred = logits.argmax(1)
    per_class = {c: float((pred[y == i] == i).mean()) for i, c in enumerate(sa.CLASSES) if (y == i).any()}
    s, t = sa.CLASSES.index("sit"), sa.CLASSES.index("stand")
    pair = (y == s) | (y == t)
    pair_binary = np.where(
        logits[pair][:, s] > logits[pair][:, t], s, t
    )  # sit or stand, whichever scores higher
    return {
        "accuracy": float((pred == y).mean()),
        "sit_stand_accuracy": float((pred[pair] == y[pair]).mean()),
        "sit_stand_binary_accuracy": float((pair_binary == y[pair]).mean()),
        "per_class": per_class,
    }


def mean_scores(list_of_scores):
    out = {k: float(np.mean([s[k] for s in list_of_scores])) for k in list_of_scores[0] if k != "per_class"}
    out["per_class"] = {
        c: float(np.mean([s["per_class"][c] for s in list_of_scores])) for c in list_of_scores[0]["per_class"]
    }
    return {
        k: (round(v, 3) if isinstance(v, float) else {c: round(x, 3) for c, x in v.items()})
        for k, v in out.items()
    }


def run_level(out_dir: Path, level: str, args) -> dict:
    d = out_dir / level
    gen_s = None
    if not (d / "manifest_test.jsonl").exists() or args.regenerate:
        kw = dict(seed=args.seed, level=level, size=args.size, workers=args.workers, progress=False)
        gen = sa.generate(d, args.clips_per_class, **kw)
        gen_s = gen["seconds"]
    draws = [np.random.default_rng(args.seed + k) for k in range(args.shuffles)]
    t0 = time.perf_counter()
    tr_o, tr_s, ytr = load_split(d / "manifest_train.jsonl", draws[:1])
    te_o, te_s, yte = load_split(d / "manifest_test.jsonl", draws)
    feat_s = time.perf_counter() - t0
    n = len(sa.CLASSES)
    # train on each clip and its mirror image (the figure faces either way at medium/hard)
    Xtr = np.stack([clip_vector(f) for f in tr_o] + [clip_vector(mirror(f)) for f in tr_o])
    model = fit_softmax(Xtr, np.r_[ytr, ytr], n)
    ordered = scores(model(np.stack([clip_vector(f) for f in te_o])), yte)
    shuffled_test = mean_scores(
        [scores(model(np.stack([clip_vector(s[k]) for s in te_s])), yte) for k in range(args.shuffles)]
    )
    Xtr_s = np.stack([clip_vector(s[0]) for s in tr_s] + [clip_vector(mirror(s[0])) for s in tr_s])
    blind = fit_softmax(Xtr_s, np.r_[ytr, ytr], n)
    shuffled_both = mean_scores(
        [scores(blind(np.stack([clip_vector(s[k]) for s in te_s])), yte) for k in range(args.shuffles)]
    )
    return {
        "train_clips": len(ytr), "test_clips": len(yte), "generate_s": gen_s, "features_s": round(feat_s, 1),
        "ordered": mean_scores([ordered]), "shuffled_test": shuffled_test, "shuffled_both": shuffled_both,
    }  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/synthact_baseline")
    ap.add_argument("--clips-per-class", type=int, default=120)
    ap.add_argument("--levels", default="easy,medium,hard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shuffles", type=int, default=5)
    ap.add_argument("--regenerate", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    levels = {lv: run_level(Path(args.out), lv, args) for lv in args.levels.split(",")}
    print(json.dumps({
        "bench": "synthact_baseline", "classifier": "softmax regression on silhouette features (8 time bins)",
        "clips_per_class": args.clips_per_class, "seed": args.seed, "size": args.size, "chance": round(1 / len(sa.CLASSES), 3),
        "levels": levels, "seconds": round(time.perf_counter() - t0, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
