"""Metacontroller CompositeController hook bodies (hook version v1; v2 `namespace/name` keys work too)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.spec import ObjectMeta

JOB_GROUP = "Job.batch/v1"
POD_GROUP = "Pod.v1"

Object = dict[str, Any]
# Metacontroller groups objects as {"<Kind>.<group>/<version>": {<key>: <object>}}; the key is `name` in hook
# v1 and `namespace/name` in v2, so code iterates values and never parses keys.
Groups = dict[str, dict[str, Object]]


class Parent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    apiVersion: str = ""
    kind: str = ""
    metadata: ObjectMeta
    # Validated later by app.spec.parse_spec: an invalid spec is a status condition, not a 4xx.
    spec: Any = None
    status: Any = None


class HookRequest(BaseModel):
    """Body of a sync, customize or finalize call; unknown top-level keys are tolerated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    controller: Any = None
    parent: Parent
    children: Groups = Field(default_factory=dict)
    related: Groups = Field(default_factory=dict)
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

    def jobs(self) -> list[Object]:
        return list(self.children.get(JOB_GROUP, {}).values())

    def pods(self) -> list[Object]:
        return list(self.related.get(POD_GROUP, {}).values())


class SyncResponse(BaseModel):
    """Only the keys Metacontroller reads; `finalized` only on the finalize hook."""

    status: Object
    children: list[Object]
    resyncAfterSeconds: int | None = None
    finalized: bool | None = None


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
