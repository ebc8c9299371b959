"""Why a file cannot be ingested: each reason is a client error that names what to fix."""

from __future__ import annotations

from appliance.errors import ApplianceError


class DocumentRejected(ApplianceError):
    status = 422
    code = "document_rejected"


class UnsupportedDocument(DocumentRejected):
    status = 415
    code = "unsupported_document"


class DocumentTooLarge(DocumentRejected):
    status = 413
    code = "document_too_large"
