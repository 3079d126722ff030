"""docs/retention.md and its example: in step with the spec models, the conditions and the IAM policy."""

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import yaml

from app.core import conditions, effects, outcome
from app.core.facts import RegionImages
from app.core.lifecycle import plan
from app.core.publishing import Published, parameter_names
from app.core.removal import MAX_REMOVALS_PER_SYNC, removals
from app.model.settings import Settings
from app.model.spec import PackerBuilderSpec, Publish, Retention, parse_spec
from app.model.tags import Image, Owner, format_timestamp
from tests.deploy.manifests import (
    CHART,
    EXAMPLES,
    ROOT,
    crd_schema,
    load_yaml,
    markdown_table,
    schema_errors,
    strict,
)

DOC = ROOT / "docs" / "retention.md"
README = ROOT / "README.md"
EXAMPLE = EXAMPLES / "packerbuilder-retention.yaml"
EXAMPLE_PATH = "metacontroller/examples/packerbuilder-retention.yaml"
RETENTION_MARKER = "# Retention and distribution"


def _retention_conditions() -> dict[str, str]:
    """The condition constants of app/core/conditions.py's retention block (from its marker comment to a blank line)."""
    source = (ROOT / "app" / "core" / "conditions.py").read_text()
    block = source.split(RETENTION_MARKER, 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"^([A-Z_]+) = ", block, re.MULTILINE)
    assert names, "no retention conditions found"
    return {name: getattr(conditions, name) for name in names}


def test_example_is_the_seed_plus_retention_publish_and_history() -> None:
    example = load_yaml(EXAMPLE)
    assert schema_errors(strict(crd_schema()), example) == []
    spec = parse_spec(example["spec"])
    assert spec.retention.keep == 3
    assert spec.retention.deprecate
    assert spec.publish is not None
    assert spec.publish.ssmParameter == "/platform/ami/eks-al2023"
    assert "successfulJobsHistoryLimit" in example["spec"]
    assert "failedJobsHistoryLimit" in example["spec"]
    seed = load_yaml(EXAMPLES / "packerbuilder.yaml")
    added = {"successfulJobsHistoryLimit", "failedJobsHistoryLimit", "retention", "publish"}
    assert {k: v for k, v in example["spec"].items() if k not in added} == seed["spec"]
    assert example["metadata"]["name"] != seed["metadata"]["name"]


def test_example_publishes_under_the_prefix_the_chart_and_policy_allow() -> None:
    prefix = load_yaml(CHART / "values.yaml")["hook"]["publishParameterPrefix"]
    spec = parse_spec(load_yaml(EXAMPLE)["spec"])
    assert spec.publish is not None
    assert spec.publish.ssmParameter.startswith(prefix)
    policy = json.loads((CHART / "iam" / "hook-policy.json").read_text())
    (publish,) = [s for s in policy["Statement"] if s["Sid"] == "PublishCurrentImageParameters"]
    assert publish["Resource"] == [f"arn:aws:ssm:*:*:parameter{prefix}*"]


def test_doc_summary_block_matches_the_example() -> None:
    example = load_yaml(EXAMPLE)["spec"]
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None
    summary = yaml.safe_load(block.group(1))["spec"]
    assert {key: example[key] for key in summary} == summary
    for doc in (DOC, README):
        assert EXAMPLE_PATH in doc.read_text(), doc.name


def test_doc_names_every_retention_condition_and_its_table_lists_exactly_them() -> None:
    text = DOC.read_text()
    retention = set(_retention_conditions().values())
    assert retention == {
        "ImageCopyFailed",
        "DeprecationNotSet",
        "PublishFailed",
        "RetentionSkipped",
        "RetentionFailed",
        "RegionUnavailable",
        "RetentionPending",
        "ProtectionNotSet",
    }
    for kind in retention:
        assert f"`{kind}`" in text, kind
    table = {row[0].strip("`") for row in markdown_table(text, ["Type", "Status / reason", "Present when"])}
    assert table == retention


