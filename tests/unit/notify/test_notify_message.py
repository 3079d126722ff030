"""What a notification says, rendered for Slack (Block Kit + fallback), Discord (embed), SNS and email."""

from dataclasses import replace

from app.notify.aws import sns_subject
from app.notify.discord import payload
from app.notify.events import Entry, Event, Kind
from app.notify.message import Tone, console_url, render
from app.notify.slack import blocks
from tests.events import build_succeeded

SUCCEEDED = build_succeeded("eu-west-1")
FAILED = Event(
    Kind.failed,
    "packer-builder",
    "ami-builds",
    "uid-1",
    "build-2",
    region="eu-west-1",
    job_name="packer-builder-2b3c4d5e",
    attempt=2,
    max_attempts=3,
    detail="BackoffLimitExceeded: <@here> & friends",
)


def test_success_names_the_ami_its_base_and_duration_with_a_console_link() -> None:
    message = render(SUCCEEDED)
    assert message.headline == "AMI build succeeded for ami-builds/packer-builder: ami-0built"
    facts = dict(message.facts)
    assert facts["Built AMI"] == "ami-0built"
    assert facts["Base AMI"] == "ami-0base"
    assert facts["Duration"] == "25m07s"
    assert message.link == (
        "ami-0built in the EC2 console",
        "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#ImageDetails:imageId=ami-0built",
    )
    text = message.text()
    assert text.splitlines()[0] == message.headline
    assert "Built AMI: ami-0built" in text
    assert console_url("eu-west-1", "ami-0built") in text


def test_failure_says_which_attempt_and_why() -> None:
    message = render(FAILED)
    assert message.headline == "AMI build failed for ami-builds/packer-builder (attempt 2 of 3)"
    assert dict(message.facts)["Reason"] == "BackoffLimitExceeded: <@here> & friends"
    assert message.link is None


REJECTED = Event(
    Kind.rejected,
    "packer-builder",
    "ami-builds",
    "uid-1",
    "build-1",
    region="eu-west-1",
    job_name="packer-builder-1a2b3c4d-validate",
    base_ami="ami-0base",
    image_id="ami-0built",
    attempt=1,
    max_attempts=3,
    detail="ValidationFailed: Job packer-builder-1a2b3c4d-validate failed (BackoffLimitExceeded): "
    "ssm command 2 (systemctl is-active kubelet) exited 3: inactive",
)


def test_a_validated_success_says_which_job_validated_it() -> None:
    validated = replace(SUCCEEDED, detail="Job packer-builder-1a2b3c4d-validate validated it in 6m02s")
    facts = dict(render(validated).facts)
    assert facts["Validation"] == "Job packer-builder-1a2b3c4d-validate validated it in 6m02s"
    assert "Validation" not in dict(render(SUCCEEDED).facts)


def test_a_rejection_names_the_ami_the_validation_job_and_the_failed_check() -> None:
    message = render(REJECTED)
    assert message.headline == (
        "AMI validation failed for ami-builds/packer-builder: ami-0built rejected (attempt 1 of 3)"
    )
    assert message.tone is Tone.bad
    facts = dict(message.facts)
    assert facts["Rejected AMI"] == "ami-0built"
    assert facts["Validation job"] == "packer-builder-1a2b3c4d-validate"
    assert facts["Reason"].endswith("ssm command 2 (systemctl is-active kubelet) exited 3: inactive")
    assert message.link == ("ami-0built in the EC2 console", console_url("eu-west-1", "ami-0built"))


def promoted(entry: Entry, image_id: str = "ami-0new", previous: str = "ami-0old") -> Event:
    return Event(
        Kind.promoted,
        "web",
        "ami-builds",
        "uid-1",
        f"stable {image_id} 2026-12-10T02:00:00Z",
        region="eu-west-1",
        image_id=image_id,
        channel="stable",
        entry=entry,
        previous=previous,
        detail="2026-12-10T02:00:00Z",
    )


