"""Cross-framework attention-state check, the Python half (driven by state_merge_check.ts):

    deno run -A bench/peers/state_merge_check.ts          # on the GPU host; runs this script

or by hand, over a folder the Deno script prepared:

    python3 bench/peers/state_merge_check.py DIR [--engine torch|numpy]

DIR holds spec.json ({"B", "Hq", "Hkv", "N", "D", "split"}), q.f32 [B, Hq, 1, D] and k.f32,
v.f32 [B, Hkv, N, D] (raw little-endian float32), and lean_state.safetensors: leanattn's state
over keys [split, N). This script
1. computes attention with PyTorch (CUDA when present; float32 math) over keys [0, split) and
   saves its state as DIR/torch_state.safetensors: "out" F32 [B, Hq, 1, D] and "lse" F32
   [B, Hq, 1] (natural log), metadata lse_log_base "e" -- with the `safetensors` package when
   installed, else by writing the format's bytes with numpy (8-byte header length, JSON, data);
2. reads leanattn's state (same two ways), merges it with its own in PyTorch and compares
   with PyTorch's attention over all N keys.
Prints one JSON line: {"writer", "reader", "device", "torch", "max_abs_err", "max_abs_ref"}.
"""

import json
import struct
import sys

import numpy as np


def save_state(path, out, lse):
    meta = {"format": "leanattn-attention-state", "lse_log_base": "e",
            "layout": "out [B, Hq, Sq, D], lse [B, Hq, Sq] (natural log)"}
    tensors = {"out": np.ascontiguousarray(out, dtype="<f4"),
               "lse": np.ascontiguousarray(lse, dtype="<f4")}
    try:
        from safetensors.numpy import save_file
    except ImportError:
        header, offset = {"__metadata__": meta}, 0
        for name, a in tensors.items():
            header[name] = {"dtype": "F32", "shape": list(a.shape),
                            "data_offsets": [offset, offset + a.nbytes]}
            offset += a.nbytes
        text = json.dumps(header, separators=(",", ":"))
        text += " " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text.encode())
            for a in tensors.values():
                f.write(a.tobytes())
        return "numpy (by hand)"
    save_file(tensors, path, metadata=meta)
    return "safetensors"


def load_state(path):
    try:
        from safetensors.numpy import load_file
    except ImportError:
        with open(path, "rb") as f:
            raw = f.read()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        data = raw[8 + n:]
        kinds = {"F32": "<f4", "F16": "<f2"}
        got = {}
        for name in ("out", "lse"):
            e = header[name]
            a, b = e["data_offsets"]
            got[name] = np.frombuffer(data[a:b], dtype=kinds[e["dtype"]]).reshape(e["shape"])
        assert header.get("__metadata__", {}).get("lse_log_base", "e") == "e"
        return got["out"].astype(np.float32), got["lse"].astype(np.float32), "numpy (by hand)"
    t = load_file(path)
    return t["out"].astype(np.float32), t["lse"].astype(np.float32), "safetensors"


def attention_torch(torch, dev, q, k, v):
    """out, lse over all keys given; GQA by repeating K/V heads; float32."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    s = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
    lse = torch.logsumexp(s, dim=-1)
    out = torch.softmax(s, dim=-1) @ v
    return out, lse


def merge_torch(torch, a, b):
    (oa, la), (ob, lb) = a, b
    m = torch.maximum(la, lb)
    wa, wb = torch.exp(la - m), torch.exp(lb - m)
    out = (oa * wa[..., None] + ob * wb[..., None]) / (wa + wb)[..., None]
    return out, m + torch.log(wa + wb)


def main():
    folder = sys.argv[1]
    engine = sys.argv[sys.argv.index("--engine") + 1] if "--engine" in sys.argv else "torch"
    spec = json.load(open(f"{folder}/spec.json"))
    B, Hq, Hkv, N, D, split = (spec[x] for x in ("B", "Hq", "Hkv", "N", "D", "split"))
    q = np.fromfile(f"{folder}/q.f32", dtype="<f4").reshape(B, Hq, 1, D)
    k = np.fromfile(f"{folder}/k.f32", dtype="<f4").reshape(B, Hkv, N, D)
    v = np.fromfile(f"{folder}/v.f32", dtype="<f4").reshape(B, Hkv, N, D)
    if engine == "numpy":  # for a machine without torch: the same math in float64 numpy
        import types
        torch = types.SimpleNamespace(
            logsumexp=lambda s, dim: np.log(np.exp(s - s.max(dim, keepdims=True)).sum(dim))
            + s.max(dim),
            softmax=lambda s, dim: np.exp(s - s.max(dim, keepdims=True))
            / np.exp(s - s.max(dim, keepdims=True)).sum(dim, keepdims=True),
            maximum=np.maximum, exp=np.exp, log=np.log, __version__="none (numpy)")
        t = lambda a: a.astype(np.float64)  # noqa: E731
        rep = lambda a: np.repeat(a, Hq // Hkv, axis=1)  # noqa: E731
        kk, vv = rep(t(k)), rep(t(v))
        attn = lambda q_, k_, v_: (  # noqa: E731
            torch.softmax(q_ @ np.swapaxes(k_, -1, -2) / D ** 0.5, -1) @ v_,
            torch.logsumexp(q_ @ np.swapaxes(k_, -1, -2) / D ** 0.5, -1))
        half = attn(t(q), kk[:, :, :split], vv[:, :, :split])
        full = attn(t(q), kk, vv)
        device, host = "cpu (numpy)", lambda a: a  # noqa: E731
        lean_state = load_state(f"{folder}/lean_state.safetensors")
        lean = (t(lean_state[0]), t(lean_state[1]))
    else:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 products, as leanattn's
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
        g = lambda a: torch.from_numpy(np.array(a)).to(dev)  # noqa: E731
        half = attention_torch(torch, dev, g(q), g(k)[:, :, :split], g(v)[:, :, :split])
        full = attention_torch(torch, dev, g(q), g(k), g(v))
        lean_state = load_state(f"{folder}/lean_state.safetensors")
        lean = (g(lean_state[0]), g(lean_state[1]))
        host = lambda a: a.cpu().numpy()  # noqa: E731
    writer = save_state(f"{folder}/torch_state.safetensors", host(half[0]), host(half[1]))
    merged, _ = merge_torch(torch, half, lean)
    err = float(np.abs(host(merged) - host(full[0])).max())
    print(json.dumps({"writer": writer, "reader": lean_state[2], "device": device,
                      "torch": torch.__version__, "max_abs_err": err,
                      "max_abs_ref": float(np.abs(host(full[0])).max())}))


if __name__ == "__main__":
    main()
