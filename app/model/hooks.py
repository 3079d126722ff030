"""Metacontroller CompositeController hook bodies (hook version v1; v2 `namespace/name` keys work too)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.model.spec import ObjectMeta, PackerBuilderStatus

JOB_GROUP = "Job.batch/v1"
POD_GROUP = "Pod.v1"

Object = dict[str, Any]
# Metacontroller groups objects as {"<Kind>.<group>/<version>": {<key>: <object>}}; the key is `name` in hook
# v1 and `namespace/name` in v2, so code iterates values and never parses keys.
Groups = dict[str, dict[str, Object]]

# The groups this hook reads, shaped as the API server returns the objects, for the OpenAPI document. Of a
# Job only what `_job_problem` checks is enforced; anything else is tolerated.
_STRING: dict[str, Any] = {"type": "string"}
_STRINGS: dict[str, Any] = {"type": "object", "additionalProperties": _STRING}
_METADATA_FIELDS: dict[str, Any] = {
    "namespace": _STRING,
    "uid": _STRING,
    "labels": _STRINGS,
    "annotations": _STRINGS,
    "creationTimestamp": _STRING,
    "deletionTimestamp": _STRING,
}
_METADATA: dict[str, Any] = {"type": "object", "properties": {"name": _STRING, **_METADATA_FIELDS}}
_JOB_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, **_METADATA_FIELDS},
}
_JOB: dict[str, Any] = {
    "type": "object",
    "description": "A batch/v1 Job of this builder as the API server has it.",
    "required": ["metadata"],
    "properties": {
        "apiVersion": _STRING,
        "kind": _STRING,
        "metadata": _JOB_METADATA,
        "spec": {
            "type": ["object", "null"],
            "properties": {
                "template": {
                    "type": ["object", "null"],
                    "properties": {"metadata": {"type": ["object", "null"]}},
                }
            },
        },
        "status": {"type": "object"},
    },
}
_POD: dict[str, Any] = {
    "type": "object",
    "description": "A Pod of one of this builder's Jobs; the Packer container's termination message reports "
    "the AMIs built.",
    "properties": {
        "apiVersion": _STRING,
        "kind": _STRING,
        "metadata": _METADATA,
        "status": {
            "type": "object",
            "properties": {
                "containerStatuses": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"name": _STRING, "state": {"type": "object"}}},
                }
            },
        },
    },
}


def _job_problem(job: Object) -> str:
    """What makes this object unusable as one of our Jobs ("" if nothing): restating it as a desired child needs
    these. Such a Job is refused, never ignored: a Job left out of the answer would be deleted."""
    metadata = job.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        return "metadata.name: a Job has a name"
    spec = job.get("spec")
    if spec is None:
        return ""
    if not isinstance(spec, dict):
        return "spec: must be an object"
    template = spec.get("template")
    if template is None:
        return ""
    if not isinstance(template, dict):
        return "spec.template: must be an object"
    if not isinstance(template.get("metadata", {}), dict | None):
        return "spec.template.metadata: must be an object"
    return ""


def _groups(group: str, objects: dict[str, Any], description: str) -> dict[str, Any]:
    """The schema of a `children` or `related` map, which Metacontroller may send as null (as a group)."""
    some = {"type": ["object", "null"], "additionalProperties": {"type": "object"}}
    return {
        "type": ["object", "null"],
        "description": description,
        "properties": {group: some | {"additionalProperties": objects}},
        "additionalProperties": some,
    }


class Parent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    apiVersion: str = ""
    kind: str = ""
    metadata: ObjectMeta
    # Validated later by app.model.spec.parse_spec: an invalid spec is a status condition, not a 4xx.
    spec: Any = None
    status: Any = None


class HookRequest(BaseModel):
    """Body of a sync, customize or finalize call; unknown top-level keys are tolerated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    controller: Any = None
    parent: Parent
    children: Groups = Field(
        default_factory=dict,
        json_schema_extra=_groups(
            JOB_GROUP, _JOB, 'The builder\'s Jobs, as `{"Job.batch/v1": {"<name or namespace/name>": Job}}`.'
        ),
    )
    related: Groups = Field(
        default_factory=dict,
        json_schema_extra=_groups(
            POD_GROUP, _POD, 'The Pods of its Jobs (see /customize), as `{"Pod.v1": {"<name>": Pod}}`.'
        ),
    )
    # Strict: `finalizing: 0` or "false" is a malformed request, not a sync.
    finalizing: StrictBool = False

    @field_validator("children", "related", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        # Metacontroller sends `null` for an empty map and for a group with no objects.
        if value is None:
            return {}
        if isinstance(value, dict):
            return {key: ({} if item is None else item) for key, item in value.items()}
        return value

    @field_validator("children")
    @classmethod
    def _jobs_we_can_restate(cls, value: Groups) -> Groups:
        for key, job in value.get(JOB_GROUP, {}).items():
            if problem := _job_problem(job):
                raise ValueError(f"{JOB_GROUP} {key!r}: {problem}")
        return value

    def jobs(self) -> list[Object]:
        return list(self.children.get(JOB_GROUP, {}).values())

    def pods(self) -> list[Object]:
        return list(self.related.get(POD_GROUP, {}).values())


class SyncResponse(BaseModel):
    """The sync answer: only the keys Metacontroller reads.

    Describes the wire for the OpenAPI document; the body itself is built by `app.main` with the status as
    written (`status_json`): a value that is null, "" or [] is left out at any depth (a condition is written
    whole), counts stay even at 0.
    """

    model_config = ConfigDict(extra="forbid")

    status: PackerBuilderStatus = Field(
        description="The builder's whole status (Metacontroller replaces it); empty fields are left out."
    )
    children: list[Object] = Field(
        description="The batch/v1 Jobs that must exist for this builder: the running or kept builds and a new "
        "one when a build is due. A Job left out is deleted by Metacontroller."
    )
    resyncAfterSeconds: int = Field(description="When Metacontroller should call again without a change.")


class FinalizeResponse(SyncResponse):
    """The finalize answer: a sync answer plus `finalized`."""

    finalized: bool = Field(
        description="True once no build is running and the last one's AMIs are tagged: Metacontroller then "
        "removes its finalizer and the PackerBuilder is deleted."
    )


NOT_A_HOOK_REQUEST = "not a Metacontroller hook request"
MAX_PROBLEMS = 10


class HookRequestError(BaseModel):
    """The 422 answer to a body that is not JSON or not a hook request of this shape."""

    model_config = ConfigDict(extra="forbid")

    error: Literal["not a Metacontroller hook request"]
    problems: list[str] = Field(
        min_length=1,
        max_length=MAX_PROBLEMS,
        description='What is wrong, one line each as "<field path>: <message>" (at most 10).',
        examples=[["parent.metadata.generation: Input should be a valid integer"]],
    )


class CustomizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    controller: Object = Field(default_factory=dict)
    parent: Parent


class RelatedResourceRule(BaseModel):
    apiVersion: str
    resource: str
    namespace: str
    labelSelector: Object | None = None
    names: list[str] | None = None


class CustomizeResponse(BaseModel):
    relatedResources: list[RelatedResourceRule]
