#!/usr/bin/env python3
"""Same-run PyTorch baseline for the GPU benchmarks: parakeet-tdt-0.6b-v3 in eager PyTorch (nemo_ref.py's modules).

The model is built from the v3 config with RANDOM weights, directly on the device (nemo_ref.random_model; no .nemo).
Only the joint's blank bias is calibrated (bisection on the 10 s clip, fp32) so that greedy TDT emits about
--token-rate tokens per encoder frame, which keeps the decoder's work realistic (real speech: ~0.3-0.4).

Cases (B = batch):
  offline10      preprocessor + encoder + greedy TDT, 10 s, B=1
  offline60      the same, 60 s, B=1
  offline10_b32  the same, 32 x 10 s
  enc592         encoder only on a [1, 128, 592] feature tensor (the prior attempt's TensorRT chunk)
  window14       one windowed 10-2-2 streaming step: preprocessor + encoder on a 14 s window (10 s left, 2 s chunk,
                 2 s right), then greedy TDT on the 25 chunk frames; B=1
  window14_b64   the same for 64 streams at once (batched preprocessor + encoder, per-stream decode)
Precisions: fp32 (TF32 off), tf32 (TF32 on for matmul and cuDNN), fp16, bf16 (autocast over a model whose weights
are all cast to the low dtype, like model.half(), so autocast never re-casts them; LayerNorm, softmax and
log_softmax run in fp32 by autocast's CUDA policy). The preprocessor always runs in fp32 (as NeMo's does); TF32 is
off except for "tf32".

Timing: --warmup runs excluded, then --repeat runs; each run is bracketed by torch.cuda.synchronize() and
time.perf_counter (wall) with CUDA events between the stages (frontend / encoder / decoder, GPU timeline).
Reported: median and p99 wall ms, stage medians and shares, RTFx = B * audio s / median wall s (window cases:
B * 2 s chunk / wall), peak torch.cuda.max_memory_allocated and the resident memory (weights) before the case.
The greedy TDT decoder is nemo_ref's per-utterance Python loop (one host sync per step): an honest eager-PyTorch
baseline, but NeMo's own batched label-looping decoder with CUDA graphs is much faster.
Cache-aware streaming steps are not measured (nemo_ref has no cache-aware step; v3 is not a cache-aware model).

  python3 tools/reference/torch_bench.py --json > torch_bench.json           # all cases, all precisions, cuda
  /usr/bin/python3 tools/reference/torch_bench.py --device cpu --layers 2 --d-model 64 --cases offline10 --repeat 2
"""

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nemo_ref as R  # noqa: E402

CASES = {
    "offline10": dict(kind="offline", secs=10.0, batch=1),
    "offline60": dict(kind="offline", secs=60.0, batch=1),
    "offline10_b32": dict(kind="offline", secs=10.0, batch=32),
    "enc592": dict(kind="encoder", frames=592, batch=1),
    "window14": dict(kind="window", secs=14.0, batch=1),
    "window14_b64": dict(kind="window", secs=14.0, batch=64),
}
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
LOW = {"fp16": torch.float16, "bf16": torch.bfloat16}
WIN_LEFT, WIN_CHUNK = 125, 25  # encoder frames of the 10 s left context and the 2 s chunk (spec section 8)


def v3_config(n_layers=24, d_model=1024, n_heads=8):
    """The model_config keys nemo_ref.Hparams reads, with parakeet-tdt-0.6b-v3's values (spec 0.1)."""
    return {
        "preprocessor": dict(sample_rate=16000, window_size=0.025, window_stride=0.01, n_fft=512, features=128,
                             preemph=0.97, log=True, log_zero_guard_type="add", log_zero_guard_value=2 ** -24,
                             mag_power=2.0, normalize="per_feature", pad_to=0, pad_value=0.0, dither=0.0),
        "encoder": dict(feat_in=128, n_layers=n_layers, d_model=d_model, n_heads=n_heads, ff_expansion_factor=4,
                        subsampling="dw_striding", subsampling_factor=8, subsampling_conv_channels=256,
                        causal_downsampling=False, xscaling=False, untie_biases=True, use_bias=False,
                        self_attention_model="rel_pos", conv_kernel_size=9, conv_norm_type="batch_norm",
                        att_context_size=[-1, -1], att_context_style="regular", feat_out=-1),
        "decoder": dict(vocab_size=8192, prednet=dict(pred_hidden=640, pred_rnn_layers=2)),
        "joint": dict(num_extra_outputs=5, jointnet=dict(encoder_hidden=d_model, pred_hidden=640, joint_hidden=640,
                                                         activation="relu", dropout=0.2)),
        "decoding": dict(model_type="tdt", durations=[0, 1, 2, 3, 4], greedy=dict(max_symbols=10)),
    }


