"""Peer: PyTorch scaled_dot_product_attention (cuDNN, flash, mem-efficient) on decode shapes.

Run by `deno task bench` (bench/_torch.ts); stands alone too:

    echo '{"cases": [{"dtype": "float16", "D": 128, "B": 1, "Hq": 32, "Hkv": 8, "N": 4096}],
           "algos": ["torch-flash"], "reps": 20, "warmup": 3}' | python3 bench/peers/torch_sdpa.py

Reads the cases as JSON on stdin and writes JSON lines on stdout, one as soon as each is
known (so a run stopped for time keeps what it measured):
{"torch": version, "device": name}, then {"row": {case, algo, gpuMs, wallMs, gqa, ...}} per
row, then {"done": true}; or a single {"absent": reason} when torch or CUDA is missing.
Progress goes to stderr.

Shapes follow the library: q [B, Hq, 1, D], k/v [B, Hkv, N, D]. GQA (Hq != Hkv) is tried with
enable_gqa=True first; a backend that refuses it gets K/V expanded with repeat_interleave
before timing (the row's note says which). Ragged batches (kvLens) pass a boolean attn_mask
over the padded length; backends without mask support are reported absent with torch's reason.
GPU time: CUDA events around each call (median of reps after warm-up), each case's timing
preceded by ~300 ms of matrix products so the GPU is at its top clock (an idle H200 sits at
345 MHz and needs 200-300 ms of full load to reach 1980, bench/NOTES.md). A call under
GRAPH_BELOW_MS that way is timed again as a CUDA graph of GRAPH_CALLS calls replayed back to
back (median per call over the replays): a Python-level call of SDPA takes tens of
microseconds of CPU, so events around single small calls measure the launch, not the kernel
(-45 %..+43 % between two runs on an H200); the graph is the analogue of the benchmark's own
chain of calls in one command buffer. The row's note says "CUDA graph"; if capture fails the
events' time stays and the note gives the reason. Wall time: a loop of calls with one
synchronize at the end.
"""

import gc
import json
import statistics
import sys
import time

ALGOS = {
    "torch-cudnn": "CUDNN_ATTENTION",
    "torch-flash": "FLASH_ATTENTION",
    "torch-efficient": "EFFICIENT_ATTENTION",
    # Ragged batches only: the fastest of what PyTorch offers for variable lengths (see
    # measure_ragged), instead of one padded call with a mask.
    "torch-ragged": None,
}


RAMP_S = 0.3
GRAPH_BELOW_MS = 0.5
GRAPH_CALLS = 10
GRAPH_REPLAYS = 10


def ramp(torch, dev):
    """Keeps the GPU fully busy for RAMP_S seconds (its clock rises under sustained load)."""
    a = torch.randn(4096, 4096, dtype=torch.float16, device=dev)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < RAMP_S:
        for _ in range(8):
            a = torch.mm(a, a).clamp_(-1, 1)
        torch.cuda.synchronize()
    del a


def graph_time(torch, call):
    """Median GPU ms per call over GRAPH_REPLAYS replays of a CUDA graph of GRAPH_CALLS calls."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as capture requires
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(GRAPH_CALLS):
            call()
    graph.replay()
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(GRAPH_REPLAYS)]
    for start, end in ev:
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    ms = statistics.median(start.elapsed_time(end) for start, end in ev) / GRAPH_CALLS
    del graph
    return ms


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


def first_line(e):
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def measure(torch, F, sdpa_kernel, backend, q, k, v, mask, group, ref, reps, warmup, row):
    """Times one backend on one case into `row` (or sets row["absent"] with torch's reason)."""
    attempts = ["native"] if group == 1 else ["enable_gqa", "repeat_interleave"]
    last = None
    with sdpa_kernel(backend):
        for how in attempts:
            kk, vv, kw = k, v, {}
            if how == "enable_gqa":
                kw = {"enable_gqa": True}
            elif how == "repeat_interleave":
                kk = k.repeat_interleave(group, dim=1)
                vv = v.repeat_interleave(group, dim=1)

            def call(kk=kk, vv=vv, kw=kw):
                return F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask, **kw)

            try:
                out = call()
                torch.cuda.synchronize()
            except RuntimeError as e:  # torch raises RuntimeError when no kernel fits the inputs
                # Only the message: the exception's traceback holds this frame (a cycle that
                # only the cyclic GC frees) and with it kk, vv — gigabytes of GPU memory that
                # piled up over a sweep until CUDA ran out (H200, 2026-11-26).
                last = first_line(e)
                continue
            if ref is not None:
                row["maxAbsDiff"] = float((out.float() - ref).abs().max())
            del out
            for _ in range(warmup):
                call()
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
            for start, end in ev:
                start.record()
                call()
                end.record()
            torch.cuda.synchronize()
            row["gpuMs"] = statistics.median(start.elapsed_time(end) for start, end in ev)
            timing = None
            if row["gpuMs"] < GRAPH_BELOW_MS:
                try:
                    row["gpuMs"] = graph_time(torch, call)
                    timing = f"gpuMs by a CUDA graph of {GRAPH_CALLS} calls"
                except Exception as e:  # noqa: BLE001 - capture unsupported: keep the events
                    torch.cuda.synchronize()
                    timing = f"gpuMs by events per call (CUDA graph capture failed: {first_line(e)})"
            calls = max(20, min(200, int(80 / max(row["gpuMs"], 0.01))))
            t0 = time.perf_counter()
            for _ in range(calls):
                call()
            torch.cuda.synchronize()
            row["wallMs"] = (time.perf_counter() - t0) * 1e3 / calls
            row["wallCalls"] = calls
            row["gqa"] = how
            notes = []
            if how == "repeat_interleave":
                notes.append("GQA by repeat_interleave of K/V before timing (enable_gqa refused: "
                             + str(last) + ")")
            elif how == "enable_gqa":
                notes.append("GQA by enable_gqa=True")
            if mask is not None:
                notes.append("ragged via boolean attn_mask over the padded N")
            if timing:
                notes.append(timing)
            if notes:
                row["note"] = "; ".join(notes)
            return
    row["absent"] = f"{getattr(backend, 'name', backend)} cannot run this case: {last}"


