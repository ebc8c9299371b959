"""Model failures, classified by what the API client should be told."""

from __future__ import annotations

import httpx

from appliance.errors import ApplianceError


class ModelError(ApplianceError):
    """The model could not answer."""

    status = 502
    code = "model_failed"


class ModelNotFound(ModelError):
    status = 502
    code = "model_not_found"


class ModelUnavailable(ModelError):
    status = 503
    code = "model_unavailable"
    retry_after = 10


class ModelBusy(ModelError):
    status = 503
    code = "model_busy"
    retry_after = 5


class ModelTimeout(ModelError):
    status = 504
    code = "model_timeout"


def classify(exc: BaseException, *, where: str, model: str) -> ModelError | None:
    """Translate an exception from a model client into a ModelError, or None
    when it is not a model failure (a bug of ours should surface as one)."""
    if isinstance(exc, ModelError):
        return exc
    # Imported here: the ollama client is only needed with the ollama provider.
    from ollama import ResponseError

    if isinstance(exc, ResponseError):
        if exc.status_code == 404:
            return ModelNotFound(
                f"the model server at {where} does not have the model {model!r}; "
                f"load it into Ollama's model store from the offline bundle"
            )
        if exc.status_code in (429, 503):
            return ModelBusy(f"the model server at {where} is busy ({exc.error}); try again shortly")
        if exc.status_code == -1:
            return ModelError(f"the model server at {where} failed while answering: {exc.error}")
        return ModelError(f"the model server at {where} answered {exc.status_code}: {exc.error}")
    if isinstance(exc, httpx.TimeoutException):
        return ModelTimeout(f"the model server at {where} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, (ConnectionError, httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):
        return ModelUnavailable(f"the model server at {where} cannot be reached; is it running?")
    return None
