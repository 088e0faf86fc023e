#!/usr/bin/python3
"""Parameter count and tensor list of a `.nemo` checkpoint, as JSON.

Usage: /usr/bin/python3 tools/reference/param_count.py MODEL.nemo [-o tensors.json] [--no-tensors]

Counts (all from the state dict in model_weights.ckpt):
  num_tensors           state-dict entries (shared tensors counted once per key)
  total_elements        sum of numel over all entries (buffers and int64 num_batches_tracked included)
  parameters            learnable parameters as nn.Module.parameters() counts them: every entry except the
                        preprocessor buffers (window, fb) and BatchNorm running_mean/running_var/num_batches_tracked;
                        a tensor shared by several keys (untie_biases: false) is counted once
  unique_storage_bytes  bytes of tensor data the zip holds (shared storages once)
  shared_tensors        groups of keys that share one storage
  tensors               [{name, shape, dtype}] in pickle (state-dict) order
"""

import argparse
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nemo_ref as R  # noqa: E402

BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


def _storage_key(t):
    st = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return st.data_ptr()


def tensor_inventory(sd, with_tensors=True):
    rows, storages, params = [], {}, {}
    shared = collections.defaultdict(list)
    for k, t in sd.items():
        rows.append({"name": k, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")})
        key = _storage_key(t)
        storages[key] = max(storages.get(key, 0), t.numel() * t.element_size())
        shared[(key, t.storage_offset(), tuple(t.shape))].append(k)
        if not k.startswith("preprocessor.") and not k.endswith(BUFFER_SUFFIXES):
            params[(key, t.storage_offset(), tuple(t.shape))] = t.numel()
    inv = {
        "num_tensors": len(rows),
        "total_elements": sum(t.numel() for t in sd.values()),
        "parameters": sum(params.values()),
        "unique_storage_bytes": sum(storages.values()),
        "shared_tensors": [v for v in shared.values() if len(v) > 1],
        "by_prefix": {p: sum(t.numel() for k, t in sd.items() if k.startswith(p + "."))
                      for p in ("preprocessor", "encoder", "decoder", "joint")},
    }
    if with_tensors:
        inv["tensors"] = rows
    return inv


def dumps_inventory(inv):
    """JSON with one line per tensor."""
    head = {k: v for k, v in inv.items() if k != "tensors"}
    text = json.dumps(head, indent=1)
    if "tensors" not in inv:
        return text
    rows = ",\n  ".join(json.dumps(r) for r in inv["tensors"])
    return text[:-2] + ',\n "tensors": [\n  ' + rows + "\n ]\n}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("-o", "--out")
    ap.add_argument("--no-tensors", action="store_true")
    a = ap.parse_args()
    sd = R.load_state_dict(a.model)
    inv = tensor_inventory(sd, not a.no_tensors)
    with R._open_nemo(a.model) as tf:
        inv["members"] = [m.name for m in tf.getmembers()]
    text = dumps_inventory(inv)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