def test_doc_and_readme_name_every_field_of_retention_and_publish() -> None:
    doc, readme = DOC.read_text(), README.read_text()
    fields = [f"retention.{name}" for name in Retention.model_fields]
    fields += [f"publish.{name}" for name in Publish.model_fields]
    fields += ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"]
    for field in fields:
        assert f"`spec.{field}`" in doc, field
        assert f"`{field}`" in readme, field


def test_doc_field_table_states_the_model_defaults() -> None:
    defaults = {
        "spec.successfulJobsHistoryLimit": PackerBuilderSpec.model_fields[
            "successfulJobsHistoryLimit"
        ].default,
        "spec.failedJobsHistoryLimit": PackerBuilderSpec.model_fields["failedJobsHistoryLimit"].default,
        "spec.retention.keep": Retention.model_fields["keep"].default,
        "spec.retention.deprecate": Retention.model_fields["deprecate"].default,
        "spec.retention.skipInUse": Retention.model_fields["skipInUse"].default,
        "spec.retention.disableFor": Retention.model_fields["disableFor"].default,
        "spec.retention.unusedFor": Retention.model_fields["unusedFor"].default,
        "spec.retention.protect": Retention.model_fields["protect"].default,
        "spec.publish.ssmParameter": None,  # publish itself is optional
        "spec.publish.channels": [],
    }
    rows = {
        row[0].strip("`"): row[1] for row in markdown_table(DOC.read_text(), ["Field", "Default", "Effect"])
    }
    assert rows.keys() == defaults.keys()
    for field, default in defaults.items():
        expected = "unset" if default is None else f"`{json.dumps(default)}`"
        assert rows[field] == expected, field


def test_doc_states_the_artifact_grace() -> None:
    minutes = outcome.ARTIFACT_GRACE // timedelta(minutes=1)
    text = DOC.read_text()
    assert f"{minutes}-minute artifact grace" in text
    assert f"{minutes} minutes after the build finished" in text


def test_every_path_and_link_the_doc_names_exists() -> None:
    text = DOC.read_text()
    for path in set(re.findall(r"(?:metacontroller|helm/packer-builder|app|scripts)/[\w./-]+\.\w+", text)):
        assert (ROOT / path).exists(), path
    for target in re.findall(r"\]\(([^)#]+\.md)(?:#[\w-]+)?\)", text):
        assert (DOC.parent / target).exists(), target


