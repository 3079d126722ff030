"""Tools some tests need beyond Python (shells, awks, jq, curl, uv): a test skips without one, except in CI.

scripts/test.sh installs them with apt-get. Where it cannot (no apt-get, no root or sudo), the tests that
need a missing tool are skipped with the reason; CI (.ci/run sets CI_REQUIRE_TOOLS=1) fails them instead,
so a machine that lost a tool cannot quietly run fewer tests.
"""

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE = "CI_REQUIRE_TOOLS"


def require_tool(name: str, why: str) -> str:
    """The tool's path; otherwise the test is skipped (or fails under CI_REQUIRE_TOOLS=1), saying why."""
    found = shutil.which(name)
    if found is not None:
        return found
    unavailable(f"{name} is not installed ({why}; scripts/test.sh installs it with apt-get where it can)")


def unavailable(message: str) -> NoReturn:
    """Skip the test with `message` (what is missing, why it is needed, how to get it); fail it in CI."""
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{message}, and {REQUIRE}=1 requires it")
    pytest.skip(message)
