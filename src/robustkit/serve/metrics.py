"""Prometheus metrics of one app, in its own registry (several apps can live in one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series only add noise to every scrape

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class Metrics:
    def __init__(self, suspicion_threshold: float):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.suspicion_threshold = suspicion_threshold
        self.requests = Counter("robustkit_requests", "HTTP requests by route template, status code and key name",
                                ["endpoint", "method", "status", "key"], registry=r)
        self.latency = Histogram("robustkit_request_seconds", "Request latency (seconds) by route template",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("robustkit_errors", "Refused or failed requests by kind (validation, auth, "
                              "rate_limit, body_too_large, not_found, internal, ...)", ["kind"], registry=r)
        self.batch_size = Histogram("robustkit_batch_size", "Samples per model call of the micro-batcher",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.samples = Counter("robustkit_samples", "Samples predicted", ["model"], registry=r)
        self.predictions = Counter("robustkit_predictions", "Predicted classes", ["model", "label"], registry=r)
        self.abstentions = Counter("robustkit_abstentions", "Certified predictions that abstained", ["model"],
                                   registry=r)
        self.suspicion = Histogram("robustkit_suspicion_score", "Attack-suspicion score per sample (0 = calm, "
                                   "1 = suspicious)", ["model"], buckets=SCORE_BUCKETS, registry=r)
        self.suspicious = Counter("robustkit_suspicious_samples", "Samples whose suspicion score reached the "
                                  "alert threshold", ["model"], registry=r)
        self.threshold = Gauge("robustkit_suspicion_threshold", "Score at which a sample counts as suspicious",
                               registry=r)
        self.threshold.set(suspicion_threshold)
        self.in_flight = Gauge("robustkit_requests_in_flight", "Requests being handled", registry=r)

    def observe_predictions(self, model: str, labels: list[str], scores: list[float]) -> None:
        self.batch_samples(model, len(labels))
        for label in labels:
            self.predictions.labels(model, label).inc()
        hist, sus = self.suspicion.labels(model), 0
        for s in scores:
            hist.observe(s)
            sus += s >= self.suspicion_threshold
        if sus:
            self.suspicious.labels(model).inc(sus)

    def batch_samples(self, model: str, n: int) -> None:
        self.samples.labels(model).inc(n)
