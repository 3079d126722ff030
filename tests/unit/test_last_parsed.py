"""app.last_parsed: a resync's unchanged spec and status are not validated again; a changed one always is."""

import copy
from typing import Any

from app.last_parsed import LastParsed
from app.spec import SpecError, parse_spec
from tests.seed import SEED_SPEC


class Counting:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, raw: Any) -> str:
        self.calls.append(raw)
        return f"parsed {raw}"


def test_an_equal_value_is_parsed_once_per_builder_and_a_changed_one_again() -> None:
    parse = Counting()
    last = LastParsed(parse)
    assert last("uid-a", {"v": 1}) == "parsed {'v': 1}"
    assert last("uid-a", {"v": 1}) == "parsed {'v': 1}"  # an equal dict from the next request
    assert last("uid-b", {"v": 1}) == "parsed {'v': 1}"
    assert last("uid-a", {"v": 2}) == "parsed {'v': 2}"
    assert last("uid-a", {"v": 1}) == "parsed {'v': 1}"
    assert parse.calls == [{"v": 1}, {"v": 1}, {"v": 2}, {"v": 1}]


def test_without_a_uid_nothing_is_kept() -> None:
    parse = Counting()
    last = LastParsed(parse)
    last("", {"v": 1})
    last("", {"v": 1})
    assert len(parse.calls) == 2


def test_the_least_recently_used_builder_goes_first() -> None:
    parse = Counting()
    last = LastParsed(parse, size=2)
    for uid in ("a", "b", "a", "c", "a", "b"):
        last(uid, uid)
    assert parse.calls == ["a", "b", "c", "b"]


def test_an_invalid_spec_stays_invalid_and_a_fixed_one_is_valid() -> None:
    def spec_or_error(raw: Any) -> Any:
        try:
            return parse_spec(raw)
        except SpecError as error:
            return error

    last = LastParsed(spec_or_error)
    broken = copy.deepcopy(SEED_SPEC)
    broken["region"] = "US-WEST-2"
    assert isinstance(last("uid", broken), SpecError)
    assert isinstance(last("uid", copy.deepcopy(broken)), SpecError)
    assert last("uid", copy.deepcopy(SEED_SPEC)).region == SEED_SPEC["region"]
