"""The refresh-ahead cache and the AMI index's pure parts, with a fake clock and an in-memory loader."""

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from app.aws.image_index import RegionIndex
from app.aws.refreshed import NotInMemory, Refreshed
from app.model.tags import Image


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Answers from `values`, counting calls; raises `error` when set; can hold a call until released."""

    def __init__(self, **values: int) -> None:
        self.values = dict(values)
        self.calls: list[str] = []
        self.error: Exception | None = None
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, key: str) -> int:
        self.calls.append(key)
        self.entered.set()
        self.release.wait(5)
        if self.error is not None:
            raise self.error
        return self.values[key]


def cache(loader: Loader, clock: Clock, period: float = 60) -> Refreshed[str, int]:
    return Refreshed(loader, period=period, clock=clock)


def test_first_get_loads_later_gets_never_do() -> None:
    loader, clock = Loader(a=1), Clock()
    values = cache(loader, clock)
    assert values.get("a") == 1
    loader.values["a"] = 2
    clock.now += 1000
    assert values.get("a") == 1
    assert loader.calls == ["a"]


@pytest.mark.parametrize(("elapsed", "reloaded"), [(59.9, False), (60, True), (600, True)])
def test_refresh_due_reloads_only_what_is_older_than_the_period(elapsed: float, reloaded: bool) -> None:
    loader, clock = Loader(a=1, b=10), Clock()
    values = cache(loader, clock)
    values.get("a")
    clock.now += 30
    values.get("b")
    loader.values |= {"a": 2, "b": 20}
    clock.now += elapsed - 30

    assert values.refresh_due() == 0
    assert values.get("a") == (2 if reloaded else 1)
    assert values.get("b") == (20 if elapsed - 30 >= 60 else 10)  # loaded 30 s later
    assert values.age("a") == pytest.approx(0 if reloaded else elapsed)


def test_a_failed_reload_keeps_the_last_good_value_and_its_age() -> None:
    loader, clock = Loader(a=1), Clock()
    values = cache(loader, clock)
    values.get("a")
    loader.error = RuntimeError("EC2 is down")
    clock.now += 90

    assert values.refresh_due() == 1
    assert values.get("a") == 1
    assert values.age("a") == 90
    assert values.error("a") == "RuntimeError: EC2 is down"

    loader.error = None
    clock.now += 60
    assert values.refresh_due() == 0
    assert values.error("a") == ""
    assert values.age("a") == 0


def test_concurrent_first_gets_share_one_load_and_its_failure() -> None:
    loader, clock = Loader(a=1), Clock()
    loader.release.clear()
    loader.error = RuntimeError("slow and then broken")
    values = cache(loader, clock)
    outcomes: list[Any] = []

    def get() -> None:
        try:
            outcomes.append(values.get("a"))
        except RuntimeError as error:
            outcomes.append(str(error))

    first = threading.Thread(target=get)
    first.start()
    assert loader.entered.wait(5)
    others = [threading.Thread(target=get) for _ in range(5)]
    for thread in others:
        thread.start()
    loader.release.set()
    for thread in [first, *others]:
        thread.join(5)

    assert outcomes == ["slow and then broken"] * 6
    assert loader.calls == ["a"]
    loader.error = None
    assert values.get("a") == 1, "a failure is not kept: the next get loads again"


def test_writes_go_through_at_once_and_survive_a_reload_that_read_before_them() -> None:
    loader, clock = Loader(a=1), Clock()
    values = cache(loader, clock)
    values.get("a")
    values.update("a", lambda v: v + 100)
    assert values.get("a") == 101

    # A reload starts (it reads the old value 1 from "AWS"), a write lands meanwhile, then the reload ends.
    clock.now += 60
    loader.release.clear()
    loader.entered.clear()
    reload = threading.Thread(target=values.refresh_due)
    reload.start()
    assert loader.entered.wait(5)
    values.update("a", lambda v: v + 1000)
    loader.release.set()
    reload.join(5)

    assert values.get("a") == 1001  # the reloaded 1, with the write made during the reload replayed


def test_put_is_as_fresh_as_a_load_and_update_of_an_unknown_key_waits_for_its_first_load() -> None:
    loader, clock = Loader(a=1), Clock()
    values = cache(loader, clock)
    values.update("a", lambda v: v + 1)
    with pytest.raises(NotInMemory):
        values.get("a", load=False)
    values.put("a", 7)
    clock.now += 10
    assert values.get("a") == 7
    assert values.age("a") == 10
    assert loader.calls == []


# -- the index's lookups ------------------------------------------------------------------------------------------

T = datetime(2026, 11, 20, tzinfo=UTC)


def ami(image_id: str, created_by: str, **tags: str) -> Image:
    owner = {
        "brought-to-you-by": "opsy-the-ami-operator",
        "cluster-name": "c",
        "created-by": created_by,
        "packer-repo": "https://r",
        "packer-repo-branch": "main",
    }
    return Image(
        image_id,
        "available",
        T,
        tags={**owner, "create-timestamp": f"2026-11-{image_id[-2:]}T00:00:00Z", **tags},
    )


def owner(created_by: str) -> dict[str, str]:
    return {k: v for k, v in ami("ami-x01", created_by).tags.items() if k != "create-timestamp"}


def test_a_builder_finds_exactly_its_own_amis_newest_first() -> None:
    index = RegionIndex.of(
        [
            ami("ami-a01", "a"),
            ami("ami-a03", "a"),
            ami("ami-b02", "b"),
            ami("ami-c04", "a", **{"cluster-name": "other"}),
        ]
    )
    assert [i.image_id for i in index.owned(owner("a"))] == ["ami-a03", "ami-a01"]
    assert [i.image_id for i in index.owned(owner("b"))] == ["ami-b02"]
    assert index.owned(owner("z")) == []
    assert len(index) == 4


def test_changes_retag_remove_and_replace_one_builders_amis() -> None:
    index = RegionIndex.of([ami("ami-a01", "a"), ami("ami-b02", "b")])
    retagged = index.changed(
        ["ami-a01"],
        lambda i: Image(i.image_id, i.state, i.creation_date, tags={**i.tags, "status": "deprecated"}),
    )
    assert retagged.owned(owner("a"))[0].tags["status"] == "deprecated"
    assert [i.image_id for i in index.changed(["ami-a01"], lambda _: None).owned(owner("a"))] == []
    replaced = index.replaced(owner("a"), [ami("ami-a05", "a")])
    assert [i.image_id for i in replaced.owned(owner("a"))] == ["ami-a05"]
    assert [i.image_id for i in replaced.owned(owner("b"))] == ["ami-b02"]
    assert index.with_images([ami("ami-a01", "a")]) is index