def test_internal_anchors_exist() -> None:
    text = DOC.read_text()
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    anchors = {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-") for h in headings}
    for anchor in re.findall(r"\]\(#([\w-]+)\)", text):
        assert anchor in anchors, anchor
    install = (ROOT / "docs" / "install.md").read_text()
    assert "hook-role" in re.findall(r"\]\(install\.md#([\w-]+)\)", text)
    assert re.search(r"^## Hook role$", install, re.MULTILINE)


def test_doc_names_real_iam_statements() -> None:
    policy = json.loads((CHART / "iam" / "hook-policy.json").read_text())
    sids = {statement["Sid"] for statement in policy["Statement"]}
    named = set(re.findall(r"statement `(\w+)`", DOC.read_text()))
    assert named
    assert named <= sids


def test_doc_and_readme_state_the_removal_cap() -> None:
    doc, readme = DOC.read_text(), README.read_text()
    assert f"At most {MAX_REMOVALS_PER_SYNC} removals per sync" in doc
    assert "`MAX_REMOVALS_PER_SYNC` in `app/core/removal.py`" in doc
    assert "no cap per sync" not in doc
    for text in (doc, readme):
        caps = re.findall(r"at most (\d+) (?:removals )?per sync", text, re.IGNORECASE)
        assert caps, "the cap is not stated"
        assert {int(cap) for cap in caps} == {MAX_REMOVALS_PER_SYNC}


def test_doc_parameter_names_are_the_ones_published() -> None:
    """The plain name holds the x86_64 AMI; with several architectures each is also at <name>/<arch>."""
    text = DOC.read_text()
    name = "/platform/ami/eks-al2023"
    both = parameter_names(name, ["arm64", "x86_64"])
    assert both == {name: "x86_64", f"{name}/x86_64": "x86_64", f"{name}/arm64": "arm64"}
    assert parameter_names(name, ["arm64"]) == {name: "arm64"}
    for parameter in both:
        assert f"`{parameter}`" in text, parameter
    assert "goes on holding the x86_64 AMI" in text
    assert "The name itself always holds the region's primary current AMI" in text


def test_doc_quotes_the_refusal_outside_the_publish_prefix() -> None:
    prefix = load_yaml(CHART / "values.yaml")["hook"]["publishParameterPrefix"]
    spec = parse_spec({**load_yaml(EXAMPLE)["spec"], "publish": {"ssmParameter": "/teams/web/eks-al2023"}})
    current = Image(
        "ami-0bbb0000000000002",
        "available",
        datetime(2026, 11, 20, tzinfo=UTC),
        tags={"status": "active", "created-by-namespace": "ami-builds"},
        architecture="x86_64",
    )
    regions = {"us-west-2": RegionImages(managed=(current,))}
    owner = Owner.of("ami-builds", "eks-al2023", spec)
    moment = datetime(2026, 11, 21, tzinfo=UTC)
    published = Published({}, {}, prefix, str(owner))
    planned = plan(None, {}, regions, published, spec, owner, moment, timedelta(days=2))
    # Refused in the plan, without an effect: nothing is due again on the next sync.
    assert not any(isinstance(e, effects.Publish) for e in planned.effects)
    (refused,) = planned.refusals
    assert (refused.type, refused.reason) == (conditions.PUBLISH_FAILED, "OutsidePrefix")
    assert f"\n{refused.message}\n" in DOC.read_text()
    assert "publish_parameter_prefix" in Settings.model_fields  # read from PUBLISH_PARAMETER_PREFIX
    for doc in (DOC, README):
        assert "`PUBLISH_PARAMETER_PREFIX`" in doc.read_text(), doc.name


def test_doc_quotes_what_waits_as_the_hook_says_it() -> None:
    """The RetentionPending sample and the protection hold are the messages the stage table writes."""
    block = re.search(r"```yaml\n(spec:\n  retention:\n.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None, "no YAML block of the careful removal fields"
    spec = parse_spec({**load_yaml(EXAMPLE)["spec"], **yaml.safe_load(block.group(1))["spec"]})
    retention = spec.retention
    assert (retention.keep, retention.disableFor, retention.unusedFor, retention.protect) == (
        3,
        "168h",
        "720h",
        True,
    )
    now = datetime(2026, 11, 18, tzinfo=UTC)

    def older(image_id: str, created: datetime, **tags: str) -> Image:
        stamp = {"status": "deprecated", "create-timestamp": format_timestamp(created), **tags}
        return Image(image_id, "available", created, tags=stamp, architecture="x86_64")

    newer = [older(f"ami-0aaa000000000000{n}", now - timedelta(days=n)) for n in range(1, 4)]
    old = older(
        "ami-0eee0000000000009", datetime(2026, 11, 1, tzinfo=UTC), **{"disabled-at": "2026-11-14T12:25:00Z"}
    )
    found = removals({"us-west-2": [*newer, replace(old, state="disabled")]}, set(), spec.retention, {}, now)
    assert f"\nWaiting: {found.waiting}\n" in DOC.read_text()
    assert (found.enables, found.steps) == ((), ())

    unprotected = spec.retention.model_copy(update={"protect": False})
    held = removals({"us-west-2": [*newer, replace(old, protected=True)]}, set(), unprotected, {}, now)
    assert held.waiting.replace(old.image_id, "ami-…") in DOC.read_text()
