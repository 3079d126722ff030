"""What a notification says, rendered for Slack (Block Kit + fallback), Discord (embed), SNS and email."""

from dataclasses import replace

from app.notify.aws import sns_subject
from app.notify.discord import payload
from app.notify.events import Event, Kind
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
