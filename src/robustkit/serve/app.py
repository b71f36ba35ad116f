"""The FastAPI app: Open Inference Protocol (KServe v2) + /v1 endpoints, keys, limits, metrics, access log.

``create_app(models, keys=...)`` builds one app; ``robustkit serve`` runs it under uvicorn (see
``run_server``). Every refusal is a JSON ``{"error": {"field", "message"}}`` with a 4xx status; an
unexpected failure is logged here and answered with a bare 500, never a stack trace.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._validation import check_number
from .auth import KeyStore
from .batching import MicroBatcher
from .decode import InputError
from .limits import RateLimiter
from .metrics import Metrics
from .models import LoadedModel
from .schemas import (Health, InferRequest, InferResponse, ModelList, ModelMetadata, PredictRequest,
                      PredictResponse, ServerMetadata, errors)

log = logging.getLogger(__name__)
access_log = logging.getLogger("robustkit.serve.access")

INPUT_NAME = "input"
OUTPUTS = {"logits": "FP32", "probabilities": "FP32", "label": "INT64", "suspicion": "FP32"}
ERROR_KINDS = {400: "malformed", 401: "auth", 403: "auth", 404: "not_found", 405: "method", 413: "too_large",
               415: "media_type", 422: "validation", 429: "rate_limit", 503: "overloaded"}


@dataclass
class ServeOptions:
    """Limits and batching of one app (the CLI's options; defaults suit a small CPU model)."""

    rate_limit: float = 50.0          # requests per second per key (0: no limit)
    burst: Optional[int] = None       # default 2 x rate_limit
    max_body_bytes: int = 8 * 1024 * 1024
    max_request_batch: int = 64       # samples per request
    max_batch: int = 64               # samples per model call (micro-batch)
    max_wait_ms: float = 2.0
    threads: int = 1                  # inference thread pool size (model calls at a time)
    max_certify_samples: int = 20_000  # inputs x noise samples one certified request may cost
    request_timeout_s: float = 30.0
    metrics_auth: bool = True
    seed: Optional[int] = None        # None: noise an attacker cannot predict; an int: reproducible (tests)

    def __post_init__(self):
        for name, low in (("max_body_bytes", 1024), ("max_request_batch", 1), ("max_batch", 1), ("threads", 1),
                          ("max_certify_samples", 1)):
            check_number(getattr(self, name), name, owner="serve", low=low, integer=True)
        check_number(self.rate_limit, "rate_limit", owner="serve", low=0)
        check_number(self.max_wait_ms, "max_wait_ms", owner="serve", low=0, high=1000)
        check_number(self.request_timeout_s, "request_timeout_s", owner="serve", low=0, low_inclusive=False)


class ApiError(Exception):
    def __init__(self, status: int, field: Optional[str], message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.field, self.message, self.headers = status, field, message, headers or {}


def error_response(status: int, field: Optional[str], message: str, headers: Optional[dict] = None,
                   path: str = "") -> JSONResponse:
    """``{"error": {"field", "message"}}``; under /v2 the Open Inference Protocol's ``{"error": "<text>"}``
    (what its clients parse), with the field both named in the text and given as ``field``."""
    if path.startswith("/v2"):
        text = f"{field}: {message}" if field else message
        return JSONResponse({"error": text, "field": field}, status_code=status, headers=headers)
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status, headers=headers)


@dataclass
class ServeState:
    models: dict[str, LoadedModel]
    keys: Optional[KeyStore]
    options: ServeOptions
    metrics: Metrics
    limiter: RateLimiter
    failed_auth: RateLimiter
    executor: ThreadPoolExecutor
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    closed: bool = False

    def model(self, name: Optional[str], field_name: str = "name") -> LoadedModel:
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise ApiError(422, "model", f"several models are served; name one of: {', '.join(sorted(self.models))}.")
        lm = self.models.get(name)
        if lm is None:
            raise ApiError(404, field_name, f"unknown model {name[:64]!r}; served: {', '.join(sorted(self.models))}.")
        return lm


def _field_of(loc) -> Optional[str]:
    """('body', 'inputs', 0, 'shape') -> 'inputs[0].shape'."""
    if tuple(loc) == ("body",):
        return "body"
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "path", "query", "header") else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


