"""`robustkit serve`: serve vision and text models over HTTP (Open Inference Protocol + /v1)."""
from __future__ import annotations

import base64
import io
import json
import logging
import shlex
from typing import List, Optional

import typer

from . import app
from ._common import USER_ERRORS, WHICH, fail


@app.command()
def serve(
    targets: List[str] = typer.Argument(None, help="Run folders or .safetensors checkpoints to serve (one or more)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, help="TCP port (0: any free port)."),
    api_keys_file: Optional[str] = typer.Option(None, "--api-keys-file", help="Keys file from `robustkit keys add`; "
                                                                              "required unless --no-auth."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without API keys (loopback hosts only)."),
    workers: int = typer.Option(1, help="Worker processes (each loads the models; scale out on one machine)."),
    name: List[str] = typer.Option([], "--name", help="Model name in URLs, once per model (default: the run "
                                                        "folder's name)."),
    which: str = WHICH,
    rate_limit: float = typer.Option(50.0, help="Requests per second per API key (0: unlimited)."),
    burst: Optional[int] = typer.Option(None, help="Burst of requests per key (default: 2 x rate limit)."),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, help="Largest request body (413 above)."),
    max_request_batch: int = typer.Option(64, help="Most inputs in one request (422 above)."),
    max_batch: int = typer.Option(64, help="Most samples per model call (micro-batching; 1 turns it off)."),
    max_wait_ms: float = typer.Option(2.0, help="How long a micro-batch waits for more requests."),
    threads: int = typer.Option(1, help="Inference threads (model calls at a time) per worker."),
    torch_threads: Optional[int] = typer.Option(None, help="torch.set_num_threads in each worker."),
    max_certify_samples: int = typer.Option(20000, help="Largest inputs x noise samples of one certified request."),
    max_text_chars: int = typer.Option(2000, help="Longest text accepted (characters)."),
    max_pixels: int = typer.Option(4096 * 4096, help="Largest image (pixels) a request may claim."),
    suspicion: str = typer.Option("max_softmax", help="Attack-suspicion signal: max_softmax | instability | "
                                                      "vote_margin (see BENCHMARKS.md)."),
    suspicion_sigma: float = typer.Option(0.1, help="Noise of the instability / vote_margin signals."),
    suspicion_k: int = typer.Option(8, help="Noisy copies per input for instability / vote_margin."),
    suspicion_threshold: float = typer.Option(0.5, help="Score from which a sample counts as suspicious."),
    metrics_open: bool = typer.Option(False, "--metrics-open", help="Serve /metrics without a key (e.g. on a "
                                                                    "private network only Prometheus reaches)."),
    max_concurrency: int = typer.Option(512, help="Open connections+requests before 503 (uvicorn)."),
    keep_alive_s: float = typer.Option(30.0, "--keep-alive-s", help="Idle keep-alive connections close after this "
                                                                      "(a long value avoids close/reuse races)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="One JSON line per request "
                                                                               "(no payloads, no keys) on stderr."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the noise (certification, noisy suspicion "
                                                             "signals); default: unpredictable, as it should be "
                                                             "in production."),
    print_example: bool = typer.Option(False, "--print-example", help="Print this serve command and a working "
                                                                      "curl line, then exit."),
) -> None:
    """Serve models over HTTP: KServe v2 / Open Inference Protocol (/v2/...), /v1/predict with optional
    randomized-smoothing certificates, model cards, Prometheus /metrics; API keys, rate and size limits."""
    from ..serve.server import ServerConfig
    try:
        cfg = ServerConfig(targets=list(targets or []), host=host, port=port, api_keys_file=api_keys_file,
                           no_auth=no_auth, workers=workers, which=which, names=list(name),
                           options={"rate_limit": rate_limit, "burst": burst, "max_body_bytes": max_body_bytes,
                                    "max_request_batch": max_request_batch, "max_batch": max_batch,
                                    "max_wait_ms": max_wait_ms, "threads": threads,
                                    "max_certify_samples": max_certify_samples, "metrics_auth": not metrics_open,
                                    "seed": seed},
                           suspicion={"signal": suspicion, "sigma": suspicion_sigma, "k": suspicion_k,
                                      "threshold": suspicion_threshold},
                           max_text_chars=max_text_chars, max_pixels=max_pixels, max_concurrency=max_concurrency,
                           keep_alive_s=keep_alive_s, access_log=access_log)
        cfg.check()
        from ..serve.app import ServeOptions
        from ..serve.models import SuspicionConfig
        ServeOptions(**cfg.options)
        SuspicionConfig(**cfg.suspicion)
        if print_example:
            for line in example_lines(cfg):
                typer.echo(line)
            return
        if torch_threads is not None:
            import torch
            torch.set_num_threads(torch_threads)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("robustkit.serve.access").setLevel(logging.INFO if access_log else logging.WARNING)
        from ..serve.server import run_server
        run_server(cfg)
    except USER_ERRORS as err:
        fail(err)


def example_lines(cfg) -> list[str]:
    """The command that serves cfg and a curl line that gets a prediction from it (one sample input)."""
    from ..serve.models import load_served_model
    lm = load_served_model(cfg.targets[0], name=cfg.names[0] if cfg.names else None, which=cfg.which)
    if lm.codec.datatype == "BYTES":
        item = "a thoroughly enjoyable film"
    else:
        import numpy as np
        from PIL import Image
        c, h, w = (lm.codec.input_shape + [1, 1, 1])[:3]
        arr = (np.linspace(0, 255, h * w).reshape(h, w)).astype("uint8")
        buf = io.BytesIO()
        Image.fromarray(arr if c == 1 else np.stack([arr] * 3, -1)).save(buf, "PNG")
        item = base64.b64encode(buf.getvalue()).decode()
    import os
    import shutil
    import sys
    exe = shutil.which("robustkit")
    prog = ["robustkit"] if exe else [os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith("..")
                                      else sys.executable, "-m", "robustkit"]
    cmd = [*prog, "serve", *cfg.targets] + (["--no-auth"] if cfg.no_auth else
                                                   ["--api-keys-file", cfg.api_keys_file])
    if cfg.port != 8000:
        cmd += ["--port", str(cfg.port)]
    url = f"http://{'[' + cfg.host + ']' if ':' in cfg.host else cfg.host}:{cfg.port or 8000}/v1/predict"
    auth = "" if cfg.no_auth else "-H \"Authorization: Bearer $ROBUSTKIT_KEY\" "
    body = json.dumps({"model": lm.name, "inputs": [item]})
    return [f"serve:  {shlex.join(cmd)}",
            f"query:  curl -s {auth}-H 'Content-Type: application/json' -d '{body}' {url}"]
