"""The offline AI agent appliance."""

from appliance import offline as _offline  # noqa: F401  (must run before any other import)

__version__ = "0.1.0"
