"""Files generated from the code (the CRD, the saved requests): write them, or with --check say which differ.

Shared by scripts/gen_crd.py and scripts/gen_examples.py, which CI runs with --check so a committed copy can
never drift from what the code produces.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from pathlib import Path


def write_or_check(files: Mapping[Path, str], root: Path, *, check: bool, source: str, command: str) -> int:
    """Write each file whose text differs; with `check`, write nothing and print the diffs. Exit status."""
    stale = []
    for output, expected in files.items():
        current = output.read_text() if output.exists() else ""
        if current == expected:
            continue
        if check:
            stale.append(output)
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                fromfile=f"{output.relative_to(root)} (committed)",
                tofile=f"{output.relative_to(root)} (from {source})",
            )
            sys.stderr.writelines(diff)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(expected)
            print(f"wrote {output.relative_to(root)}")
    if stale:
        names = ", ".join(str(p.relative_to(root)) for p in stale)
        print(f"{names} out of date: run `{command}`", file=sys.stderr)
        return 1
    return 0
