"""docs/operations.md names the tests behind each row: every one must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"`((?:\w+/)?test_\w+\.py)?(?:::(test_\w+))?`")


def test_every_test_named_in_the_operations_page_exists() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    named: list[tuple[str, str | None]] = []
    module = None
    for match in REFERENCE.finditer(text):
        module = match.group(1) or module  # `::name` continues the file named before it
        assert module is not None, match.group(0)
        named.append((module, match.group(2)))
    assert len(named) >= 10
    for module_name, function in named:
        path = ROOT / "tests" / module_name
        assert path.is_file(), module_name
        if function is not None:
            tree = ast.parse(path.read_text())
            defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
            assert function in defined, f"{module_name}::{function}"
