"""Notification events as the notifier derives them, for the tests of what each channel sends."""

from app.notify.events import Event, Kind


def build_succeeded(region: str = "us-west-2") -> Event:
    return Event(
        Kind.succeeded,
        "packer-builder",
        "ami-builds",
        "uid-1",
        "build-1",
        region=region,
        job_name="packer-builder-1a2b3c4d",
        base_ami="ami-0base",
        image_id="ami-0built",
        duration="25m07s",
    )
