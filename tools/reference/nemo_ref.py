#!/usr/bin/python3
"""Compact PyTorch reference of NeMo Parakeet-TDT / RNNT inference, without importing NeMo.

Written from docs/nemo-parakeet-spec.md and checked against goldens produced by NeMo 2.6
(commit 8cfedd7) itself (tools/reference/check_tiny_a.py). The CLI runs in float32 on the CPU; the functions
follow the device of their inputs (torch_bench.py runs them on CUDA, also under autocast).

Covered:
  * .nemo reading: (optionally gzipped) tar, ./model_config.yaml, ./model_weights.ckpt (torch.save of the
    state dict), SentencePiece tokenizer referenced as "nemo:<member>".
  * FilterbankFeatures (AudioToMelSpectrogramPreprocessor) in NeMo >= 2.5 behaviour (zero STFT centre
    padding, N//hop valid frames, pre-emphasis masked past the length) or <= 2.4 behaviour (reflect padding,
    N//hop + 1 frames), per_feature normalisation, length mask.
  * ConformerEncoder: dw_striding subsampling (symmetric or causal, with NeMo >= 2.5 time masking),
    optional xscale, relative positional encoding, rel-pos multi-head attention (per-layer or shared
    pos_bias_u/v), conv module, FF halves, LayerNorms, any n_layers/d_model/n_heads/ff_expansion/kernel,
    use_bias, regular/chunked_limited attention context, symmetric/causal depthwise conv.
  * random_model(cfg): the state dict of any such config with random weights, without a .nemo (no PyYAML needed).
  * RNNTDecoder (embedding + any number of LSTM layers), RNNTJoint, TDT greedy (label looping, spec 10.1)
    and plain RNNT greedy (label looping), SentencePiece detokenisation + NeMo's space-before-punctuation rule.

CLI:  /usr/bin/python3 tools/reference/nemo_ref.py MODEL.nemo AUDIO.wav [--dump DIR] [--probes]
                                                    [--frontend 2.5|2.4] [--raw-logits]
"""

import argparse
import io
import json
import math
import os
import re
import sys
import tarfile
import unicodedata
import wave

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

# ----------------------------------------------------------------------------------------------------
# .nemo container
# ----------------------------------------------------------------------------------------------------


class NemoModel:
    """cfg: the model_config.yaml dict; sd: state dict (name -> tensor); members: tar member bytes."""

    def __init__(self, cfg, sd, members):
        self.cfg = cfg
        self.sd = sd
        self.members = members
        self.sp = None
        tok = cfg.get("tokenizer") or {}
        mp = tok.get("model_path")
        if mp:
            name = mp[len("nemo:"):] if mp.startswith("nemo:") else os.path.basename(mp)
            if name in members:
                import sentencepiece as spm

                self.sp = spm.SentencePieceProcessor(model_proto=members[name])
        self.hp = Hparams(cfg, sd, self.sp)


def _open_nemo(path):
    with open(path, "rb") as f:
        head = f.read(2)
    return tarfile.open(path, "r:gz" if head == b"\x1f\x8b" else "r:")


def read_nemo_members(path, skip=()):
    """All regular members (leading './' stripped) -> bytes; names in `skip` are left out."""
    members = {}
    with _open_nemo(path) as tf:
        for m in tf.getmembers():
            name = m.name[2:] if m.name.startswith("./") else m.name
            if m.isfile() and name not in skip:
                members[name] = tf.extractfile(m).read()
    return members


def load_state_dict(path):
    """torch.load of ./model_weights.ckpt straight from the tar (no extra copy in memory)."""
    with _open_nemo(path) as tf:
        for m in tf.getmembers():
            if m.isfile() and m.name in ("./model_weights.ckpt", "model_weights.ckpt"):
                return torch.load(tf.extractfile(m), map_location="cpu")
    raise FileNotFoundError("model_weights.ckpt not in " + path)


def load_nemo(path):
    import yaml  # only needed for .nemo files (random_model() and its users need no PyYAML)

    members = read_nemo_members(path, skip=("model_weights.ckpt",))
    cfg = yaml.safe_load(members["model_config.yaml"].decode("utf-8"))
    return NemoModel(cfg, load_state_dict(path), members)


