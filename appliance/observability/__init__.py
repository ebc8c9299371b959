"""Metrics and logs."""

from appliance.observability.metrics import Metrics

__all__ = ["Metrics"]
