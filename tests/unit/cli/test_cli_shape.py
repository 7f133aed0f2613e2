"""The CLI parses and prints: no command body (after its docstring) longer than ~40 lines; logic lives in the
layers below (docs/ARCHITECTURE.md, issue 9)."""

from __future__ import annotations

import ast

from testkit import REPO

CLI = REPO / "src" / "webinfra" / "cli"
LIMIT = 40


def _is_command(fn: ast.FunctionDef) -> bool:
    for deco in fn.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(target, ast.Attribute) and target.attr in ("command", "group"):
            return True
    return False


def command_bodies() -> dict[str, int]:
    sizes = {}
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and _is_command(node):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # the docstring: the command's --help
                if body:
                    sizes[f"{path.name}::{node.name}"] = (body[-1].end_lineno or 0) - body[0].lineno + 1
    return sizes


def test_no_cli_command_body_is_long() -> None:
    sizes = command_bodies()
    assert len(sizes) > 30  # the walk found the commands
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}
