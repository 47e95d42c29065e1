"""Prometheus metrics of one server, in a registry of its own (two servers in one process don't collide)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pretrained_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=r)
        self.queue_depth = Gauge("pretrained_queue_depth", "requests waiting for a batch slot", registry=r)
        self.running = Gauge("pretrained_running_batch_size", "requests in the running batch", registry=r)
        self.time_to_first_token = Histogram("pretrained_time_to_first_token_seconds", "submission to first token",
                                             buckets=LATENCY_BUCKETS, registry=r)
        self.inter_token_latency = Histogram("pretrained_inter_token_latency_seconds", "time between two tokens",
                                             buckets=LATENCY_BUCKETS, registry=r)
        self.request_latency = Histogram("pretrained_request_latency_seconds", "end-to-end latency of a request",
                                         ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("pretrained_prompt_tokens", "prompt tokens processed", registry=r)
        self.generated_tokens = Counter("pretrained_generated_tokens", "tokens generated", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