def random_model(cfg, seed=0, device="cpu"):
    """A NemoModel with NeMo's state-dict keys and shapes for `cfg` (a model_config dict: the keys Hparams reads) and
    random weights, made directly on `device` (no .nemo, no tokenizer). Linear/conv weights ~ U(+-1/sqrt(fan_in))
    (PyTorch's default scale), norm affines 1 +- 0.1, BatchNorm statistics and pos_bias_u/v random, the blank
    embedding row zero. dw_striding only; encoder-level shared pos_bias when untie_biases is false."""
    g = torch.Generator(device=device).manual_seed(seed)
    sd = {}

    def u(name, *shape, fan_in=None):
        b = 1.0 / math.sqrt(fan_in or shape[1] * int(np.prod(shape[2:], dtype=np.int64)))
        sd[name] = (torch.rand(shape, generator=g, device=device) * 2 - 1) * b

    def rn(name, n, mean=0.0, std=0.1):
        sd[name] = mean + std * torch.randn((n,), generator=g, device=device)

    pp, e, dec, jn = cfg["preprocessor"], cfg["encoder"], cfg["decoder"], cfg["joint"]["jointnet"]
    sr, n_mels = int(pp.get("sample_rate", 16000)), int(pp.get("features", 64))
    win = int(pp.get("window_size", 0.02) * sr)
    n_fft = pp.get("n_fft") or 2 ** math.ceil(math.log2(win))
    sd["preprocessor.featurizer.window"] = torch.hann_window(win, periodic=False, device=device)
    sd["preprocessor.featurizer.fb"] = torch.rand((1, n_mels, n_fft // 2 + 1), generator=g, device=device) * 0.01
    d, h, k = int(e["d_model"]), int(e.get("n_heads", 4)), int(e.get("conv_kernel_size", 31))
    ch = int(e.get("subsampling_conv_channels", -1))
    ch = d if ch == -1 else ch
    causal, bias = bool(e.get("causal_downsampling", False)), bool(e.get("use_bias", True))
    stages, f = int(math.log2(int(e.get("subsampling_factor", 4)))), n_mels
    p = "encoder.pre_encode."
    u(p + "conv.0.weight", ch, 1, 3, 3), u(p + "conv.0.bias", ch, fan_in=9)
    for i in range(stages):
        f = f // 2 + 1 if causal else (f - 1) // 2 + 1
        if i:
            u(p + f"conv.{3 * i - 1}.weight", ch, 1, 3, 3), u(p + f"conv.{3 * i - 1}.bias", ch, fan_in=9)
            u(p + f"conv.{3 * i}.weight", ch, ch, 1, 1), u(p + f"conv.{3 * i}.bias", ch, fan_in=ch)
    u(p + "out.weight", d, ch * f), u(p + "out.bias", d, fan_in=ch * f)
    untie = bool(e.get("untie_biases", True))
    for n in range(int(e["n_layers"])):
        p = f"encoder.layers.{n}."

        def lin(name, o, i):
            u(p + name + ".weight", o, i)
            if bias:
                u(p + name + ".bias", o, fan_in=i)

        for ln in ("norm_feed_forward1", "norm_conv", "norm_self_att", "norm_feed_forward2", "norm_out"):
            rn(p + ln + ".weight", d, 1.0), rn(p + ln + ".bias", d)
        for ff in ("feed_forward1", "feed_forward2"):
            ff_d = d * int(e.get("ff_expansion_factor", 4))
            lin(ff + ".linear1", ff_d, d), lin(ff + ".linear2", d, ff_d)
        for name in ("linear_q", "linear_k", "linear_v", "linear_out"):
            lin("self_attn." + name, d, d)
        u(p + "self_attn.linear_pos.weight", d, d)
        if untie or n == 0:
            sd[p + "self_attn.pos_bias_u"] = 0.2 * torch.randn((h, d // h), generator=g, device=device)
            sd[p + "self_attn.pos_bias_v"] = 0.2 * torch.randn((h, d // h), generator=g, device=device)
        else:  # untie_biases: false -> one shared tensor under every layer's key
            for b in ("pos_bias_u", "pos_bias_v"):
                sd[p + "self_attn." + b] = sd["encoder.layers.0.self_attn." + b]
        for name, o, i, kw in (("pointwise_conv1", 2 * d, d, 1), ("depthwise_conv", d, 1, k),
                               ("pointwise_conv2", d, d, 1)):
            u(p + f"conv.{name}.weight", o, i, kw)
            if bias:
                u(p + f"conv.{name}.bias", o, fan_in=i * kw)
        bn = p + "conv.batch_norm."
        rn(bn + "weight", d, 1.0), rn(bn + "bias", d), rn(bn + "running_mean", d)
        sd[bn + "running_var"] = 0.5 + torch.rand((d,), generator=g, device=device)
    V, ph = int(dec["vocab_size"]), int(dec["prednet"]["pred_hidden"])
    sd["decoder.prediction.embed.weight"] = torch.randn((V + 1, ph), generator=g, device=device)
    sd["decoder.prediction.embed.weight"][V] = 0.0
    p = "decoder.prediction.dec_rnn.lstm."
    for l in range(int(dec["prednet"].get("pred_rnn_layers", 1))):
        for kind in ("ih", "hh"):
            u(p + f"weight_{kind}_l{l}", 4 * ph, ph), u(p + f"bias_{kind}_l{l}", 4 * ph, fan_in=ph)
    jh = int(jn["joint_hidden"])
    n_out = V + 1 + int(cfg["joint"].get("num_extra_outputs", 0))
    u("joint.pred.weight", jh, ph), u("joint.pred.bias", jh, fan_in=ph)
    u("joint.enc.weight", jh, d), u("joint.enc.bias", jh, fan_in=d)
    last = "joint.joint_net.2" if jn.get("dropout", 0.0) else "joint.joint_net.1"
    u(last + ".weight", n_out, jh), u(last + ".bias", n_out, fan_in=jh)
    return NemoModel(cfg, sd, {})


class Hparams:
    """The config values that matter for inference, with NeMo's defaults for absent keys."""

    def __init__(self, cfg, sd, sp):
        pp = cfg["preprocessor"]
        self.sample_rate = int(pp.get("sample_rate", 16000))
        self.win_length = int(pp.get("window_size", 0.02) * self.sample_rate)
        self.hop_length = int(pp.get("window_stride", 0.01) * self.sample_rate)
        self.n_fft = pp.get("n_fft") or 2 ** math.ceil(math.log2(self.win_length))
        self.n_mels = int(pp.get("features", 64))
        self.preemph = pp.get("preemph", 0.97)
        self.log = pp.get("log", True)
        self.log_guard_type = pp.get("log_zero_guard_type", "add")
        self.log_guard = pp.get("log_zero_guard_value", 2 ** -24)
        self.mag_power = float(pp.get("mag_power", 2.0))
        self.normalize = pp.get("normalize", "per_feature")
        self.pad_to = pp.get("pad_to", 16)
        self.pad_value = float(pp.get("pad_value", 0.0))
        assert pp.get("frame_splicing", 1) == 1 and not pp.get("exact_pad", False)

        enc = cfg["encoder"]
        self.n_layers = int(enc["n_layers"])
        self.d_model = int(enc["d_model"])
        self.n_heads = int(enc.get("n_heads", 4))
        self.ff_expansion = int(enc.get("ff_expansion_factor", 4))
        self.subsampling = enc.get("subsampling", "striding")
        assert self.subsampling == "dw_striding", "only dw_striding subsampling is implemented"
        self.subsampling_factor = int(enc.get("subsampling_factor", 4))
        ch = int(enc.get("subsampling_conv_channels", -1))
        self.sub_channels = self.d_model if ch == -1 else ch
        self.causal_downsampling = bool(enc.get("causal_downsampling", False))
        self.xscale = math.sqrt(self.d_model) if enc.get("xscaling", True) else None
        self.untie_biases = bool(enc.get("untie_biases", True))
        self.use_bias = bool(enc.get("use_bias", True))
        assert enc.get("self_attention_model", "rel_pos") == "rel_pos"
        assert not enc.get("reduction"), "reduction not implemented"
        assert int(enc.get("feat_out", -1)) <= 0, "out_proj not implemented"
        assert enc.get("conv_norm_type", "batch_norm") == "batch_norm"
        k = int(enc.get("conv_kernel_size", 31))
        self.conv_kernel = k
        ccs = enc.get("conv_context_size")
        if ccs is None:
            self.conv_context = [(k - 1) // 2, (k - 1) // 2]
        elif ccs == "causal":
            self.conv_context = [k - 1, 0]
        else:
            self.conv_context = [int(ccs[0]), int(ccs[1])]
        acs = enc.get("att_context_size") or [-1, -1]
        if isinstance(acs[0], (list, tuple)):
            acs = acs[0]  # multi-lookahead models use the first entry at inference
        self.att_context = [int(acs[0]), int(acs[1])]
        self.att_context_style = enc.get("att_context_style", "regular")

        dec = cfg["decoder"]
        if sp is not None:
            self.vocab_size = sp.get_piece_size()  # NeMo overwrites decoder.vocab_size from the tokenizer
        else:
            self.vocab_size = int(dec["vocab_size"])
        self.blank = self.vocab_size
        self.pred_layers = int(dec["prednet"].get("pred_rnn_layers", 1))
        self.pred_hidden = int(dec["prednet"]["pred_hidden"])

        joint = cfg["joint"]
        self.joint_activation = joint["jointnet"].get("activation", "relu")
        self.num_extra = int(joint.get("num_extra_outputs", 0))
        dcfg = cfg.get("decoding") or {}
        self.model_type = dcfg.get("model_type", "rnnt")
        self.durations = list(dcfg.get("durations") or [])
        if self.model_type == "tdt":
            assert len(self.durations) == self.num_extra, "TDT needs len(durations) == num_extra_outputs"
        greedy = dcfg.get("greedy") or {}
        self.max_symbols = greedy.get("max_symbols", None)
        # the joint's last Linear: joint.joint_net.2 (dropout > 0) or joint.joint_net.1 (dropout == 0)
        names = sorted(n for n in sd if n.startswith("joint.joint_net.") and n.endswith(".weight"))
        assert len(names) == 1, names
        self.joint_out = names[0][: -len(".weight")]


# ----------------------------------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------------------------------


def read_wav(path):
    """PCM16 mono WAV -> float32 numpy in [-1, 1) (int16 / 32768, what soundfile returns)."""
    with wave.open(path, "rb") as w:
        ch, sw, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    assert sw == 2, "only 16-bit PCM WAV is supported"
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1).astype(np.float32)
    return x, sr


# ----------------------------------------------------------------------------------------------------
# Frontend (FilterbankFeatures)
# ----------------------------------------------------------------------------------------------------


def featurize(m, audio, lengths, frontend="2.5"):
    """audio [B, N] float32, lengths [B] int64 -> (features [B, n_mels, 1 + N//hop], feat_len [B] int64)."""
    hp, sd = m.hp, m.sd
    new = frontend != "2.4"
    seq_len = torch.div(lengths + hp.n_fft // 2 * 2 - hp.n_fft, hp.hop_length, rounding_mode="floor")
    if not new:
        seq_len = seq_len + 1
    x = audio.to(torch.float32)
    if hp.preemph is not None:
        x = torch.cat((x[:, :1], x[:, 1:] - hp.preemph * x[:, :-1]), dim=1)
        if new:
            tmask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
            x = x.masked_fill(~tmask, 0.0)
    spec = torch.stft(
        x,
        n_fft=hp.n_fft,
        hop_length=hp.hop_length,
        win_length=hp.win_length,
        center=True,
        window=sd["preprocessor.featurizer.window"].to(torch.float32),
        return_complex=True,
        pad_mode="constant" if new else "reflect",
    )
    mag = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1))
    power = mag.pow(hp.mag_power) if hp.mag_power != 1.0 else mag
    x = torch.matmul(sd["preprocessor.featurizer.fb"].to(torch.float32), power)
    if hp.log:
        if hp.log_guard_type == "add":
            x = torch.log(x + hp.log_guard)
        else:
            x = torch.log(torch.clamp(x, min=hp.log_guard))
    if hp.normalize == "per_feature":
        x = normalize_per_feature(x, seq_len)
    elif hp.normalize:
        raise NotImplementedError(hp.normalize)
    tmask = torch.arange(x.shape[-1], device=x.device).unsqueeze(0) >= seq_len.unsqueeze(1)
    x = x.masked_fill(tmask.unsqueeze(1), hp.pad_value)
    if hp.pad_to and hp.pad_to > 0:
        pad = (-x.shape[-1]) % hp.pad_to
        if pad:
            x = F.pad(x, (0, pad), value=hp.pad_value)
    return x, seq_len


def normalize_per_feature(x, seq_len):
    """Mean and unbiased std over the valid frames of each mel bin; +1e-5 on the std (NeMo's order of ops)."""
    valid = (torch.arange(x.shape[2], device=x.device).unsqueeze(0) < seq_len.unsqueeze(1)).unsqueeze(1)
    n = valid.sum(dim=2)  # [B, 1]
    mean = torch.where(valid, x, x.new_zeros(())).sum(dim=2) / n
    var = torch.sum(torch.where(valid, x - mean.unsqueeze(2), x.new_zeros(())) ** 2, dim=2) / (n - 1.0)
    std = torch.sqrt(var)
    std = std.masked_fill(std.isnan(), 0.0) + 1e-5
    return (x - mean.unsqueeze(2)) / std.unsqueeze(2)


# ----------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------


def subsample(m, feats, lengths, frontend="2.5"):
    """dw_striding: conv(1->C, 3x3, s2) ReLU [dw(3x3, s2) pw(1x1) ReLU] * (log2(factor)-1), flatten c*F+f, Linear.

    NeMo >= 2.5 (MaskedConvSequential) zeroes time steps beyond the running valid length before every conv and
    at the end; <= 2.4 does not mask."""
    hp, sd = m.hp, m.sd
    p = "encoder.pre_encode."
    x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, T, n_mels]
    lens = lengths.clone()
    masked = frontend != "2.4"
    causal = hp.causal_downsampling
    n_stages = int(math.log2(hp.subsampling_factor))

    def mask(x, lens):
        if not masked:
            return x
        t = torch.arange(x.shape[2], device=x.device).unsqueeze(0) < lens.unsqueeze(1)
        return x * t[:, None, :, None].to(x.dtype)

    def strided(x, lens, w, b, groups):
        x = mask(x, lens)
        if causal:  # CausalConv2D: pad 2 before / 1 after on time and frequency, no conv padding
            x = F.conv2d(F.pad(x, (2, 1, 2, 1)), w, b, stride=2, padding=0, groups=groups)
            lens = torch.div(lens + 3 - 3, 2, rounding_mode="floor") + 1
        else:
            x = F.conv2d(x, w, b, stride=2, padding=1, groups=groups)
            lens = torch.div(lens + 2 - 3, 2, rounding_mode="floor") + 1
        return x, lens

    x, lens = strided(x, lens, sd[p + "conv.0.weight"], sd[p + "conv.0.bias"], 1)
    x = F.relu(mask(x, lens))
    idx = 2
    for _ in range(n_stages - 1):
        c = x.shape[1]
        x, lens = strided(x, lens, sd[p + f"conv.{idx}.weight"], sd[p + f"conv.{idx}.bias"], c)
        x = mask(x, lens)
        x = F.conv2d(x, sd[p + f"conv.{idx + 1}.weight"], sd[p + f"conv.{idx + 1}.bias"])
        x = F.relu(mask(x, lens))
        idx += 3
    x = mask(x, lens)
    b, c, t, f = x.shape
    x = F.linear(x.transpose(1, 2).reshape(b, t, c * f), sd[p + "out.weight"], sd[p + "out.bias"])
    return x, lens


def rel_pos_emb(n, d_model, device=None):
    """Rows for relative positions n-1, n-2, ..., -(n-1): [1, 2n-1, d_model] (sin on even, cos on odd features)."""
    pos = torch.arange(n - 1, -n, -1, dtype=torch.float32, device=device).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * -(math.log(10000.0) / d_model))
    pe = torch.zeros(2 * n - 1, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe.unsqueeze(0)


def make_masks(hp, lengths, T):
    """pad_mask [B, T] (True = padding) and att_mask [B, T, T] (True = forbidden), as ConformerEncoder._create_masks."""
    dev = lengths.device
    ctx = torch.ones(T, T, dtype=torch.bool, device=dev)
    lc, rc = hp.att_context
    if hp.att_context_style == "regular":
        if lc >= 0:
            ctx = ctx.triu(diagonal=-lc)
        if rc >= 0:
            ctx = ctx.tril(diagonal=rc)
    elif hp.att_context_style == "chunked_limited":
        if rc == -1:
            if lc >= 0:
                ctx = ctx.triu(diagonal=-lc)
        else:
            k = rc + 1
            left_chunks = lc // k if lc >= 0 else 10000
            ci = torch.arange(T, device=dev) // k
            diff = ci.unsqueeze(1) - ci.unsqueeze(0)
            ctx = ctx & (diff <= left_chunks) & (diff >= 0)
    else:
        raise NotImplementedError(hp.att_context_style)
    valid = torch.arange(T, device=dev).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
    both = valid.unsqueeze(1) & valid.unsqueeze(2)
    att_mask = ~(both & ctx.unsqueeze(0))
    return ~valid, att_mask


def layer_norm(x, sd, name):
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], 1e-5)


def linear(x, sd, name):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


def feed_forward(x, sd, p):
    return linear(F.silu(linear(x, sd, p + ".linear1")), sd, p + ".linear2")


def rel_shift_index(bd_full):
    """bd_full [B, H, T, 2T-1] against rows for positions T-1..-(T-1) -> [B, H, T, T] where
    out[..., i, j] = bd_full[..., i, (T-1) - i + j]  (row of relative distance i - j)."""
    T = bd_full.shape[2]
    i = torch.arange(T, device=bd_full.device).unsqueeze(1)
    j = torch.arange(T, device=bd_full.device).unsqueeze(0)
    idx = (T - 1 - i + j).expand(bd_full.shape[0], bd_full.shape[1], T, T)
    return torch.gather(bd_full, 3, idx)


def rel_shift_nemo(x):
    """NeMo's trick (pad one zero column on the left, reshape, drop the first row); result sliced to T columns."""
    b, h, t, pl = x.shape
    x = F.pad(x, (1, 0)).view(b, h, -1, t)[:, :, 1:].reshape(b, h, t, pl)
    return x[:, :, :, :t]


def rel_attention(x, pos_emb, att_mask, sd, p, hp, pos_bias_prefix=None, nemo_shift=False):
    B, T, D = x.shape
    H = hp.n_heads
    dk = D // H
    q = linear(x, sd, p + ".linear_q").view(B, T, H, dk)
    k = linear(x, sd, p + ".linear_k").view(B, T, H, dk).transpose(1, 2)
    v = linear(x, sd, p + ".linear_v").view(B, T, H, dk).transpose(1, 2)
    pp = pos_bias_prefix or p
    u_bias, v_bias = sd[pp + ".pos_bias_u"], sd[pp + ".pos_bias_v"]
    pos = F.linear(pos_emb, sd[p + ".linear_pos.weight"]).view(1, -1, H, dk).transpose(1, 2)  # no bias, ever
    q_u = (q + u_bias).transpose(1, 2)  # [B, H, T, dk]
    q_v = (q + v_bias).transpose(1, 2)
    bd_full = torch.matmul(q_v, pos.transpose(-2, -1))  # [B, H, T, 2T-1]
    bd = rel_shift_nemo(bd_full) if nemo_shift else rel_shift_index(bd_full)
    ac = torch.matmul(q_u, k.transpose(-2, -1))
    scores = (ac + bd) / math.sqrt(dk)
    m = att_mask.unsqueeze(1)
    scores = scores.masked_fill(m, -10000.0)
    attn = torch.softmax(scores, dim=-1).masked_fill(m, 0.0)
    out = torch.matmul(attn, v).transpose(1, 2).reshape(B, T, D)
    return linear(out, sd, p + ".linear_out")


def conv_module(x, pad_mask, sd, p, hp):
    x = x.transpose(1, 2)  # [B, D, T]
    x = F.conv1d(x, sd[p + ".pointwise_conv1.weight"], sd.get(p + ".pointwise_conv1.bias"))
    x = F.glu(x, dim=1)  # first half value, second half gate
    x = x.masked_fill(pad_mask.unsqueeze(1), 0.0)
    left, right = hp.conv_context
    x = F.pad(x, (left, right))
    x = F.conv1d(x, sd[p + ".depthwise_conv.weight"], sd.get(p + ".depthwise_conv.bias"), groups=x.shape[1])
    bn = p + ".batch_norm"
    x = F.batch_norm(x, sd[bn + ".running_mean"], sd[bn + ".running_var"], sd[bn + ".weight"], sd[bn + ".bias"],
                     training=False, eps=1e-5)
    x = F.silu(x)
    x = F.conv1d(x, sd[p + ".pointwise_conv2.weight"], sd.get(p + ".pointwise_conv2.bias"))
    return x.transpose(1, 2)


def conformer_layer(x, pos_emb, att_mask, pad_mask, sd, p, hp, nemo_shift=False):
    r = x
    r = r + feed_forward(layer_norm(r, sd, p + ".norm_feed_forward1"), sd, p + ".feed_forward1") * 0.5
    r = r + rel_attention(layer_norm(r, sd, p + ".norm_self_att"), pos_emb, att_mask, sd, p + ".self_attn", hp,
                          nemo_shift=nemo_shift)
    r = r + conv_module(layer_norm(r, sd, p + ".norm_conv"), pad_mask, sd, p + ".conv", hp)
    r = r + feed_forward(layer_norm(r, sd, p + ".norm_feed_forward2"), sd, p + ".feed_forward2") * 0.5
    return layer_norm(r, sd, p + ".norm_out")


def encode(m, feats, feat_len, frontend="2.5", probes=None, nemo_shift=False):
    """features [B, n_mels, T] -> (encoder output [B, d_model, ceil(T/8)], encoded_len [B] int64)."""
    hp, sd = m.hp, m.sd
    x, lens = subsample(m, feats, feat_len, frontend)
    if probes is not None:
        probes["pre_encode_out"] = x
    if hp.xscale:
        x = x * hp.xscale
    T = x.shape[1]
    pos_emb = rel_pos_emb(T, hp.d_model, x.device)
    if probes is not None:
        probes["pos_enc_x"] = x
        probes["pos_emb"] = pos_emb
    pad_mask, att_mask = make_masks(hp, lens, T)
    for i in range(hp.n_layers):
        x = conformer_layer(x, pos_emb, att_mask, pad_mask, sd, f"encoder.layers.{i}", hp, nemo_shift)
        if probes is not None:
            probes[f"layer{i}_out"] = x
    return x.transpose(1, 2), lens.to(torch.int64)


# ----------------------------------------------------------------------------------------------------
# Prediction network, joint, greedy decoding
# ----------------------------------------------------------------------------------------------------


class Transducer:
    def __init__(self, m, log_softmax=True):
        self.hp, self.sd = m.hp, m.sd
        self.log_softmax = log_softmax  # NeMo (log_softmax: null) normalises on CPU; argmax is the same

    def initial_state(self):
        z = torch.zeros(self.hp.pred_layers, 1, self.hp.pred_hidden,
                        device=self.sd["decoder.prediction.embed.weight"].device)
        return z, z.clone()

    def predict(self, token, state):
        """One LSTM step; the blank id (= padding_idx) embeds to the stored (zero) row. Gates i, f, g, o."""
        sd = self.sd
        x = sd["decoder.prediction.embed.weight"][token].view(1, -1)
        h, c = state
        hs, cs = [], []
        for l in range(self.hp.pred_layers):
            p = "decoder.prediction.dec_rnn.lstm."
            gates = (F.linear(x, sd[p + f"weight_ih_l{l}"], sd[p + f"bias_ih_l{l}"])
                     + F.linear(h[l], sd[p + f"weight_hh_l{l}"], sd[p + f"bias_hh_l{l}"]))
            i, f, g, o = gates.chunk(4, dim=1)
            c_new = torch.sigmoid(f) * c[l] + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            hs.append(h_new)
            cs.append(c_new)
            x = h_new
        return x, (torch.stack(hs), torch.stack(cs))

    def project_encoder(self, enc):  # enc [T, D] -> [T, H]
        return linear(enc, self.sd, "joint.enc")

    def project_pred(self, g):
        return linear(g, self.sd, "joint.pred")

    def joint(self, f, p):
        z = f + p
        act = self.hp.joint_activation
        z = torch.relu(z) if act == "relu" else torch.sigmoid(z) if act == "sigmoid" else torch.tanh(z)
        out = linear(z, self.sd, self.hp.joint_out)
        return out.log_softmax(dim=-1) if self.log_softmax else out


def greedy_tdt(tr, enc, T, durations, max_symbols=10, noise_hook=None):
    """Label-looping TDT greedy for one utterance (spec 10.1). enc [T_any, D]; only frames < T are used.
    Returns token ids, frame index and duration VALUE of every emitted token."""
    hp = tr.hp
    blank = hp.blank
    nd = len(durations)
    fproj = tr.project_encoder(enc[:T])
    g, state = tr.predict(blank, tr.initial_state())
    p = tr.project_pred(g)
    toks, frames, durs = [], [], []
    t, last_ts, run = 0, -1, 0

    def step(t):
        z = tr.joint(fproj[t:t + 1], p)[0]
        tok = int(torch.argmax(z[: blank + 1]))
        d = durations[int(torch.argmax(z[blank + 1: blank + 1 + nd]))]
        if tok == blank and d == 0:
            d = 1
        return tok, d

    while t < T:
        tok, d = step(t)
        t_tok = t
        t = t + d
        while tok == blank and t < T:
            t_tok = t
            tok, d = step(t)
            t = t + d
        if tok != blank:
            toks.append(tok)
            frames.append(t_tok)
            durs.append(d)
            run = run + 1 if t_tok == last_ts else 1
            last_ts = t_tok
            g, state = tr.predict(tok, state)
            p = tr.project_pred(g)
            if max_symbols is not None and t < T and run >= max_symbols and last_ts == t:
                t = t + 1
    return toks, frames, durs


def greedy_rnnt(tr, enc, T, max_symbols=10):
    """Label-looping RNNT greedy: blank advances one frame, a label stays on the frame and updates the predictor."""
    blank = tr.hp.blank
    fproj = tr.project_encoder(enc[:T])
    g, state = tr.predict(blank, tr.initial_state())
    p = tr.project_pred(g)
    toks, frames = [], []
    t, last_ts, run = 0, -1, 0
    while t < T:
        tok = int(torch.argmax(tr.joint(fproj[t:t + 1], p)[0]))
        t_tok = t
        if tok == blank:
            t += 1
            while t < T:
                t_tok = t
                tok = int(torch.argmax(tr.joint(fproj[t:t + 1], p)[0]))
                if tok != blank:
                    break
                t += 1
        if tok != blank and t < T:
            toks.append(tok)
            frames.append(t_tok)
            run = run + 1 if t_tok == last_ts else 1
            last_ts = t_tok
            g, state = tr.predict(tok, state)
            p = tr.project_pred(g)
            if max_symbols is not None and run >= max_symbols and last_ts == t:
                t += 1
    return toks, frames


def decode(m, enc_out, enc_len, log_softmax=True):
    """enc_out [d_model, T_any] for one utterance -> dict(tokens, frames, durations|None, text)."""
    hp = m.hp
    tr = Transducer(m, log_softmax=log_softmax)
    enc = enc_out.transpose(0, 1)
    T = int(enc_len)
    if hp.model_type == "tdt":
        toks, frames, durs = greedy_tdt(tr, enc, T, hp.durations, hp.max_symbols)
    else:
        toks, frames = greedy_rnnt(tr, enc, T, hp.max_symbols)
        durs = None
    return {"tokens": toks, "frames": frames, "durations": durs, "text": tokens_to_text(m, toks)}


# ----------------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------------


def supported_punctuation(pieces):
    """Unicode P* characters of pieces that are not <...>, [...], ##..., ▁..., or whitespace-only."""
    special = [re.compile(r"^\[.*\]$"), re.compile(r"^<.*>$"), re.compile(r"^##"), re.compile(r"^▁"),
               re.compile(r"^\s*$")]
    out = set()
    for tok in pieces:
        if any(s.match(tok) for s in special):
            continue
        out.update(ch for ch in tok if unicodedata.category(ch).startswith("P"))
    return out


def tokens_to_text(m, ids):
    sp = m.sp
    if sp is None:
        return ""
    ids = [i for i in ids if i < m.hp.blank]
    text = sp.decode_ids(ids)
    punct = supported_punctuation([sp.id_to_piece(i) for i in range(sp.get_piece_size())])
    if punct:
        pat = re.compile(r"(\s)(" + "|".join(re.escape(c) for c in sorted(punct)) + ")")
        text = pat.sub(r"\2", text)  # remove ONE whitespace before each punctuation mark
    return text


# ----------------------------------------------------------------------------------------------------
# Whole pipeline + dump
# ----------------------------------------------------------------------------------------------------


def sos_probes(m):
    tr = Transducer(m)
    g, (h, c) = tr.predict(m.hp.blank, tr.initial_state())
    return g.view(1, 1, -1), h, c


def run(m, audio_np, frontend="2.5", probes=False, log_softmax=True):
    audio = torch.from_numpy(np.ascontiguousarray(audio_np, dtype=np.float32)).unsqueeze(0)
    length = torch.tensor([audio.shape[1]], dtype=torch.int64)
    with torch.no_grad():
        feats, flen = featurize(m, audio, length, frontend)
        pr = {} if probes else None
        enc, elen = encode(m, feats, flen, frontend, probes=pr)
        res = decode(m, enc[0], elen[0], log_softmax=log_softmax)
        if probes:
            g, h, c = sos_probes(m)
            pr["decoder_sos_out"], pr["decoder_sos_h"], pr["decoder_sos_c"] = g, h, c
            tr = Transducer(m, log_softmax=False)
            f = tr.project_encoder(enc[0].transpose(0, 1))
            pr["joint_logits_u0"] = tr.joint(f, tr.project_pred(g.view(1, -1))).unsqueeze(0).unsqueeze(2)
    res.update(features=feats, features_len=flen, encoder_output=enc, encoded_len=elen, probes=pr)
    return res


def dump(res, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "features.npy"), np.ascontiguousarray(res["features"].numpy().astype(np.float32)))
    np.save(os.path.join(out_dir, "features_len.npy"), res["features_len"].numpy().astype(np.int64))
    np.save(os.path.join(out_dir, "encoder_output.npy"), np.ascontiguousarray(res["encoder_output"].numpy().astype(np.float32)))
    np.save(os.path.join(out_dir, "encoded_len.npy"), res["encoded_len"].numpy().astype(np.int64))
    np.save(os.path.join(out_dir, "tokens.npy"), np.array(res["tokens"], dtype=np.int32))
    np.save(os.path.join(out_dir, "token_frames.npy"), np.array(res["frames"], dtype=np.int32))
    if res["durations"] is not None:
        np.save(os.path.join(out_dir, "token_durations.npy"), np.array(res["durations"], dtype=np.int32))
    if res.get("probes"):
        pd = os.path.join(out_dir, "probes")
        os.makedirs(pd, exist_ok=True)
        for k, v in res["probes"].items():
            np.save(os.path.join(pd, k + ".npy"), np.ascontiguousarray(v.detach().numpy().astype(np.float32)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("audio")
    ap.add_argument("--dump", help="directory for features/encoder/token .npy files")
    ap.add_argument("--probes", action="store_true", help="also dump intermediates into DIR/probes/")
    ap.add_argument("--frontend", choices=["2.5", "2.4"], default="2.5",
                    help="NeMo >= 2.5 (zero STFT padding, N//hop frames) or <= 2.4 (reflect, N//hop+1)")
    ap.add_argument("--raw-logits", action="store_true", help="argmax on raw joint logits (no log_softmax)")
    ap.add_argument("--json", action="store_true", help="print the decode result as JSON")
    a = ap.parse_args()
    m = load_nemo(a.model)
    audio, sr = read_wav(a.audio)
    if sr != m.hp.sample_rate:
        sys.exit(f"sample rate {sr} != model rate {m.hp.sample_rate}; resample first")
    res = run(m, audio, a.frontend, probes=a.probes, log_softmax=not a.raw_logits)
    if a.dump:
        dump(res, a.dump)
    if a.json:
        print(json.dumps({k: res[k] for k in ("tokens", "frames", "durations", "text")}))
    else:
        print(res["text"])


if __name__ == "__main__":
    main()
