"""Load benchmark of `robustkit serve` on loopback (issue 14, acceptance 4).

    OMP_NUM_THREADS=1 python benchmarks/serve_load.py --data-dir /usr/share/datasets/fashion-mnist

Two real servers of the same Fashion-MNIST small-cnn run side by side: one with dynamic micro-batching
(--max-batch 64 --max-wait-ms 2), one serving request by request (--max-batch 1), and one batching without
waiting (--max-wait-ms 0: a batch is what queued while the previous model call ran). 32 concurrent clients
(asyncio + httpx, keep-alive, in this process) send one-image Open Inference Protocol requests (`POST /v2/models/{name}/infer`,
JSON FP32 tensors, with an API key) in alternating rounds of N requests each, so machine noise hits both
alike. Then one round of 32-image requests, and rounds with the binary tensor extension (raw float32 after
a JSON header, tritonclient's default) of 1-image requests on both servers and 32-image requests. In the same run the bare model's batched throughput
(torch.inference_mode, 1 thread, like the servers) gives the reference for "served / bare". The server's
resident memory (VmRSS) is read after a warm-up (both request sizes) and after all rounds. A second pair of
servers computes the `instability` suspicion signal (8 noisy copies per image: 9x the model work), where
batching should matter more (with --noise-signal; benchmarks/results/serve_load_with_instability.json). Writes benchmarks/results/serve_load.json.
Model: --run (default runs/fmnist-fast-house), else the standard small-cnn of benchmarks/_common.py.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RUNS, bench_model, machine_info, write_result  # noqa: E402

from robustkit.checkpoint import load_model  # noqa: E402
from robustkit.data import load_dataset  # noqa: E402
from robustkit.serve.auth import add_key  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))
from _serve_helpers import free_port, start_server, stop  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bare_throughput(model, x: torch.Tensor, batch: int, seconds: float = 3.0) -> float:
    with torch.inference_mode():
        model(x[:batch])
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for i in range(0, x.shape[0] - batch + 1, batch):
                model(x[i:i + batch])
                n += batch
        return n / (time.perf_counter() - t0)


async def load_round(url: str, key: str, bodies: list[bytes], n_requests: int, clients: int, timeout: float,
                     binary_header: int | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if binary_header is not None:  # binary tensor extension: JSON header of this length, then raw float32
        headers = {"Authorization": f"Bearer {key}", "Inference-Header-Content-Length": str(binary_header)}
    lat, errors, next_i = [], [], [0]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits) as c:
        async def worker():
            while next_i[0] < n_requests:
                i = next_i[0]
                next_i[0] += 1
                t = time.perf_counter()
                try:
                    r = await c.post("/v2/models/m/infer", content=bodies[i % len(bodies)])
                    ok = r.status_code == 200
                    if not ok:
                        errors.append(r.status_code)
                except httpx.HTTPError as err:
                    ok = False
                    errors.append(type(err).__name__)
                if ok:
                    lat.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), timeout=timeout * 20)
        wall = time.perf_counter() - t0
    lat.sort()
    q = lambda p: 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None  # noqa: E731
    return {"requests": n_requests, "ok": len(lat), "errors": len(errors), "error_kinds": sorted(set(map(str, errors))),
            "seconds": round(wall, 2), "requests_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(q(0.50), 2), "p99_ms": round(q(0.99), 2), "max_ms": round(1000 * lat[-1], 2),
            "mean_ms": round(1000 * statistics.mean(lat), 2)}


def oip_binary_body(x: torch.Tensor) -> tuple[bytes, int]:
    raw = x.numpy().astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}).encode()
    return header + raw, len(header)


def oip_body(x: torch.Tensor) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]}).encode()


def batch_sizes(url: str, key: str) -> dict:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30).text
    from prometheus_client.parser import text_string_to_metric_families
    for fam in text_string_to_metric_families(text):
        if fam.name == "robustkit_batch_size":
            s = {x.name: x.value for x in fam.samples if x.name.endswith(("_sum", "_count"))}
            calls = s.get("robustkit_batch_size_count", 0)
            return {"model_calls": int(calls), "mean_batch": round(s.get("robustkit_batch_size_sum", 0) / max(calls, 1), 2)}
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--run", default=str(ROOT / "runs" / "fmnist-fast-house"))
    ap.add_argument("--requests", type=int, default=5000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per server (alternating)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--big-batch", type=int, default=32, help="images per request in the last round")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout (s)")
    ap.add_argument("--rss-bound-mib", type=float, default=64.0, help="largest RSS growth accepted")
    ap.add_argument("--noise-signal", action="store_true",
                    help="also run a pair of servers that compute the instability signal (9x the model work)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    if not (run / "best.safetensors").is_file():
        bench_model("fashion-mnist", args.data_dir)
        run = RUNS / "fashion-mnist-small-cnn-standard-1"
    model, meta = load_model(run / "best.safetensors" if (run / "best.safetensors").is_file() else run)
    ds = load_dataset("fashion-mnist", data_dir=args.data_dir, limit=1000)
    x = ds.x_test[:1000].contiguous()
    bodies = [oip_body(x[i:i + 1]) for i in range(x.shape[0])]
    big_bodies = [oip_body(x[i:i + args.big_batch]) for i in range(0, x.shape[0] - args.big_batch + 1, args.big_batch)]

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    key = add_key(tmp / "keys.json", "bench")
    common = [str(run), "--name", "m", "--api-keys-file", str(tmp / "keys.json"), "--rate-limit", "0",
              "--no-access-log", "--torch-threads", "1", "--max-request-batch", "64"]
    configs = {"micro_batching": ["--max-batch", "64", "--max-wait-ms", "2"],
               "batch_size_1": ["--max-batch", "1", "--max-wait-ms", "0"],
               # no waiting: a batch is whatever queued while the previous model call ran
               "micro_batching_no_wait": ["--max-batch", "64", "--max-wait-ms", "0"]}
    if args.noise_signal:  # the instability signal costs 8 extra forward passes per image: batching matters more
        noisy = ["--suspicion", "instability", "--suspicion-k", "8", "--suspicion-sigma", "0.1"]
        configs.update({"instability_micro_batching": configs["micro_batching"] + noisy,
                        "instability_batch_size_1": configs["batch_size_1"] + noisy})
    servers, urls = {}, {}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        for name, extra in configs.items():
            port = free_port()
            servers[name] = start_server(common + extra, tmp / f"{name}.log", port)
            urls[name] = f"http://127.0.0.1:{port}"
        bare_before = {b: bare_throughput(model, x, b) for b in (1, 64, 256)}
        for name in configs:  # warm-up: connections, allocator high-water marks, first batches
            asyncio.run(load_round(urls[name], key, bodies, 300, args.clients, args.timeout))
        asyncio.run(load_round(urls["micro_batching"], key, big_bodies, 2 * args.clients, args.clients, args.timeout))
        rss_before = rss_mib(servers["micro_batching"].pid)
        rounds = {name: [] for name in configs}
        rss_rounds = []
        for r in range(args.rounds):
            for name in (configs if r % 2 == 0 else reversed(list(configs))):
                res = asyncio.run(load_round(urls[name], key, bodies, args.requests, args.clients, args.timeout))
                res["server_rss_mib"] = round(rss_mib(servers[name].pid), 1)
                print(f"round {r} {name:<27} {res}", flush=True)
                rounds[name].append(res)
            rss_rounds.append(round(rss_mib(servers["micro_batching"].pid), 1))
        big = asyncio.run(load_round(urls["micro_batching"], key, big_bodies, max(50, args.requests // args.big_batch),
                                     args.clients, args.timeout))
        big["images_per_s"] = round(big["requests_per_s"] * args.big_batch, 1)
        print(f"{args.big_batch}-image requests {big}", flush=True)
        # The binary tensor extension (tritonclient's default): no JSON floats to parse.
        bin1 = [oip_binary_body(x[i:i + 1]) for i in range(x.shape[0])]
        bin_big = [oip_binary_body(x[i:i + args.big_batch]) for i in range(0, x.shape[0] - args.big_batch + 1,
                                                                            args.big_batch)]
        binary = {}
        for name in ("micro_batching", "batch_size_1"):
            binary[name] = asyncio.run(load_round(urls[name], key, [b for b, _ in bin1], args.requests, args.clients,
                                                  args.timeout, binary_header=bin1[0][1]))
            print(f"binary 1-image {name:<15} {binary[name]}", flush=True)
        binary["big_batch"] = asyncio.run(load_round(urls["micro_batching"], key, [b for b, _ in bin_big],
                                                     max(50, args.requests // args.big_batch), args.clients,
                                                     args.timeout, binary_header=bin_big[0][1]))
        binary["big_batch"]["images_per_s"] = round(binary["big_batch"]["requests_per_s"] * args.big_batch, 1)
        print(f"binary {args.big_batch}-image {binary['big_batch']}", flush=True)
        rss_after = rss_mib(servers["micro_batching"].pid)
        rss_single = rss_mib(servers["batch_size_1"].pid)
        bare_after = {b: bare_throughput(model, x, b) for b in (1, 64, 256)}
        stats = {name: batch_sizes(urls[name], key) for name in configs}
    finally:
        for p in servers.values():
            stop(p)
    bare = {str(b): round(max(bare_before[b], bare_after[b]), 1) for b in bare_before}
    bare_best = max(bare.values())
    med = {name: statistics.median(r["requests_per_s"] for r in rs) for name, rs in rounds.items()}
    total_errors = (sum(r["errors"] for rs in rounds.values() for r in rs) + big["errors"]
                    + sum(r["errors"] for r in binary.values()))
    doc = {
        "benchmark": "serve_load", "model": meta["model"]["name"], "run": str(run), "method": (meta.get("method") or {}).get("name"),
        "endpoint": "POST /v2/models/{name}/infer (JSON FP32 tensors, API key)", "clients": args.clients,
        "requests_per_round": args.requests, "rounds": rounds, "big_batch_round": big, "batch_stats": stats,
        "errors_total": total_errors,
        "median_requests_per_s": med,
        "batching_speedup": round(med["micro_batching"] / med["batch_size_1"], 2),
        "batching_speedup_no_wait": round(med["micro_batching_no_wait"] / med["batch_size_1"], 2),
        "batching_speedup_instability_signal": (round(med["instability_micro_batching"] / med["instability_batch_size_1"], 2)
                                                if "instability_batch_size_1" in med else None),
        "bare_images_per_s": {"before": {str(k): round(v, 1) for k, v in bare_before.items()},
                              "after": {str(k): round(v, 1) for k, v in bare_after.items()}, "best": bare},
        "served_fraction_of_bare_1_image_requests": round(med["micro_batching"] / bare_best, 3),
        "served_fraction_of_bare_32_image_requests": round(big["images_per_s"] / bare_best, 3),
        "binary_rounds": binary,
        "binary_batching_speedup": round(binary["micro_batching"]["requests_per_s"]
                                         / binary["batch_size_1"]["requests_per_s"], 2),
        "served_fraction_of_bare_binary_1_image": round(binary["micro_batching"]["requests_per_s"] / bare_best, 3),
        "served_fraction_of_bare_binary_32_image": round(binary["big_batch"]["images_per_s"] / bare_best, 3),
        "rss_mib": {"micro_batching_before": round(rss_before, 1), "micro_batching_after": round(rss_after, 1),
                    "after_each_round": rss_rounds,
                    "growth": round(rss_after - rss_before, 1), "bound": args.rss_bound_mib,
                    "within_bound": rss_after - rss_before <= args.rss_bound_mib,
                    "batch_size_1_after": round(rss_single, 1)},
        "machine": machine_info(), "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps({k: doc[k] for k in ("errors_total", "median_requests_per_s", "batching_speedup",
                                          "batching_speedup_no_wait",
                                          "batching_speedup_instability_signal",
                                          "served_fraction_of_bare_1_image_requests",
                                          "served_fraction_of_bare_32_image_requests", "binary_batching_speedup",
                                          "served_fraction_of_bare_binary_1_image",
                                          "served_fraction_of_bare_binary_32_image", "rss_mib")}, indent=1))
    print("wrote", write_result("serve_load", doc))
    if total_errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
