"""The audit.k8s.io/v1 Event schema, to check the proxy's audit lines against.

Neither the `kubernetes` client nor kubernetes-validate ships it (audit.k8s.io is not served by
the API server, so it is in no OpenAPI document). It is written here from the Go type,
`k8s.io/apiserver/pkg/apis/audit/v1/types.go` (Event, ObjectReference, Level, Stage): fields
without `omitempty` are required, no others allowed. `user`, `impersonatedUser` and
`responseStatus` refer to the UserInfo and Status definitions kubernetes-validate generated from
the API's OpenAPI (strict: unknown fields refused), and MicroTimes must be RFC 3339.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

DEFINITIONS = "https://kubernetes.io/api/_definitions.json#/$defs/"
MICRO_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"

OBJECT_REFERENCE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        name: {"type": "string"}
        for name in (
            "resource",
            "namespace",
            "name",
            "uid",
            "apiGroup",
            "apiVersion",
            "resourceVersion",
            "subresource",
        )
    },
}

EVENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "kind",
        "apiVersion",
        "level",
        "auditID",
        "stage",
        "requestURI",
        "verb",
        "user",
        "requestReceivedTimestamp",
        "stageTimestamp",
    ],
    "properties": {
        "kind": {"const": "Event"},
        "apiVersion": {"const": "audit.k8s.io/v1"},
        "level": {"enum": ["None", "Metadata", "Request", "RequestResponse"]},
        "auditID": {"type": "string", "minLength": 1},
        "stage": {"enum": ["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]},
        "requestURI": {"type": "string", "minLength": 1},
        "verb": {"type": "string"},
        "user": {"$ref": DEFINITIONS + "io.k8s.api.authentication.v1.UserInfo"},
        "impersonatedUser": {"$ref": DEFINITIONS + "io.k8s.api.authentication.v1.UserInfo"},
        "sourceIPs": {"type": "array", "items": {"type": "string"}},
        "userAgent": {"type": "string"},
        "objectRef": OBJECT_REFERENCE,
        "responseStatus": {"$ref": DEFINITIONS + "io.k8s.apimachinery.pkg.apis.meta.v1.Status"},
        "requestObject": {"type": "object"},
        "responseObject": {"type": "object"},
        "requestReceivedTimestamp": {"type": "string", "pattern": MICRO_TIME},
        "stageTimestamp": {"type": "string", "pattern": MICRO_TIME},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _registry() -> Registry:
    schemas = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    newest = sorted(
        (d.name for d in schemas.iterdir() if d.name.endswith("-local-strict")),
        key=lambda name: [int(n) for n in re.findall(r"\d+", name)],
    )[-1]
    definitions = json.loads(schemas.joinpath(newest, "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


VALIDATOR = jsonschema.Draft202012Validator(EVENT, registry=_registry())


def validate_event(event: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `event` is an audit.k8s.io/v1 Event."""
    VALIDATOR.validate(event)
