"""The architecture as `ls app/` shows it, enforced: no module imports from a layer above its own.

Layers, lowest first: model (spec, status, settings, hook bodies, durations, the tag contract) < core (the pure decision) < aws (EC2,
SSM, the index, carrying out effects) < notify < http (the FastAPI shell) < the entry points at the top of
app/ (main, local). The boot check (app/validation) is its own program beside aws. Imports under
`if TYPE_CHECKING:` count too: a type from a layer above is a dependency on it.
"""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"
RANK = {"model": 0, "core": 1, "aws": 2, "validation": 2, "notify": 3, "http": 4}
TOP = 5
PURE = ("model", "core")
# What the pure layers may import from outside the project: the standard library and the data libraries.
PURE_THIRD_PARTY = {"pydantic", "pydantic_core", "croniter", "yaml"}


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts[0] != "app" or len(parts) < 2:
        raise ValueError(module)
    return RANK.get(parts[1], TOP)


def modules() -> list[Path]:
    return sorted(APP.rglob("*.py"))


def name_of(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            found += [f"{base}.{alias.name}" if base == "app" else base for alias in node.names]
    return found


@pytest.mark.parametrize("path", modules(), ids=name_of)
def test_no_module_imports_from_a_layer_above_its_own(path: Path) -> None:
    own = layer_of(name_of(path)) if name_of(path) != "app" else TOP
    above = [m for m in imports(path) if m.startswith("app.") and layer_of(m) > own]
    assert above == [], f"{name_of(path)} (layer {own}) imports {above}"


def test_every_module_is_in_a_layer_or_an_entry_point() -> None:
    top = sorted(p.stem for p in APP.glob("*.py") if p.stem != "__init__")
    assert top == ["local", "main"]
    assert {p.name for p in APP.iterdir() if p.is_dir() and p.name != "__pycache__"} <= set(RANK)
