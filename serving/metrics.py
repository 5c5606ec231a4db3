"""Prometheus metrics of the service beyond BentoML's request counts and latencies (``GET /metrics``)."""

from __future__ import annotations

import bentoml

PREDICTIONS = bentoml.metrics.Counter(
    name="affectflow_predictions", documentation="Predictions answered, by predicted emotion",
    labelnames=["emotion"])
REJECTED = bentoml.metrics.Counter(
    name="affectflow_rejected_uploads", documentation="Uploads refused, by reason",
    labelnames=["reason"])
STAGE_SECONDS = bentoml.metrics.Histogram(
    name="affectflow_stage_seconds", documentation="Time per request stage: decoding + features, model call",
    labelnames=["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
