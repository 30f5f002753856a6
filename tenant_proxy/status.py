"""Kubernetes `Status` errors the proxy answers with, built in one place.

Messages, reasons and `details` follow kube-apiserver (k8s.io/apimachinery/pkg/api/errors) and the
reference transcripts: a client must not be able to tell a proxy answer from the server's.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

__all__ = [
    "ApiError",
    "bad_gateway",
    "bad_request",
    "encode",
    "forbidden",
    "forbidden_message",
    "gateway_timeout",
    "internal_error",
    "method_not_allowed",
    "not_acceptable",
    "not_found",
    "service_unavailable",
    "too_large",
    "too_many_requests",
    "unauthorized",
]

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` with HTTP status `code`.

    `details` is None when the real server sends no `details` key at all (401, 400, 413), and a
    (possibly empty) mapping when it sends one (`{}` for 405). `headers` are extra response
    headers such as Retry-After.
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details: Mapping[str, Any] | None = details
        self.headers: Mapping[str, str] = headers if headers is not None else _NO_HEADERS

    def body(self) -> dict[str, Any]:
        """The `Status` object, keys in the order kube-apiserver writes them."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = dict(self.details)
        body["code"] = self.code
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def encode(err: ApiError) -> bytes:
    """The JSON bytes of `err`'s Status body."""
    return orjson.dumps(err.body())


def _qualified(resource: str, group: str) -> str:
    """`resource` or `resource.group`, as schema.GroupResource.String() prints it."""
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> dict[str, str]:
    # StatusDetails field order: name, group, kind; empty fields are omitted (omitempty).
    pairs = (("name", name), ("group", group), ("kind", kind))
    return {key: value for key, value in pairs if value}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str, kind: str = "", name: str = "", group: str = "") -> ApiError:
    """403 Forbidden with `message` verbatim (see `forbidden_message` for the RBAC wording)."""
    return ApiError(403, "Forbidden", message, _details(name, group, kind))


def forbidden_message(
    user: str,
    verb: str,
    resource: str,
    *,
    group: str = "",
    name: str = "",
    namespace: str = "",
    subresource: str = "",
) -> str:
    """The RBAC denial text, e.g. `users "bob" is forbidden: User "alice" cannot impersonate ...`.

    `resource` empty means a non-resource request; then `namespace` is unused and `name` is the
    path, as in `forbidden: User "x" cannot get path "/healthz"`.
    """
    if not resource:
        return f'forbidden: User "{user}" cannot {verb} path "{name}"'
    target = _qualified(resource, group)
    subject = f'{target} "{name}"' if name else target
    full_resource = f"{resource}/{subresource}" if subresource else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{full_resource}" '
        f'in API group "{group}" {scope}'
    )


# Servers whose 404 for a missing object names another resource: metrics-server looks a node up
# in its node lister first, so a NodeMetrics that does not exist is `node "x" not found`.
_NOT_FOUND_AS = {("metrics.k8s.io", "nodes"): ("", "node")}


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """The 404 of a missing object: `namespaces "x" not found`, details {name, group?, kind}."""
    group, resource = _NOT_FOUND_AS.get((group, resource), (group, resource))
    message = f'{_qualified(resource, group)} "{name}" not found'
    return ApiError(404, "NotFound", message, _details(name, group, resource))


def not_acceptable(message: str) -> ApiError:
    return ApiError(406, "NotAcceptable", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        {"Retry-After": str(retry_after)},
    )


def internal_error(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", {})


def bad_gateway(message: str) -> ApiError:
    # metav1 has no BadGateway reason; client-go maps an unexplained 5xx to InternalError too.
    return ApiError(502, "InternalError", message, {})


def service_unavailable(message: str, retry_after: int | None = None) -> ApiError:
    if retry_after is None:
        return ApiError(503, "ServiceUnavailable", message, {})
    return ApiError(
        503,
        "ServiceUnavailable",
        message,
        {"retryAfterSeconds": retry_after},
        {"Retry-After": str(retry_after)},
    )


def gateway_timeout(message: str) -> ApiError:
    # 504 is reason Timeout in metav1 (StatusReasonTimeout), as client-go reads it.
    return ApiError(504, "Timeout", message, {})
