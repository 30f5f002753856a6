"""Descriptions of the fields every object has, as the real OpenAPI schemas word them.

The OpenAPI documents and the Table column definitions (Name, Age) both quote them.
"""

from __future__ import annotations

_CONVENTIONS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized "
    f"values. More info: {_CONVENTIONS}#resources"
)
KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may "
    "infer this from the endpoint the client submits requests to. Cannot be updated. In "
    f"CamelCase. More info: {_CONVENTIONS}#types-kinds"
)
METADATA_DOC = f"Standard object's metadata. More info: {_CONVENTIONS}#metadata"
SPEC_DOC = f"Spec defines the behavior of the object. More info: {_CONVENTIONS}#spec-and-status"
STATUS_DOC = (
    "Status is the most recently observed status of the object. Populated by the system. "
    f"Read-only. More info: {_CONVENTIONS}#spec-and-status"
)
OBJECT_META_DOC = (
    "ObjectMeta is metadata that all persisted resources must have, which includes all objects "
    "users must create."
)
NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "http://kubernetes.io/docs/user-guide/identifiers#names"
)
NAMESPACE_DOC = (
    "Namespace defines the space within which each name must be unique. An empty namespace is "
    'equivalent to the "default" namespace, but "default" is the canonical representation. Not '
    "all objects are required to be scoped to a namespace - the value of this field for those "
    "objects will be empty.\n\nMust be a DNS_LABEL. Cannot be updated. More info: "
    "http://kubernetes.io/docs/user-guide/namespaces"
)
LABELS_DOC = (
    "Map of string keys and values that can be used to organize and categorize (scope and "
    "select) objects. May match selectors of replication controllers and services. More info: "
    "http://kubernetes.io/docs/user-guide/labels"
)
ANNOTATIONS_DOC = (
    "Annotations is an unstructured key value map stored with a resource that may be set by "
    "external tools to store and retrieve arbitrary metadata. They are not queryable and should "
    "be preserved when modifying objects. More info: "
    "http://kubernetes.io/docs/user-guide/annotations"
)
CREATED_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
