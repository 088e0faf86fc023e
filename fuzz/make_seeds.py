#!/usr/bin/env python3
"""Write the small seed corpora the fuzzers start from (fuzz/corpus/). Needs torch:

    /usr/bin/python3 fuzz/make_seeds.py

unpickler/: data.pkl of a small state_dict (protocol 2, as NeMo writes it, and protocol 4).
nemo_archive/: a small .nemo (PAX tar), the same gzip-compressed, and its bare torch zip checkpoint.
The state_dict has shared storages, a transposed (non-contiguous) view, an offset view, a 0-d tensor and
several dtypes, so mutations start close to every path of the reader.
"""
import collections
import io
import os
import tarfile
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def state_dict():
    torch.manual_seed(0)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = collections.OrderedDict()
    sd["enc.w"] = base
    sd["enc.w_t"] = base.t()
    sd["enc.row"] = base[1]
    sd["enc.scale"] = torch.tensor(0.5)
    sd["bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    sd["half"] = torch.ones(3, dtype=torch.float16)
    sd["mask"] = torch.tensor([True, False])
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("bn", {"version": 2})])
    return sd


def checkpoint(protocol):
    buf = io.BytesIO()
    torch.save(state_dict(), buf, pickle_protocol=protocol)
    return buf.getvalue()


def write(path, data):
    with open(os.path.join(HERE, "corpus", path), "wb") as f:
        f.write(data)


def tar_bytes(members, mode):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main():
    for protocol in (2, 4):
        ckpt = checkpoint(protocol)
        with zipfile.ZipFile(io.BytesIO(ckpt)) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            write(f"unpickler/state_dict_p{protocol}.pkl", z.read(pkl))
    ckpt = checkpoint(2)
    members = [("./model_config.yaml", b"sample_rate: 16000\n"), ("./model_weights.ckpt", ckpt),
               ("./0123_tokenizer.vocab", b"<unk>\t0\n")]
    write("nemo_archive/small.ckpt", ckpt)
    write("nemo_archive/small.nemo", tar_bytes(members, "w"))
    write("nemo_archive/small.nemo.gz", tar_bytes(members, "w:gz"))


if __name__ == "__main__":
    main()
