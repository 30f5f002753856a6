"""Kubernetes `Status` errors with the exact reasons and messages kube-apiserver gives."""

from __future__ import annotations

from typing import Any

from tenant_proxy.emulator.types import Attributes, ResourceType, UserInfo


class StatusError(Exception):
    """An API error answered as a `Status` object with HTTP code `code`."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def success_status(details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
    }
    if details is not None:
        body["details"] = details
    return body


def _details(rt_name: str, name: str = "") -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    d["kind"] = rt_name
    return d


def not_found(group_resource: str, name: str) -> StatusError:
    # StatusDetails name the resource and its group apart ({"name", "group", "kind"}); only the
    # message spells them together.
    resource, _, group = group_resource.partition(".")
    details = {"name": name} if name else {}
    details |= {"group": group} if group else {}
    details["kind"] = resource
    return StatusError(404, "NotFound", f'{group_resource} "{name}" not found', details)


def resource_not_found() -> StatusError:
    """An unknown resource or path: no details, as the real server answers."""
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(rt: ResourceType, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{rt.group_resource} "{name}" already exists',
        _details(rt.plural, name) | ({"group": rt.group} if rt.group else {}),
    )


def conflict(rt: ResourceType, name: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        _details(rt.plural, name) | ({"group": rt.group} if rt.group else {}),
    )


def invalid(kind: str, name: str, causes: list[dict[str, str]]) -> StatusError:
    """422 Invalid; each cause has reason, message and field."""
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    return StatusError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {summary}',
        {"name": name, "kind": kind, "causes": causes},
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def forbidden_message(user: UserInfo, attrs: Attributes) -> str:
    """kube-apiserver's denial message, e.g. `namespaces is forbidden: User "alice" cannot ...`."""
    if not attrs.resource_request:
        return f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    group_resource = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
    subject = f'{group_resource} "{attrs.name}"' if attrs.name else group_resource
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (
        f'{subject} is forbidden: User "{user.name}" cannot {attrs.verb} resource "{resource}" '
        f'in API group "{attrs.api_group}" {scope}'
    )


def forbidden(user: UserInfo, attrs: Attributes, reason_suffix: str = "") -> StatusError:
    message = forbidden_message(user, attrs) + (f": {reason_suffix}" if reason_suffix else "")
    details: dict[str, Any] = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.api_group:
        details["group"] = attrs.api_group
    if attrs.resource:
        details["kind"] = attrs.resource
    return StatusError(403, "Forbidden", message, details)


def method_not_allowed() -> StatusError:
    return StatusError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def not_acceptable(accept: str) -> StatusError:
    return StatusError(
        406,
        "NotAcceptable",
        f"only the following media types are accepted: application/json, application/yaml, "
        f"application/vnd.kubernetes.protobuf (requested: {accept})",
        {},
    )


def unsupported_media_type() -> StatusError:
    return StatusError(415, "UnsupportedMediaType", "415: Unsupported Media Type", {})


def too_large() -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")


def expired(message: str = "The resourceVersion for the provided list is too old.") -> StatusError:
    return StatusError(410, "Expired", message)


def too_many_requests(retry_after: int) -> StatusError:
    return StatusError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        {"Retry-After": str(retry_after)},
    )


def internal_error(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}", {})


def service_unavailable(
    message: str = "the server is currently unable to handle the request",
) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message, {})
