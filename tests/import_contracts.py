"""A custom import-linter contract: no module imports another module's private names.

A private name starts with one underscore (`_stored_settings`); importing it from another
module couples the two through something the owner may change at will. import-linter's own
contracts check modules, not names, so this one reads each module's imports with `ast`.
Registered in pyproject.toml ([tool.importlinter] contract_types); run through
tests/test_code_style.py, which puts this folder on PYTHONPATH.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from importlinter import Contract, ContractCheck, fields, output


class PrivateNamesContract(Contract):
    """Modules under `containers` import no `_name` from another module."""

    type_name = "private_names"

    containers = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        containers = tuple(str(c) for c in self.containers)  # type: ignore[attr-defined]
        found = []
        for module in sorted(graph.modules):
            if module.split(".")[0] not in containers:
                continue
            found += [(module, line, text) for line, text in _private_imports(module)]
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, line, text in check.metadata["found"]:
            output.print_error(f"{module}:{line}: {text}")


def _private_imports(module: str) -> list[tuple[int, str]]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module not in (None, "__future__"):
            private = [alias.name for alias in node.names
                       if alias.name.startswith("_") and not alias.name.startswith("__")]
            if private and node.level == 0:
                found.append((node.lineno, f"from {node.module} import {', '.join(private)}"))
    return found