def ragged_candidates(torch, F, q, k, v, lens, group):
    """Ways PyTorch runs one decode step of a ragged batch, each as (name, call).

    - "per-sequence": one SDPA call per sequence over its own keys (the dispatcher picks the
      kernel), captured in one CUDA graph by the timing (as varlen; nested only when short);
    - "varlen": FlashAttention-2's varlen kernel (aten._flash_attention_forward) over K/V
      packed once (outside the timing) with cumulative sequence lengths;
    - "nested": SDPA on jagged nested tensors (q one token a sequence, K/V of each length).
    """
    B, Hq, _, D = q.shape
    live = [b for b, L in enumerate(lens) if L > 0]
    kw = {"enable_gqa": True} if group > 1 else {}
    views = [(q[b:b + 1], k[b:b + 1, :, :lens[b]], v[b:b + 1, :, :lens[b]]) for b in live]

    def per_sequence():
        return [F.scaled_dot_product_attention(qq, kk, vv, **kw) for qq, kk, vv in views]

    out = [("per-sequence", per_sequence)]
    kp = torch.cat([k[b, :, :lens[b]].transpose(0, 1) for b in live]).contiguous()
    vp = torch.cat([v[b, :, :lens[b]].transpose(0, 1) for b in live]).contiguous()
    qp = q[live].transpose(1, 2).reshape(len(live), Hq, D).contiguous()
    dev = q.device
    cu_q = torch.arange(len(live) + 1, dtype=torch.int32, device=dev)
    cu_k = torch.tensor([0] + [sum(lens[b] for b in live[:i + 1]) for i in range(len(live))],
                        dtype=torch.int32, device=dev)
    max_k = max(lens)

    def varlen():
        return torch.ops.aten._flash_attention_forward(
            qp, kp, vp, cu_q, cu_k, 1, max_k, 0.0, False, False, scale=D ** -0.5)[0]

    out.append(("varlen", varlen))
    try:
        qn = torch.nested.nested_tensor([q[b].transpose(0, 1) for b in live],
                                        layout=torch.jagged).transpose(1, 2)
        kn = torch.nested.nested_tensor([k[b, :, :lens[b]].transpose(0, 1) for b in live],
                                        layout=torch.jagged).transpose(1, 2)
        vn = torch.nested.nested_tensor([v[b, :, :lens[b]].transpose(0, 1) for b in live],
                                        layout=torch.jagged).transpose(1, 2)

        def nested():
            return F.scaled_dot_product_attention(qn, kn, vn, **kw)

        out.append(("nested", nested))
    except Exception as e:  # noqa: BLE001 - this torch cannot build jagged tensors
        out.append(("nested", first_line(e)))
    return out, live


