#!/usr/bin/env python3
"""List every tensor of a .nemo's model_weights.ckpt as torch.load sees it, as JSON.

Golden data for tests/unit/nemo_reader_test.cc. Needs torch (Debian's /usr/bin/python3 has it):

    /usr/bin/python3 tools/reference/list_checkpoint_tensors.py \
        tests/data/tiny-a/model/tiny-a.nemo tests/data/tiny-a_tensors.json

Per tensor, in state_dict order: name, dtype (torch name without "torch."), shape, numel, sum and abs_sum
(float64, over all elements), first (the first 4 elements in row-major order, as float64).
"""
import io
import json
import sys
import tarfile

import torch


def main(nemo_path, out_path):
    with tarfile.open(nemo_path, "r:*") as tar:
        member = next(m for m in tar.getmembers() if m.name in ("model_weights.ckpt", "./model_weights.ckpt"))
        data = tar.extractfile(member).read()
    state = torch.load(io.BytesIO(data), map_location="cpu")
    tensors = []
    for name, t in state.items():
        flat = t.detach().reshape(-1).to(torch.float64)
        tensors.append({
            "name": name,
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "numel": t.numel(),
            "sum": flat.sum().item(),
            "abs_sum": flat.abs().sum().item(),
            "first": flat[:4].tolist(),
        })
    # One tensor per line keeps the file reviewable.
    rows = ",\n  ".join(json.dumps(t) for t in tensors)
    with open(out_path, "w") as f:
        f.write(f'{{"source": {json.dumps(nemo_path)}, "torch": {json.dumps(torch.__version__)},\n'
                f' "tensors": [\n  {rows}\n]}}\n')


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: list_checkpoint_tensors.py MODEL.nemo OUT.json")
    main(sys.argv[1], sys.argv[2])