def test_a_promotion_says_which_ami_entered_which_channel_and_what_it_replaces() -> None:
    message = render(promoted(Entry.promoted))
    assert message.headline == "AMI ami-0new promoted to stable for ami-builds/web"
    assert message.tone is Tone.good
    facts = dict(message.facts)
    assert (facts["Channel"], facts["AMI"], facts["Replaces"]) == ("stable", "ami-0new", "ami-0old")
    assert facts["Entered"] == "2026-12-10T02:00:00Z"
    assert "Why" not in facts
    assert message.link == ("ami-0new in the EC2 console", console_url("eu-west-1", "ami-0new"))
    first = dict(render(promoted(Entry.promoted, previous="")).facts)
    assert first["Replaces"] == "nothing: the channel's first AMI"


def test_a_pin_and_a_fallback_say_so_and_why() -> None:
    pinned = render(promoted(Entry.pinned, "ami-0old", "ami-0new"))
    assert pinned.headline == "stable pinned to AMI ami-0old for ami-builds/web"
    assert dict(pinned.facts)["Why"].startswith("spec.release.pin.stable names it")
    fell = render(promoted(Entry.fell_back, "ami-0old", "ami-0bad"))
    assert fell.headline == "stable fell back to AMI ami-0old for ami-builds/web"
    assert dict(fell.facts)["Why"] == (
        "ami-0bad left the channel (revoked, or gone); the channel held ami-0old before it"
    )


def test_a_revocation_names_the_revoked_amis_and_what_became_of_the_parameters() -> None:
    said = "Revoked: ami-0bad. Nothing left to fall back to for /platform/ami/web/stable: deleted ..."
    one = render(
        Event(
            Kind.revoked, "web", "ns", "u", "ami-0bad", image_id="ami-0bad", images=("ami-0bad",), detail=said
        )
    )
    assert one.headline == "AMI ami-0bad revoked for ns/web"
    assert one.tone is Tone.bad
    assert dict(one.facts)["Status"] == said
    ids = tuple(f"ami-{n:017x}" for n in range(12))
    many = render(Event(Kind.revoked, "web", "ns", "u", " ".join(ids), images=ids))
    assert many.headline == "12 AMIs revoked for ns/web"
    assert dict(many.facts)["Revoked"] == ", ".join(ids[:10]) + " and 2 more"
    assert many.link is None


def test_every_kind_renders() -> None:
    for kind in Kind:
        message = render(Event(kind, "pb", "ns", "uid", "x", region="us-west-2", image_id="ami-1"))
        assert "ns/pb" in message.headline
        assert ("Builder", "ns/pb") in message.facts


def test_slack_blocks_have_a_header_fields_and_a_console_button() -> None:
    rendered = blocks(render(SUCCEEDED))
    assert rendered[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "✅ AMI build succeeded for ami-builds/packer-builder: ami-0built",
            "emoji": True,
        },
    }
    fields = [f["text"] for f in rendered[1]["fields"]]
    assert "*Built AMI*\nami-0built" in fields
    (button,) = rendered[2]["elements"]
    assert button["url"] == console_url("eu-west-1", "ami-0built")


def test_slack_fields_escape_markup_from_build_output() -> None:
    fields = [f["text"] for f in blocks(render(FAILED))[1]["fields"]]
    assert "*Reason*\nBackoffLimitExceeded: &lt;@here&gt; &amp; friends" in fields


def test_discord_embed_cannot_ping_anyone() -> None:
    body = payload(render(FAILED))
    assert body["allowed_mentions"] == {"parse": []}
    (embed,) = body["embeds"]
    assert embed["title"] == "AMI build failed for ami-builds/packer-builder (attempt 2 of 3)"
    assert {"name": "Job", "value": "packer-builder-2b3c4d5e", "inline": True} in embed["fields"]
    assert payload(render(SUCCEEDED))["embeds"][0]["url"] == console_url("eu-west-1", "ami-0built")


def test_sns_subject_is_short_ascii_on_one_line() -> None:
    long = Event(Kind.invalid, "b" * 120, "ns", "uid", "x", detail="spec.region: is required")
    subject = sns_subject(render(long))
    assert len(subject) < 100
    assert subject.isascii()
    assert "\n" not in subject
