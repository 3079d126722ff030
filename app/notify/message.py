"""What a notification says, once, for every channel: a headline, labelled facts, a link to the AMI."""

from dataclasses import dataclass
from enum import StrEnum

from app.notify.events import Entry, Event, Kind


class Tone(StrEnum):
    info = "info"
    good = "good"
    bad = "bad"


@dataclass(frozen=True)
class Message:
    headline: str
    tone: Tone
    facts: tuple[tuple[str, str], ...]
    link: tuple[str, str] | None = None

    @property
    def emoji(self) -> str:
        return {Tone.info: "🔨", Tone.good: "✅", Tone.bad: "❌"}[self.tone]

    def text(self) -> str:
        """The plain-text rendering: email and SNS bodies, Slack's notification fallback."""
        lines = [self.headline, ""] + [f"{label}: {value}" for label, value in self.facts]
        if self.link is not None:
            lines.append(f"{self.link[0]}: {self.link[1]}")
        return "\n".join(lines)


def console_url(region: str, image_id: str) -> str:
    return f"https://{region}.console.aws.amazon.com/ec2/home?region={region}#ImageDetails:imageId={image_id}"


# A revocation names this many AMIs, then counts the rest (revokeBase can revoke a builder's whole history).
_LISTED = 10


def _entry(event: Event, who: str) -> tuple[str, Tone, str]:
    """The headline, tone and reason of an AMI entering a release channel."""
    channel, image_id = event.channel, event.image_id
    match event.entry:
        case Entry.pinned:
            why = f"spec.release.pin.{channel} names it; the channel stays on it until the pin is removed"
            return f"{channel} pinned to AMI {image_id} for {who}", Tone.info, why
        case Entry.fell_back:
            why = (
                f"{event.previous} left the channel (revoked, or gone); the channel held {image_id} before it"
            )
            return f"{channel} fell back to AMI {image_id} for {who}", Tone.info, why
        case _:
            return f"AMI {image_id} promoted to {channel} for {who}", Tone.good, ""


def _attempt(event: Event) -> str:
    return f"{event.attempt} of {event.max_attempts}"


def render(event: Event) -> Message:
    who = f"{event.namespace}/{event.builder}"
    link = None
    if event.image_id and event.region:
        link = (f"{event.image_id} in the EC2 console", console_url(event.region, event.image_id))
    facts: list[tuple[str, str]] = [("Builder", who)]
    match event.kind:
        case Kind.started:
            headline, tone = f"AMI build started for {who}", Tone.info
            facts += [
                ("Job", event.job_name),
                ("Base AMI", event.base_ami or "none (the template picks its source)"),
                ("Source", event.source),
                ("Attempt", _attempt(event)),
            ]
        case Kind.succeeded:
            headline, tone = f"AMI build succeeded for {who}: {event.image_id}", Tone.good
            facts += [
                ("Built AMI", event.image_id),
                ("Base AMI", event.base_ami or "none"),
                ("Duration", event.duration or "unknown"),
                ("Job", event.job_name),
                ("Validation", event.detail),
            ]
        case Kind.failed:
            headline, tone = f"AMI build failed for {who} (attempt {_attempt(event)})", Tone.bad
            facts += [("Job", event.job_name), ("Reason", event.detail or "unknown")]
        case Kind.rejected:
            headline = (
                f"AMI validation failed for {who}: {event.image_id} rejected (attempt {_attempt(event)})"
            )
            tone = Tone.bad
            facts += [
                ("Rejected AMI", event.image_id),
                ("Base AMI", event.base_ami),
                ("Validation job", event.job_name),
                ("Reason", event.detail or "unknown"),
            ]
        case Kind.exhausted:
            headline = f"AMI builds stopped for {who}: {event.attempt} of {event.max_attempts} failed"
            tone = Tone.bad
            facts += [("Last job", event.job_name), ("Next step", "fix the build, then change the spec")]
        case Kind.adopted:
            headline, tone = f"Existing AMI {event.image_id} adopted by {who}", Tone.good
            facts += [("AMI", event.image_id), ("Base AMI", event.base_ami or "unknown")]
        case Kind.expired:
            headline, tone = f"AMI {event.image_id} expired for {who}; a rebuild is due", Tone.info
            facts += [("Expired", event.detail)]
        case Kind.promoted:
            headline, tone, why = _entry(event, who)
            facts += [
                ("Channel", event.channel),
                ("AMI", event.image_id),
                ("Replaces", event.previous or "nothing: the channel's first AMI"),
                ("Entered", event.detail),
                ("Why", why),
            ]
        case Kind.revoked:
            revoked = event.images or (event.image_id,)
            many = len(revoked)
            headline = (
                f"AMI {revoked[0]} revoked for {who}" if many == 1 else f"{many} AMIs revoked for {who}"
            )
            tone = Tone.bad
            more = f" and {many - _LISTED} more" if many > _LISTED else ""
            facts += [("Revoked", ", ".join(revoked[:_LISTED]) + more), ("Status", event.detail)]
        case Kind.invalid:
            headline, tone = f"Invalid PackerBuilder spec in {who}", Tone.bad
            facts += [("Problem", event.detail)]
    if event.region:
        facts.append(("Region", event.region))
    return Message(headline, tone, tuple((label, value) for label, value in facts if value), link)
