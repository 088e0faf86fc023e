#!/usr/bin/python3
"""Prove tools/reference/nemo_ref.py against every NeMo-produced golden of the tiny-a fixture.

Usage: /usr/bin/python3 tools/reference/check_tiny_a.py [--fixture tests/data/tiny-a]

Checks per clip: features, features_len, encoder output (all columns, including NeMo's padding column),
encoded_len, TDT tokens / frames / durations (exact), text (exact, vs manifest). Clip 0 probes:
pre_encode_out, pos_enc_x, pos_emb, each layer output, decoder SOS output/h/c, raw joint logits u0.
Batch golden: the three synthetic clips zero-padded into one batch. Also: NeMo's rel_shift trick == the index
formula, raw-logit argmax == log-softmax argmax. Exits 1 on any failure.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nemo_ref as R  # noqa: E402

TOL_FEAT = 1e-4
TOL_ENC = 1e-4
TOL_PROBE = 1e-4
TOL_JOINT = 1e-3  # raw joint logits are O(10) after calibration of the final layer; relative ~1e-6


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", default=os.path.join(here, "..", "..", "tests", "data", "tiny-a"))
    a = ap.parse_args()
    fx = os.path.abspath(a.fixture)
    man = json.load(open(os.path.join(fx, "manifest.json")))
    m = R.load_nemo(os.path.join(fx, "model", "tiny-a.nemo"))
    rows, failures = [], []

    def check(name, ok, detail):
        rows.append((name, "ok" if ok else "FAIL", detail))
        if not ok:
            failures.append(name)

    def cmp_arr(name, gold, mine, tol):
        if gold.shape != mine.shape:
            check(name, False, f"shape {gold.shape} vs {mine.shape}")
            return
        d = float(np.max(np.abs(gold.astype(np.float64) - mine.astype(np.float64)))) if gold.size else 0.0
        check(name, d <= tol, f"max|d|={d:.3g} (tol {tol:g}) shape {list(gold.shape)}")

    def cmp_exact(name, gold, mine):
        gold, mine = np.asarray(gold), np.asarray(mine)
        ok = gold.shape == mine.shape and np.array_equal(gold, mine) and gold.dtype == mine.dtype
        check(name, ok, f"{gold.dtype}{list(gold.shape)} " + ("identical" if ok else f"vs {mine.dtype}{list(mine.shape)}"))

    clips = sorted(k for k, v in man["results"].items() if isinstance(v, dict) and "input" in v)
    audio = {}
    for c in clips:
        gd = os.path.join(fx, "golden", c)
        x, sr = R.read_wav(os.path.join(fx, "inputs", c + ".wav"))
        audio[c] = x
        res = R.run(m, x, probes=(c == "clip0"))
        cmp_arr(f"{c}/features", np.load(os.path.join(gd, "features.npy")), res["features"].numpy(), TOL_FEAT)
        cmp_exact(f"{c}/features_len", np.load(os.path.join(gd, "features_len.npy")), res["features_len"].numpy())
        cmp_arr(f"{c}/encoder_output", np.load(os.path.join(gd, "encoder_output.npy")),
                res["encoder_output"].numpy(), TOL_ENC)
        cmp_exact(f"{c}/encoded_len", np.load(os.path.join(gd, "encoded_len.npy")), res["encoded_len"].numpy())
        cmp_exact(f"{c}/tokens", np.load(os.path.join(gd, "tokens.npy")), np.array(res["tokens"], np.int32))
        cmp_exact(f"{c}/token_frames", np.load(os.path.join(gd, "token_frames.npy")), np.array(res["frames"], np.int32))
        cmp_exact(f"{c}/token_durations", np.load(os.path.join(gd, "token_durations.npy")),
                  np.array(res["durations"], np.int32))
        want = man["results"][c]["greedy_batch"]["text"]
        check(f"{c}/text", res["text"] == want, repr(res["text"]) if res["text"] == want else f"{res['text']!r} vs {want!r}")
        # raw logits give the same decisions
        raw = R.decode(m, res["encoder_output"][0], res["encoded_len"][0], log_softmax=False)
        check(f"{c}/raw-logit decode", (raw["tokens"], raw["frames"], raw["durations"]) ==
              (res["tokens"], res["frames"], res["durations"]), "same as log-softmax decode")
        # spec recipe: run exactly F feature frames (no NeMo padding column) -> same valid encoder frames
        with torch.no_grad():
            F_ = int(res["features_len"][0])
            e3, l3 = R.encode(m, res["features"][:, :, :F_], res["features_len"])
        L = int(l3[0])
        d = float((e3[:, :, :L] - res["encoder_output"][:, :, :L]).abs().max())
        check(f"{c}/exact-F encoder == padded (valid frames)", d <= 1e-5 and L == int(res["encoded_len"][0]),
              f"max|d|={d:.3g}, {e3.shape[2]} vs {res['encoder_output'].shape[2]} columns")
        if c == "clip0":
            for n in sorted(os.listdir(os.path.join(gd, "probes"))):
                key = n[:-4]
                tol = TOL_JOINT if key.startswith("joint") else TOL_PROBE
                cmp_arr(f"{c}/probes/{key}", np.load(os.path.join(gd, "probes", n)),
                        res["probes"][key].detach().numpy(), tol)
            # NeMo's rel_shift trick vs the index formula
            with torch.no_grad():
                e2, _ = R.encode(m, res["features"], res["features_len"], nemo_shift=True)
            d = float((e2 - res["encoder_output"]).abs().max())
            check("clip0/rel_shift trick == index", d == 0.0, f"max|d|={d:.3g}")

    # batch golden: the synthetic clips, zero padded
    bd = os.path.join(fx, "golden", "batch")
    if os.path.isdir(bd):
        gold_enc = np.load(os.path.join(bd, "encoder_output.npy"))
        gold_flen = np.load(os.path.join(bd, "features_len.npy"))
        gold_elen = np.load(os.path.join(bd, "encoded_len.npy"))
        names = [c for c in clips if man["results"][c]["input"]["kind"] == "synthetic"][: gold_enc.shape[0]]
        n = max(len(audio[c]) for c in names)
        batch = torch.zeros(len(names), n)
        for i, c in enumerate(names):
            batch[i, : len(audio[c])] = torch.from_numpy(audio[c])
        lens = torch.tensor([len(audio[c]) for c in names], dtype=torch.int64)
        with torch.no_grad():
            feats, flen = R.featurize(m, batch, lens)
            enc, elen = R.encode(m, feats, flen)
        cmp_exact("batch/features_len", gold_flen, flen.numpy())
        cmp_exact("batch/encoded_len", gold_elen, elen.numpy())
        cmp_arr("batch/encoder_output (all columns)", gold_enc, enc.numpy(), TOL_ENC)
        dv = max(float(np.abs(gold_enc[i, :, : gold_elen[i]] - enc.numpy()[i, :, : gold_elen[i]]).max())
                 for i in range(len(names)))
        check("batch/encoder_output (valid frames)", dv <= TOL_ENC, f"max|d|={dv:.3g}")
        for i, c in enumerate(names):
            r = R.decode(m, enc[i], elen[i])
            g = np.load(os.path.join(fx, "golden", c, "tokens.npy"))
            gf = np.load(os.path.join(fx, "golden", c, "token_frames.npy"))
            ok = np.array_equal(np.array(r["tokens"], np.int32), g) and np.array_equal(np.array(r["frames"], np.int32), gf)
            check(f"batch/{c} tokens+frames", ok, f"{len(g)} tokens, same as single-clip golden")

    w = max(len(r[0]) for r in rows)
    for name, st, detail in rows:
        print(f"{name:<{w}}  {st:<4}  {detail}")
    print(f"\n{len(rows) - len(failures)}/{len(rows)} checks passed")
    if failures:
        print("FAILED: " + ", ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
