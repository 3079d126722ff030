"""docs/performance.md: in step with the index settings, their defaults, the condition, the logs and the links."""

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices

from app.core import conditions
from app.model.settings import Settings
from tests.deploy.manifests import CHART, ROOT, load_yaml, markdown_table

DOC = ROOT / "docs" / "performance.md"
README = ROOT / "README.md"
SETTINGS_HEADER = ["Variable", "Default", "Chart value", "What it sets"]
# The settings of the index and the background refresh: INDEX_* and the base-image refresh period.
INDEX_SETTING = re.compile(r"^(INDEX_[A-Z_]+|BASE_IMAGE_CACHE_SECONDS)$")


def _env_of(field: str) -> str:
    """The environment variable a Settings field is read from: its first alias, else its name."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0].upper()
    return field.upper()


def _env_names() -> set[str]:
    """Every environment variable Settings reads."""
    return {_env_of(field) for field in Settings.model_fields}


def _numeric_index_settings() -> dict[str, float]:
    """INDEX_*-style variables read as numbers, with the default Settings has for them."""
    found = {
        _env_of(field): float(info.default)
        for field, info in Settings.model_fields.items()
        if INDEX_SETTING.match(_env_of(field)) and isinstance(info.default, int | float)
    }
    assert found, "no index settings found in app/model/settings.py"
    return found


def _shown(value: float) -> str:
    return f"`{int(value)}`" if value == int(value) else f"`{value}`"


def _rows(path: Path, header: list[str]) -> dict[str, list[str]]:
    return {row[0].strip("`"): row for row in markdown_table(path.read_text(), header)}


def test_every_index_setting_is_in_the_settingsmarkdown_table() -> None:
    index_settings = {name for name in _env_names() if INDEX_SETTING.match(name)}
    assert {"INDEX_REFRESH_SECONDS", "INDEX_STALE_AFTER_SECONDS", "INDEX_REGIONS"} <= index_settings
    assert index_settings <= set(_rows(DOC, SETTINGS_HEADER))


@pytest.mark.parametrize("path", [DOC, README], ids=lambda p: p.name)
def test_numeric_defaults_are_the_ones_settings_has(path: Path) -> None:
    header = SETTINGS_HEADER if path == DOC else ["Variable", "Default", "Meaning"]
    rows = _rows(path, header)
    for name, default in _numeric_index_settings().items():
        assert name in rows, f"{path.name} has no row for {name}"
        assert rows[name][1] == _shown(default), f"{path.name}: {name} defaults to {default}"


def test_regions_default_to_the_hook_region() -> None:
    assert Settings().index_regions == ()
    for path, header in ((DOC, SETTINGS_HEADER), (README, ["Variable", "Default", "Meaning"])):
        default = _rows(path, header)["INDEX_REGIONS"][1]
        assert default.startswith("empty"), path.name
        assert "`AWS_REGION`" in default, path.name


def test_chart_values_are_named_for_each_setting() -> None:
    hook = load_yaml(CHART / "values.yaml")["hook"]
    for name, row in _rows(DOC, SETTINGS_HEADER).items():
        value = row[2].strip("`")
        assert value.startswith("hook."), f"{name}: {value}"
        assert value.removeprefix("hook.") in hook, f"{name}: no chart value {value}"


def test_staleness_rules_name_the_settings_and_the_condition() -> None:
    text = DOC.read_text()
    rules = text.split("## 3. Staleness rules", 1)[1].split("\n## 4.", 1)[0]
    for name in ("INDEX_REFRESH_SECONDS", "INDEX_STALE_AFTER_SECONDS", "BASE_IMAGE_CACHE_SECONDS"):
        assert f"`{name}`" in rules, name
    assert f"`{conditions.IMAGE_INDEX_STALE}`" in rules
    assert f"`{conditions.AWS_ERROR}`" in rules


def test_acting_status_fields_are_the_ones_decide_uses() -> None:
    """The doc lists the status fields whose change makes an answer act, as app.core.decide has them."""
    source = (ROOT / "app" / "core" / "decide.py").read_text()
    block = re.search(r"_ACTING_FIELDS = \(([^)]*)\)", source)
    assert block is not None
    fields = re.findall(r'"(\w+)"', block.group(1))
    assert fields
    text = DOC.read_text()
    listed = re.search(r"changes one of the status fields.*?:(.*?)\.\n", text, re.DOTALL)
    assert listed is not None
    assert sorted(re.findall(r"`(\w+)`", listed.group(1))) == sorted(fields)


def test_quoted_log_messages_are_logged_by_the_code() -> None:
    """Each log line section 6 tells on-call to look for is still written, word for word."""
    observe = DOC.read_text().split("## 6. How to observe it", 1)[1].split("\n## 7.", 1)[0]
    quoted = re.findall(r"^\s+- `([^`]+)`", observe, re.MULTILINE)
    assert len(quoted) >= 3
    sources = "".join(path.read_text() for path in (ROOT / "app").rglob("*.py"))
    for message in quoted:
        fixed = [part.strip() for part in re.split(r"<[^>]+>", message) if part.strip(" :")]
        assert fixed, message
        for part in fixed:
            assert part.strip(": ") in sources, f"no log message in app/ contains {part!r}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.MULTILINE)}


def test_links_resolve() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", DOC.read_text())
    assert links
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        path = (DOC.parent / target).resolve() if target else DOC
        assert path.exists(), f"{link}: {path} does not exist"
        if anchor:
            assert anchor in _anchors(path), f"{link}: no heading #{anchor} in {path.name}"


def test_benchmark_numbers_are_linked_from_the_readme() -> None:
    assert "../README.md#benchmark" in DOC.read_text()
    assert "benchmark" in _anchors(README)


def test_readme_lists_the_doc_and_the_new_modules() -> None:
    readme = README.read_text()
    assert "[docs/performance.md](docs/performance.md)" in readme
    for module in ("app/aws/refreshed.py", "app/aws/image_index.py"):
        assert f"| `{module}` |" in readme, module
        assert (ROOT / module).exists(), module
    assert "TTL" not in readme, "base lookups are refreshed in the background, not cached with a TTL"


def test_freshness_doc_describes_background_refresh() -> None:
    freshness = (ROOT / "docs" / "freshness.md").read_text()
    caching = freshness.split("### Caching", 1)[1].split("\n## ", 1)[0]
    assert "`BASE_IMAGE_CACHE_SECONDS`" in caching
    assert "background" in caching
    assert "(performance.md)" in caching