def synth_audio(batch, secs, dev, seed=2):
    """Deterministic speech-like noise: band noise with a 4 Hz syllable envelope, peak about 0.3."""
    n = int(round(secs * 16000))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    rows = []
    for b in range(batch):
        env = 0.5 + 0.5 * np.sin(2 * np.pi * (3.0 + 0.2 * b) * t + rng.uniform(0, 6.3)) ** 2
        x = np.convolve(rng.standard_normal(n), np.hanning(9) / 4, mode="same") * env
        rows.append(0.3 * x / np.abs(x).max())
    audio = torch.from_numpy(np.stack(rows).astype(np.float32)).to(dev)
    return audio, torch.full((batch,), n, dtype=torch.int64, device=dev)


def low_precision_model(m, dtype):
    """Every floating tensor except the preprocessor's cast to `dtype` (like NeMo's model.half()), for autocast."""
    sd = {k: v if k.startswith("preprocessor.") or not v.is_floating_point() else v.to(dtype) for k, v in m.sd.items()}
    return R.NemoModel(m.cfg, sd, {})


def greedy(m, enc, lens, start=0, count=None):
    """Per-utterance greedy TDT on enc [B, D, T] frames [start, start + count or len). Returns total tokens, frames."""
    tr = R.Transducer(m)
    toks = frames = 0
    for b in range(enc.shape[0]):
        T = int(lens[b]) - start if count is None else min(count, int(lens[b]) - start)
        e = enc[b, :, start:start + T].transpose(0, 1)
        toks += len(R.greedy_tdt(tr, e, T, m.hp.durations, m.hp.max_symbols)[0])
        frames += T
    return toks, frames


def amp(prec, dev):
    return torch.autocast(dev.type, dtype=LOW[prec]) if prec in LOW else contextlib.nullcontext()


def calibrate(m, prec, dev, rate, log):
    """Bisect the blank bias so that greedy TDT on the 10 s clip emits about `rate` tokens per encoder frame
    (per precision: near-threshold random-weight decisions shift with the dtype)."""
    audio, alen = synth_audio(1, 10.0, dev)
    with torch.no_grad(), amp(prec, dev):
        enc, elen = R.encode(m, *R.featurize(m, audio, alen))
        bias = m.sd[m.hp.joint_out + ".bias"]
        base, lo, hi, got = float(bias[m.hp.blank]), -30.0, 30.0, None
        for _ in range(16):
            mid = 0.5 * (lo + hi)
            bias[m.hp.blank] = base + mid
            toks, frames = greedy(m, enc, elen)
            got = toks / frames
            if abs(got - rate) < 0.02:
                break
            lo, hi = (mid, hi) if got > rate else (lo, mid)
    log(f"{prec}: blank bias {base:+.3f} -> {base + mid:+.3f}: {got:.3f} tokens/frame on offline10 (target {rate})")
    return got