def measure_ragged(torch, F, q, k, v, lens, group, ref, reps, row):
    """Times every ragged candidate; the row keeps the fastest correct one, the note all."""
    cands, live = ragged_candidates(torch, F, q, k, v, lens, group)
    times, notes = {}, []
    for name, call in cands:
        if isinstance(call, str):
            notes.append(f"{name}: {call}")
            continue
        try:
            got = call()
            torch.cuda.synchronize()
            if ref is not None:
                if name == "per-sequence":
                    diff = max(float((o.float()[0] - ref[b]).abs().max())
                               for o, b in zip(got, live))
                elif name == "varlen":
                    diff = float((got.float() - ref[live].transpose(1, 2).reshape(got.shape))
                                 .abs().max())
                else:
                    diff = max(float((got[i].float() - ref[b]).abs().max())
                               for i, b in enumerate(live))
                if diff > 1e-2:
                    notes.append(f"{name}: wrong result (max diff {diff:.2e})")
                    continue
                row.setdefault("maxAbsDiff", 0.0)
            del got
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
            for start, end in ev:
                start.record()
                call()
                end.record()
            torch.cuda.synchronize()
            ms = statistics.median(start.elapsed_time(end) for start, end in ev)
            how = "events"
            # The per-sequence and varlen paths are timed as a CUDA graph whatever their events
            # say: per-sequence events measure its Python calls (16 a step), which put it near
            # GRAPH_BELOW_MS, so whether it got its graph was chance: (16,32,8) [64k, 1k×15]
            # 0.22 ms with it, 0.51-0.58 without on an H100 (bench/NOTES.md, session (19)).
            # Nested tensors keep the threshold (their capture was never tried at length).
            if ms < GRAPH_BELOW_MS or name != "nested":
                try:
                    ms, how = graph_time(torch, call), "CUDA graph"
                except Exception as e:  # noqa: BLE001 - capture unsupported: keep the events
                    torch.cuda.synchronize()
                    how = f"events (graph capture failed: {first_line(e)})"
            times[name] = ms
            notes.append(f"{name} {ms:.4f} ms ({how})")
        except Exception as e:  # noqa: BLE001 - this path does not run here
            torch.cuda.synchronize()
            notes.append(f"{name}: {first_line(e)}")
    if not times:
        row["absent"] = "no ragged path ran: " + "; ".join(notes)
        return
    best = min(times, key=times.get)
    row["gpuMs"] = times[best]
    row["gqa"] = best
    row["note"] = f"fastest: {best}; " + "; ".join(notes)


def main():
    cfg = json.load(sys.stdin)
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except Exception as e:  # noqa: BLE001 - any import failure means the peer is absent
        print(json.dumps({"absent": f"cannot import torch: {first_line(e)}"}))
        return
    if not torch.cuda.is_available():
        print(json.dumps({"absent": "torch sees no CUDA device", "torch": torch.__version__}))
        return

    reps = int(cfg.get("reps", 20))
    warmup = int(cfg.get("warmup", 3))
    seed = int(cfg.get("seed", 1))
    algos = [a for a in cfg.get("algos", list(ALGOS)) if a in ALGOS]
    dev = torch.device("cuda")
    emit({"torch": torch.__version__, "device": torch.cuda.get_device_name()})
    for i, c in enumerate(cfg["cases"]):
        B, Hq, Hkv, N, D = c["B"], c["Hq"], c["Hkv"], c["N"], c["D"]
        dt = torch.float16 if c["dtype"] == "float16" else torch.float32
        lens = c.get("kvLens")
        g = torch.Generator(device=dev).manual_seed(seed + i)
        try:
            q = torch.randn(B, Hq, 1, D, dtype=dt, device=dev, generator=g)
            k = torch.randn(B, Hkv, N, D, dtype=dt, device=dev, generator=g)
            v = torch.randn(B, Hkv, N, D, dtype=dt, device=dev, generator=g)
        except Exception as e:  # noqa: BLE001 - out of memory and the like
            for a in algos:
                emit({"row": {"case": i, "algo": a, "gpuMs": None, "wallMs": None,
                              "absent": f"inputs do not fit: {first_line(e)}"}})
            continue
        mask = None
        if lens:
            lt = torch.tensor(lens, device=dev)
            mask = (torch.arange(N, device=dev)[None, :] < lt[:, None]).view(B, 1, 1, N)
        group = Hq // Hkv
        ref = None
        if B * Hq * N * D <= (1 << 27):
            kr = k.float().repeat_interleave(group, dim=1)
            vr = v.float().repeat_interleave(group, dim=1)
            s = (q.float() @ kr.transpose(-1, -2)) / (D ** 0.5)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            ref = torch.softmax(s, dim=-1) @ vr
            del kr, vr, s
        ramp(torch, dev)
        for a in algos:
            row = {"case": i, "algo": a, "gpuMs": None, "wallMs": None}
            if ALGOS[a] is None and not lens:
                continue  # torch-ragged: ragged batches only
            try:
                if ALGOS[a] is None:
                    measure_ragged(torch, F, q, k, v, lens, group, ref, reps, row)
                else:
                    backend = getattr(SDPBackend, ALGOS[a])
                    measure(torch, F, sdpa_kernel, backend, q, k, v, mask, group, ref, reps,
                            warmup, row)
            except Exception as e:  # noqa: BLE001 - out of memory while timing, and the like
                row["error"] = f"{type(e).__name__}: {first_line(e)}"
            emit({"row": row})
            log(f"torch case {i + 1}/{len(cfg['cases'])} {a}: "
                + (f"{row['gpuMs']:.4f} ms" if row["gpuMs"] is not None
                   else row.get("absent", row.get("error", ""))))
        del q, k, v, mask, ref
        gc.collect()  # any cycle still holding GPU tensors (see measure) goes now
        torch.cuda.empty_cache()
    emit({"done": True})


if __name__ == "__main__":
    main()
