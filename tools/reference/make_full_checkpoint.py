#!/usr/bin/python3
"""Write a full-size parakeet-tdt-0.6b-v3-shaped `.nemo` with random weights (for load/timing tests).

Usage: /usr/bin/python3 tools/reference/make_full_checkpoint.py [OUT.nemo] [--seed N] [--smoke WAV]
       (default OUT: /tmp/full-v3.nemo; needs ~2.5 GB free for the file plus ~2.5 GB temporary, ~3 GB RAM)

Architecture (spec 1.2 / 1.5): 128 mels, dw_striding x8 with 256 channels, 24 conformer layers, d_model 1024,
8 heads, FF 4096, conv kernel 9, use_bias false, xscaling false, untie_biases true; 2-layer LSTM predictor 640;
joint 640; 8192 tokens + blank + 5 durations [0,1,2,3,4]. Same key names, shapes, order and container layout as
NeMo (see make_variant.py). The tokenizer is a real 8192-piece SentencePiece BPE model trained here on a
deterministic synthetic corpus of pseudo-words (its pieces are not v3's). Weights: PyTorch default init of the
NeMo-shaped modules, LayerNorm/BatchNorm/pos_bias/BN statistics randomised; no calibration (decoding output is
meaningless; use the small variants for numerics).
"""

import argparse
import copy
import hashlib
import json
import os
import random
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_variant as MV  # noqa: E402
import nemo_ref as R  # noqa: E402
from param_count import tensor_inventory  # noqa: E402

V3 = dict(
    n_mels=128,
    encoder=dict(n_layers=24, d_model=1024, n_heads=8, ff_expansion_factor=4, conv_kernel_size=9,
                 subsampling_conv_channels=256, use_bias=False, untie_biases=True, xscaling=False),
    pred_hidden=640, pred_rnn_layers=2, joint_hidden=640, durations=[0, 1, 2, 3, 4],
)


def synthetic_corpus(n_lines=60000, n_words=40000, seed=8192):
    """Pseudo-English sentences from random syllables with a Zipf-like word distribution (deterministic)."""
    rng = random.Random(seed)
    ons = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z",
           "br", "cr", "dr", "fr", "gr", "pr", "tr", "bl", "cl", "fl", "gl", "pl", "sl", "sh", "ch", "th", "wh",
           "st", "sp", "sk", "sm", "sn", "qu", "str", "spr", "scr"]
    nuc = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "ie", "oa", "au", "y"]
    cod = ["", "", "n", "m", "r", "l", "s", "t", "d", "k", "ng", "nd", "nt", "st", "rt", "ck", "sh", "ch", "th", "x",
           "ll", "ss", "rn", "lt"]
    words = set()
    while len(words) < n_words:
        words.add("".join(rng.choice(ons) + rng.choice(nuc) + rng.choice(cod)
                          for _ in range(rng.choice([1, 1, 2, 2, 2, 3, 3, 4]))))
    words = sorted(words)
    rng.shuffle(words)
    cum, acc = [], 0.0
    for i in range(len(words)):
        acc += 1.0 / (i + 1) ** 0.8
        cum.append(acc)
    lines = []
    for _ in range(n_lines):
        s = " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(4, 14)))
        if rng.random() < 0.5:
            s = s[0].upper() + s[1:]
        lines.append(s + rng.choice([".", ".", "?", "!", ",", ""]))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="/tmp/full-v3.nemo")
    ap.add_argument("--seed", type=int, default=6060)
    ap.add_argument("--smoke", help="a 16 kHz WAV to run through nemo_ref.py after writing (slow-ish on CPU)")
    a = ap.parse_args()
    t0 = time.time()

    print("training the 8192-piece tokenizer ...", flush=True)
    tok_model, tok_tvocab = MV.train_tokenizer(8192, synthetic_corpus())
    tok_vocab = MV.bert_vocab_txt(tok_tvocab)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=tok_model)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert len(pieces) == 8192, len(pieces)
    h = lambda b: hashlib.md5(b).hexdigest()  # noqa: E731
    art = {"model": f"{h(tok_model)}_tokenizer.model", "vocab": f"{h(tok_vocab)}_vocab.txt",
           "tvocab": f"{h(tok_tvocab)}_tokenizer.vocab"}
    artifacts = {art["model"]: tok_model, art["vocab"]: tok_vocab, art["tvocab"]: tok_tvocab}
    cfg = MV.make_config(copy.deepcopy(V3), pieces, art)
    print(f"  {time.time() - t0:.1f}s; building {cfg['encoder']['n_layers']}-layer model ...", flush=True)
    model, sd = MV.build_state_dict(cfg, a.seed)
    inv = tensor_inventory(sd, with_tensors=False)
    print(f"  {time.time() - t0:.1f}s; {inv['num_tensors']} tensors, {inv['parameters']:,} parameters, "
          f"{inv['total_elements']:,} elements; writing {a.out} ...", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    MV.write_nemo(a.out, cfg, sd, artifacts)
    del model, sd
    size = os.path.getsize(a.out)
    print(f"  {time.time() - t0:.1f}s; wrote {size:,} bytes", flush=True)
    m = R.load_nemo(a.out)
    hp = m.hp
    assert (hp.n_layers, hp.d_model, hp.n_heads, hp.n_mels, hp.vocab_size, hp.pred_layers) == (24, 1024, 8, 128, 8192, 2)
    print(f"  {time.time() - t0:.1f}s; reloaded: {len(m.sd)} tensors, joint out "
          f"{tuple(m.sd[hp.joint_out + '.weight'].shape)}", flush=True)
    if a.smoke:
        x, sr = R.read_wav(a.smoke)
        res = R.run(m, x)
        print(f"  smoke: features {tuple(res['features'].shape)}, encoder {tuple(res['encoder_output'].shape)}, "
              f"{len(res['tokens'])} tokens", flush=True)
    print(json.dumps({"path": a.out, "bytes": size, "parameters": inv["parameters"],
                      "total_elements": inv["total_elements"], "num_tensors": inv["num_tensors"],
                      "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