class Marks:
    """Stage boundaries: CUDA events on the GPU timeline (perf_counter on the CPU)."""

    def __init__(self, dev, n):
        self.cuda = dev.type == "cuda"
        self.ev = [torch.cuda.Event(enable_timing=True) for _ in range(n)] if self.cuda else [0.0] * n

    def mark(self, i):
        if self.cuda:
            self.ev[i].record()
        else:
            self.ev[i] = time.perf_counter()

    def ms(self, i, j):
        return self.ev[i].elapsed_time(self.ev[j]) if self.cuda else 1e3 * (self.ev[j] - self.ev[i])


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def run_case(name, case, m, prec, dev, a):
    """Returns one result dict for (case, precision)."""
    B = case["batch"]
    if case["kind"] == "encoder":
        g = torch.Generator(device=dev).manual_seed(1)
        feats = torch.randn((B, m.hp.n_mels, case["frames"]), generator=g, device=dev)
        flen = torch.full((B,), case["frames"], dtype=torch.int64, device=dev)
        audio_s = case["frames"] * 0.01
    else:
        audio, alen = synth_audio(B, case["secs"], dev)
        audio_s = case["secs"]
    credited_s = B * (WIN_CHUNK * 0.08 if case["kind"] == "window" else audio_s)

    def once():
        mk = Marks(dev, 4)
        sync(dev)
        t0 = time.perf_counter()
        mk.mark(0)
        if case["kind"] == "encoder":
            f, fl = feats, flen
        else:
            f, fl = R.featurize(m, audio, alen)  # fp32 always, outside autocast
        mk.mark(1)
        with amp(prec, dev):
            enc, elen = R.encode(m, f, fl)
            mk.mark(2)
            toks = frames = 0
            if case["kind"] == "offline":
                toks, frames = greedy(m, enc, elen)
            elif case["kind"] == "window":
                toks, frames = greedy(m, enc, elen, WIN_LEFT, WIN_CHUNK)
        mk.mark(3)
        sync(dev)
        wall = 1e3 * (time.perf_counter() - t0)
        return wall, mk.ms(0, 1), mk.ms(1, 2), mk.ms(2, 3), toks, frames, int(elen.max())

    if dev.type == "cuda":
        torch.cuda.empty_cache()
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        for _ in range(a.warmup):
            once()
        runs = [once() for _ in range(a.repeat)]
    wall, fe, en, de = (np.array([r[i] for r in runs]) for i in range(4))
    st = {"frontend": float(np.median(fe)), "encoder": float(np.median(en)), "decoder": float(np.median(de))}
    tot = sum(st.values()) or 1.0
    res = dict(case=name, precision=prec, batch=B, audio_s=audio_s, encoder_frames=runs[-1][6],
               wall_ms_median=float(np.median(wall)), wall_ms_p99=float(np.percentile(wall, 99)),
               wall_ms_min=float(wall.min()), rtfx=credited_s / (float(np.median(wall)) / 1e3),
               **{k + "_ms": v for k, v in st.items()}, **{k + "_share": v / tot for k, v in st.items()},
               tokens_per_frame=runs[-1][4] / runs[-1][5] if runs[-1][5] else None, repeat=a.repeat)
    if dev.type == "cuda":
        res.update(peak_mem_mb=torch.cuda.max_memory_allocated() / 2 ** 20, resident_mem_mb=resident / 2 ** 20)
    return res


def set_precision(prec):
    """TF32 on only for "tf32" (matmul and cuDNN). Uses the legacy allow_tf32 flags (deprecation warning silenced);
    only if they are gone, PyTorch >= 2.9's fp32_precision settings, all set alike (mixing the two is an error)."""
    tf32 = prec == "tf32"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    except (AttributeError, AssertionError, RuntimeError):
        mode = "tf32" if tf32 else "ieee"
        torch.backends.fp32_precision = torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.fp32_precision = torch.backends.cudnn.conv.fp32_precision = mode
        torch.backends.cudnn.rnn.fp32_precision = mode


def matmul_rel_err(dev):
    """Max relative error of a 512^3 fp32 matmul against fp64: ~1e-6 with TF32 off, ~1e-3 with it on."""
    g = torch.Generator(device=dev).manual_seed(3)
    x, y = (torch.randn((512, 512), generator=g, device=dev) for _ in range(2))
    ref = x.double() @ y.double()
    return float((x @ y - ref).abs().max() / ref.abs().max())