# -- the outer guard: body size, timing, metrics, access log, last-resort error handling --------------------------
class Guard:
    """Pure ASGI middleware (no per-request task overhead) around the whole app."""

    def __init__(self, app, state_ref):
        self.app, self.state_ref = app, state_ref

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        st: ServeState = self.state_ref()
        t0 = time.perf_counter()
        scope.setdefault("state", {})
        status, started = [500], [False]

        async def send_wrapped(msg):
            if msg["type"] == "http.response.start":
                status[0], started[0] = msg["status"], True
            await send(msg)

        st.metrics.in_flight.inc()
        try:
            body_receive = await self._bounded_body(scope, receive, st.options.max_body_bytes)
            if isinstance(body_receive, JSONResponse) and scope.get("path", "").startswith("/v2"):
                err = json.loads(body_receive.body)["error"]
                body_receive = error_response(body_receive.status_code, err["field"], err["message"], path="/v2")
            if isinstance(body_receive, Response):
                await body_receive(scope, receive, send_wrapped)
            else:
                await self.app(scope, body_receive, send_wrapped)
        except Exception:  # noqa: BLE001 - the last line: log it here, answer without details
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path", "")[:200])
            if not started[0]:
                await error_response(500, None, "internal error (logged on the server)", path=scope.get("path", ""))(
                    scope, receive, send_wrapped)
            status[0] = 500
        finally:
            st.metrics.in_flight.dec()
            self._record(st, scope, status[0], time.perf_counter() - t0)

    @staticmethod
    async def _bounded_body(scope, receive, limit: int):
        """Read the body up to ``limit`` bytes (refusing early on Content-Length), then replay it to the app."""
        headers = dict(scope.get("headers") or [])
        if b"content-type" not in headers and scope.get("method") == "POST":
            # Every POST body here is JSON; Open Inference Protocol clients (tritonclient) send no Content-Type.
            scope["headers"] = [*scope.get("headers", []), (b"content-type", b"application/json")]
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return error_response(400, "Content-Length", "is not an integer.")
            if n > limit:
                return error_response(413, "body", f"the request body has {n} bytes, more than the limit of {limit}.")
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return receive
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return receive
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                return error_response(413, "body", f"the request body is larger than the limit of {limit} bytes.")
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body, sent = b"".join(chunks), [False]
        json_size = headers.get(b"inference-header-content-length")
        if json_size is not None:  # binary tensor extension: a JSON header, then the raw tensor bytes
            try:
                n = int(json_size)
            except ValueError:
                n = -1
            if not 0 < n <= len(body):
                return error_response(400, "Inference-Header-Content-Length", f"must be between 1 and the body "
                                      f"size ({len(body)}); got {json_size[:20].decode('latin-1')!r}.")
            body, scope["state"]["oip_binary"] = body[:n], body[n:]

        async def replay():
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return replay

    @staticmethod
    def _record(st: ServeState, scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        state = scope.get("state") or {}
        key = state.get("key_name", "-")
        m = st.metrics
        m.requests.labels(endpoint, scope.get("method", "?"), str(status), key).inc()
        m.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            m.errors.labels(state.get("error_kind") or ERROR_KINDS.get(status, "internal" if status >= 500
                                                                         else "client")).inc()
        if access_log.isEnabledFor(logging.INFO):  # one JSON line, never the payload, the query or a key
            access_log.info(json.dumps({"ts": round(time.time(), 3), "method": scope.get("method"),
                                        "endpoint": endpoint, "path": scope.get("path", "")[:200], "status": status,
                                        "key": key, "ms": round(1000 * seconds, 2), "samples": state.get("samples"),
                                        "model": state.get("model"),
                                        "client": (scope.get("client") or ("?",))[0]}))


# -- the app --------------------------------------------------------------------------------------------------------
def create_app(models: list[LoadedModel], *, keys: Optional[KeyStore] = None,
               options: Optional[ServeOptions] = None, **overrides: Any) -> FastAPI:
    """An app serving ``models``; ``keys=None`` serves without authentication (the CLI allows that on loopback only).

    Keyword ``overrides`` set :class:`ServeOptions` fields (e.g. ``rate_limit=5, max_batch=1``).
    """
    if not models:
        raise ValueError("The 'models' parameter of create_app must hold at least one LoadedModel.")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"The served models must have distinct names. Got {names} instead; pass name=... .")
    opts = options or ServeOptions()
    if overrides:
        opts = ServeOptions(**{**opts.__dict__, **overrides})
    thresholds = {m.suspicion.threshold for m in models}
    st = ServeState({m.name: m for m in models}, keys, opts, Metrics(max(thresholds)),
                    RateLimiter(opts.rate_limit, opts.burst), RateLimiter(5.0, 20),
                    ThreadPoolExecutor(max_workers=opts.threads, thread_name_prefix="robustkit-infer"))
    for m in models:
        local = threading.local()

        def run(x, m=m, local=local):
            if not hasattr(local, "gen"):  # one generator per thread; by default seeds an attacker cannot replay
                local.gen = torch.Generator().manual_seed(_seed(opts))
            return m.run(x, local.gen)
        st.batchers[m.name] = MicroBatcher(run, m.codec, st.executor, max_batch=opts.max_batch,
                                           max_wait_ms=opts.max_wait_ms, concurrency=opts.threads,
                                           on_batch=st.metrics.batch_size.labels(m.name).observe)

    @asynccontextmanager
    async def lifespan(app):
        if st.closed:  # started again after a shutdown (in-process test clients do that): fresh thread pool
            st.executor = ThreadPoolExecutor(max_workers=opts.threads, thread_name_prefix="robustkit-infer")
            for b in st.batchers.values():
                b.executor = st.executor
            st.closed = False
        for b in st.batchers.values():
            await b.ensure_started()
        log.info("serving %s (%s)", ", ".join(names), "API keys required" if keys else "no authentication")
        yield
        st.closed = True
        for b in st.batchers.values():
            await b.stop()
        st.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="robustkit serve", version=_version(), lifespan=lifespan,
                  description="Open Inference Protocol (KServe v2) and /v1 endpoints for robustkit models.")
    app.state.rk = st
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")

    async def require_key(request: Request,
                          credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer),
                          api_key: Optional[str] = Security(api_key_header)) -> str:
        if keys is None:
            name = "anonymous"
        else:
            key = api_key or (credentials.credentials if credentials else None)
            name = keys.cached(key) if key else None  # a key verified before: no scrypt, no rationing
            client = "ip:" + (request.client.host if request.client else "?")
            if name is None:
                wait = st.failed_auth.peek(client)
                if wait > 0:  # unverified keys cost a slow scrypt check: rationed per address after failures
                    raise ApiError(429, None, "too many failed authentication attempts; retry later.",
                                   {"Retry-After": str(max(1, math.ceil(wait)))})
            if name is None and key:  # first use of a key, or a wrong one: scrypt, off the event loop
                name = await run_in_threadpool(keys.authenticate, key)
            if name is None:
                st.failed_auth.hit(client)
                raise ApiError(401, "Authorization", "a valid API key is required (Authorization: Bearer KEY or "
                                                     "X-API-Key: KEY).", {"WWW-Authenticate": "Bearer"})
        request.state.key_name = name
        rate, burst = keys.limits_of(name) if keys is not None else (None, None)
        wait = st.limiter.hit(name, rate, burst)
        if wait > 0:
            limit = opts.rate_limit if rate is None else rate
            raise ApiError(429, None, f"rate limit of {limit:g} requests/s exceeded for this key.",
                           {"Retry-After": str(max(1, math.ceil(wait)))})
        return name

    async def metrics_key(request: Request,
                          credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer),
                          api_key: Optional[str] = Security(api_key_header)) -> str:
        if not opts.metrics_auth:
            return "-"
        return await require_key(request, credentials, api_key)

    # -- errors -------------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return error_response(err.status, err.field, err.message, err.headers, request.url.path)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, err: InputError):
        return error_response(err.status, err.field, err.message, err.headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError):
        problems = err.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return error_response(400, "body", f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'syntax error')}).",
                                  path=request.url.path)
        msg = first.get("msg", "invalid value")
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        return error_response(422, _field_of(first.get("loc", ())), f"{msg}{more}.", path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, None, str(err.detail), getattr(err, "headers", None), request.url.path)

    # -- Open Inference Protocol ----------------------------------------------------------------------
    @app.get("/v2/health/live", response_model=Health, response_model_exclude_none=True, tags=["health"])
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", response_model=Health, response_model_exclude_none=True, tags=["health"], responses=errors(503, oip=True))
    async def ready():
        if st.closed:
            return error_response(503, None, "shutting down", path="/v2")
        return {"ready": True}

    @app.get("/v2", response_model=ServerMetadata, tags=["oip"], responses=errors(401, 429, oip=True))
    async def server_metadata(_key: str = Security(require_key)):
        return {"name": "robustkit", "version": _version(), "extensions": []}

    @app.get("/v2/models/{name}/ready", response_model=Health, response_model_exclude_none=True, tags=["health"],
             responses=errors(404, oip=True))
    async def model_ready(name: str):
        st.model(name)
        return {"ready": not st.closed}

    @app.get("/v2/models/{name}", response_model=ModelMetadata, tags=["oip"],
             responses=errors(401, 404, 429, oip=True))
    async def model_metadata(name: str, _key: str = Security(require_key)):
        lm = st.model(name)
        k = lm.num_classes
        return {"name": lm.name, "versions": ["1"], "platform": "pytorch",
                "inputs": [{"name": INPUT_NAME, "datatype": lm.codec.datatype, "shape": lm.codec.oip_shape()}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, k]},
                            {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]},
                            {"name": "label", "datatype": "INT64", "shape": [-1]},
                            {"name": "suspicion", "datatype": "FP32", "shape": [-1]}]}

    @app.post("/v2/models/{name}/infer", response_model=InferResponse, tags=["oip"],
              responses=errors(400, 401, 404, 413, 422, 429, 503, oip=True))
    async def infer(name: str, body: InferRequest, request: Request, _key: str = Security(require_key)):
        lm = st.model(name)
        inp = body.inputs[0]
        if inp.name != INPUT_NAME:
            raise ApiError(422, "inputs[0].name", f"this model's input is named {INPUT_NAME!r}; got {inp.name[:64]!r}.")
        wanted = [o.name for o in body.outputs] if body.outputs else list(OUTPUTS)
        for i, o in enumerate(wanted):
            if o not in OUTPUTS:
                raise ApiError(422, f"outputs[{i}].name", f"unknown output {o[:64]!r}; outputs: {', '.join(OUTPUTS)}.")
        x = lm.codec.from_oip(inp.shape, inp.datatype, inp.data, "inputs[0]", opts.max_request_batch,
                              raw=_binary_input(request, inp))
        logits, scores = await _predict(st, lm, x, request)
        values = {"logits": logits, "probabilities": logits.softmax(1), "label": logits.argmax(1), "suspicion": scores}
        binary_default = bool((body.parameters or {}).get("binary_data_output", False))
        flags = {o.name: bool((o.parameters or {}).get("binary_data", binary_default)) for o in body.outputs or []}
        outputs, blobs = [], []
        for o in wanted:
            v = values[o]
            entry = {"name": o, "datatype": OUTPUTS[o], "shape": list(v.shape)}
            if flags.get(o, binary_default):  # binary tensor extension, as the client asked
                blob = v.numpy().astype("<i8" if OUTPUTS[o] == "INT64" else "<f4").tobytes()
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = v.reshape(-1).tolist()
            outputs.append(entry)
        out = {"model_name": lm.name, "model_version": "1", "outputs": outputs}
        if body.id is not None:
            out["id"] = body.id
        if not blobs:
            return JSONResponse(out)
        header = json.dumps(out).encode()
        return Response(header + b"".join(blobs), media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(len(header))})

    # -- /v1 ------------------------------------------------------------------------------------------
    @app.post("/v1/predict", response_model=PredictResponse, tags=["v1"],
              responses=errors(400, 401, 404, 413, 422, 429, 503))
    async def predict(body: PredictRequest, request: Request, _key: str = Security(require_key)):
        lm = st.model(body.model, "model")
        if len(body.inputs) > opts.max_request_batch:
            raise ApiError(422, "inputs", f"at most {opts.max_request_batch} inputs per request; got {len(body.inputs)}.")
        if body.certify is not None:
            _check_certify(lm, body, opts)
        x = lm.codec.from_items(body.inputs, "inputs")
        logits, scores = await _predict(st, lm, x, request)
        probs = logits.softmax(1)
        labels = logits.argmax(1).tolist()
        preds = [{"label": y, "class_name": lm.class_names[y], "probabilities": [round(p, 6) for p in pr],
                  "suspicion": round(float(s), 6)} for y, pr, s in zip(labels, probs.tolist(), scores.tolist())]
        if body.certify is not None:
            for p, c in zip(preds, await _certify(st, lm, x, body.certify)):
                p["certified"] = c
        return JSONResponse({"model": lm.name, "predictions": preds})

    @app.get("/v1/models", response_model=ModelList, tags=["v1"], responses=errors(401, 429))
    async def list_models(_key: str = Security(require_key)):
        return {"models": sorted(st.models)}

    @app.get("/v1/models/{name}/card", tags=["v1"], responses=errors(401, 404, 429))
    async def card(name: str, _key: str = Security(require_key)) -> dict[str, Any]:
        return st.model(name).card

    @app.get("/metrics", tags=["monitoring"], responses=errors(401, 429) | {
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus metrics"}})
    async def metrics(_key: str = Security(metrics_key)):
        return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_GuardMiddleware, state=st)
    return app


class _GuardMiddleware(Guard):
    def __init__(self, app, state):
        super().__init__(app, lambda: state)


def _seed(opts: ServeOptions) -> int:
    return secrets.randbits(62) if opts.seed is None else int(opts.seed)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("robustkit")
    except Exception:  # noqa: BLE001 - metadata missing in a source checkout
        return "0"


def _binary_input(request: Request, inp) -> Optional[bytes]:
    """The raw bytes of a tensor sent with the binary tensor extension (None for JSON data)."""
    raw = getattr(request.state, "oip_binary", None)
    size = (inp.parameters or {}).get("binary_data_size")
    if size is None:
        if raw:
            raise ApiError(422, "inputs[0].parameters.binary_data_size", "binary data was sent but the input does "
                                                                         "not declare its binary_data_size.")
        return None
    if raw is None or isinstance(size, bool) or not isinstance(size, int) or size != len(raw):
        raise ApiError(422, "inputs[0].parameters.binary_data_size", f"must equal the {len(raw or b'')} bytes "
                                                                     f"after the JSON header; got {size!r}.")
    return raw


async def _predict(st: ServeState, lm: LoadedModel, x, request: Request):
    n = lm.codec.size(x)
    request.state.samples, request.state.model = n, lm.name
    batcher = st.batchers[lm.name]
    await batcher.ensure_started()
    try:
        logits, scores = await asyncio.wait_for(batcher.submit(x), st.options.request_timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(503, None, f"the model did not answer within {st.options.request_timeout_s:g} s (overloaded); "
                                  "retry later.", {"Retry-After": "1"}) from None
    st.metrics.observe_predictions(lm.name, [lm.class_names[i] for i in logits.argmax(1).tolist()], scores.tolist())
    return logits, scores


def _check_certify(lm: LoadedModel, body: PredictRequest, opts: ServeOptions) -> None:
    if not lm.modality.continuous:
        raise ApiError(422, "certify", f"randomized-smoothing certification needs a continuous input space; model "
                                       f"{lm.name!r} takes {lm.modality.name} inputs.")
    c = body.certify
    cost = len(body.inputs) * (c.n + min(100, c.n))
    if cost > opts.max_certify_samples:
        raise ApiError(422, "certify.n", f"inputs x (n + n0) = {cost} noise samples is more than this server's limit "
                                         f"of {opts.max_certify_samples}; lower n or send fewer inputs.")


async def _certify(st: ServeState, lm: LoadedModel, x, c) -> list[dict]:
    from ..evaluation.certify import certify

    def job():
        with torch.inference_mode():
            return certify(lm.model, x, torch.zeros(x.shape[0], dtype=torch.long), c.sigma, n0=min(100, c.n), n=c.n,
                           alpha=c.alpha, radii=[0.0], batch_size=min(c.n, 1000), seed=_seed(st.options))
    out = await asyncio.get_running_loop().run_in_executor(st.executor, job)
    rows = []
    for label, radius in zip(out["prediction"], out["radius"]):
        rows.append({"label": label, "class_name": None if label < 0 else lm.class_names[label], "abstain": label < 0,
                     "radius": radius, "sigma": c.sigma, "n": c.n, "alpha": c.alpha})
    abstained = sum(r["abstain"] for r in rows)
    if abstained:
        st.metrics.abstentions.labels(lm.name).inc(abstained)
    return rows