def print_table(out):
    print(f"# {out['device']}  torch {out['torch']}  model: {out['model']}")
    hdr = ("case", "prec", "B", "wall_med", "wall_p99", "RTFx", "front%", "enc%", "dec%", "enc_ms", "tok/fr", "peakMB")
    print("{:<14}{:<6}{:>4}{:>11}{:>11}{:>9}{:>8}{:>7}{:>7}{:>10}{:>8}{:>9}".format(*hdr))
    for r in out["results"]:
        if "error" in r:
            print(f"{r['case']:<14}{r['precision']:<6}  {r['error']}")
            continue
        tpf = "-" if r["tokens_per_frame"] is None else f"{r['tokens_per_frame']:.2f}"
        print(f"{r['case']:<14}{r['precision']:<6}{r['batch']:>4}{r['wall_ms_median']:>11.2f}{r['wall_ms_p99']:>11.2f}"
              f"{r['rtfx']:>9.1f}{100 * r['frontend_share']:>8.1f}{100 * r['encoder_share']:>7.1f}"
              f"{100 * r['decoder_share']:>7.1f}{r['encoder_ms']:>10.2f}{tpf:>8}{r.get('peak_mem_mb', 0):>9.0f}")
    for n in out["notes"]:
        print("# " + n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list of " + ",".join(PRECISIONS))
    ap.add_argument("--cases", default=",".join(CASES), help="comma list of " + ",".join(CASES))
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per case (median, p99 over these)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs before the timed ones")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--d-model", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--token-rate", type=float, default=0.35, help="calibration target, tokens per encoder frame")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--out", help="also write the JSON object to this file, rewritten after every case")
    a = ap.parse_args()
    dev = torch.device(a.device)
    cases = [c for c in a.cases.split(",") if c]
    precs = [p for p in a.precisions.split(",") if p]
    for c in cases:
        assert c in CASES, f"unknown case {c}"
    for p in precs:
        assert p in PRECISIONS, f"unknown precision {p}"
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    def save(out):
        if a.out:
            with open(a.out, "w") as fh:
                json.dump(out, fh, indent=1)

    t0 = time.time()
    set_precision("fp32")
    m = R.random_model(v3_config(a.layers, a.d_model, a.heads), a.seed, dev)
    n_params = sum(v.numel() for k, v in m.sd.items() if not k.startswith("preprocessor."))
    log(f"built {a.layers}-layer d_model {a.d_model} model ({n_params / 1e6:.1f} M parameters) on {dev} "
        f"in {time.time() - t0:.1f} s")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    out = dict(device=f"{dev} ({name})", torch=torch.__version__, cuda=torch.version.cuda,
               model=f"parakeet-tdt-0.6b-v3 architecture, random weights, {a.layers} layers, d_model {a.d_model}, "
                     f"{n_params:,} parameters", results=[], notes=[
                   "decoder = nemo_ref's per-utterance Python greedy TDT loop (one host sync per step); NeMo's "
                   "batched label-looping decoder with CUDA graphs is much faster",
                   "fp16/bf16 = autocast, weights pre-cast to the low dtype; preprocessor always fp32; "
                   "fp32 = TF32 off, tf32 = TF32 on (matmul + cuDNN)",
                   "window14*: one 10-2-2 windowed step (14 s window), decoding only the 25 chunk frames; "
                   "RTFx credits B x 2 s per step",
                   "enc592: encoder only, [1,128,592] features (TensorRT reference: 12.1 ms fp16, 18.6 ms fp32)",
                   "eager PyTorch, no CUDA graphs / torch.compile: small-batch encoder calls are partly bound by "
                   "kernel-launch overhead",
                   "cache-aware streaming step not measured (no cache-aware step in nemo_ref; v3 is not cache-aware)",
               ])
    for prec in precs:
        if prec == "fp16" and dev.type == "cpu":
            out["results"] += [dict(case=c, precision=prec, error="skipped: fp16 autocast needs CUDA") for c in cases]
            continue
        set_precision(prec)
        mm_err = matmul_rel_err(dev)  # proves the TF32 state (fp32 and tf32 rows)
        log(f"{prec}: fp32 matmul relative error vs fp64 {mm_err:.1e}")
        try:
            mp = low_precision_model(m, LOW[prec]) if prec in LOW else m
            calib = calibrate(mp, prec, dev, a.token_rate, log)
        except RuntimeError as e:
            err = f"calibration failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            log(f"{prec}: {err}")
            out["results"] += [dict(case=c, precision=prec, error=err) for c in cases]
            continue
        for c in cases:
            try:
                r = run_case(c, CASES[c], mp, prec, dev, a)
                r["calibrated_tokens_per_frame"] = calib
                r["fp32_matmul_rel_err"] = mm_err
                log(f"{c:<14}{prec:<6} median {r['wall_ms_median']:9.2f} ms  p99 {r['wall_ms_p99']:9.2f} ms  "
                    f"RTFx {r['rtfx']:8.1f}  ({time.time() - t0:.0f} s)")
            except RuntimeError as e:  # includes torch.cuda.OutOfMemoryError
                r = dict(case=c, precision=prec, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
                log(f"{c:<14}{prec:<6} {r['error']}")
            out["results"].append(r)
            save(out)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        del mp
    set_precision("fp32")
    out["seconds"] = round(time.time() - t0, 1)
    save(out)
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        print_table(out)


if __name__ == "__main__":
    main()
