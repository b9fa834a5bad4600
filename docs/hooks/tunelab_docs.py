"""MkDocs hooks of tunelab's documentation (mkdocs.yml `hooks:`).

- The CLI reference is generated from the typer app itself at every build: each command's
  description, usage and options (grouped by their help panel) as `--help` states them, and the
  exit codes from `tunelab.search.cli.common`. It cannot drift from the code: there is no copy.
- mkdocstrings reads the API reference statically (griffe, no import). The repository's folders
  `objectives/`, `search/`... are the package `tunelab.*` only as installed (pyproject.toml's
  package-dir), so griffe is pointed at the installed tree (the strict editable install's links,
  `make` builds them), found through the import system without importing the packages.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

CLI_MARKER = "<!-- tunelab-cli-reference -->"
"""Where in docs/reference/cli.md the generated reference goes."""


@event_priority(100)  # before mkdocstrings reads its handler's options
def on_config(config: Any) -> Any:
    spec = importlib.util.find_spec("tunelab.objectives")  # imports `tunelab` only
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tunelab is not installed in this environment: run `make` first")
    installed = Path(next(iter(spec.submodule_search_locations))).parent.parent
    handler = config["plugins"]["mkdocstrings"].config["handlers"].setdefault("python", {})
    handler["paths"] = [str(installed)]
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARKER not in markdown:
        return markdown
    return markdown.replace(CLI_MARKER, cli_reference())


# -- the CLI reference --------------------------------------------------------------------------


def cli_reference() -> str:
    """Markdown of every command of `tunelab`, then its exit codes."""
    import typer

    from tunelab.search.cli import make_app

    root = typer.main.get_command(make_app())
    context = typer.Context(root, info_name="tunelab")
    parts = [_usage(root, context), *_commands(root, context, "tunelab"), _exit_codes()]
    return "\n\n".join(parts) + "\n"


def _commands(group: Any, context: Any, prefix: str) -> list[str]:
    import typer

    found = []
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None or command.hidden:
            continue
        sub = typer.Context(command, info_name=name, parent=context)
        found.append(_command(command, sub, f"{prefix} {name}"))
        if hasattr(command, "list_commands"):  # a group of its own (`tunelab launch ...`)
            found += _commands(command, sub, f"{prefix} {name}")
    return found


def _usage(command: Any, context: Any) -> str:
    pieces = " ".join(command.collect_usage_pieces(context))
    return f"```text\n{context.command_path} {pieces}\n```"


def _command(command: Any, context: Any, path: str) -> str:
    text = inspect.cleandoc(command.help or "")
    lines = [f"## `{path}`", "", " ".join(text.split("\n\n")[0].split())]
    rest = text.split("\n\n")[1:]
    lines += ["", *(" ".join(p.split()) for p in rest)] if rest else []
    lines += ["", _usage(command, context)]
    panels: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is None:  # hidden
            continue
        kind = "Arguments" if param.param_type_name == "argument" else "Options"
        panel = getattr(param, "rich_help_panel", None) or kind
        panels.setdefault(panel, []).append(record)
    for panel, records in panels.items():
        lines += ["", f"**{panel}**", "", "| option | description |", "| --- | --- |"]
        lines += [f"| {_code(name)} | {_cell(help_text)} |" for name, help_text in records]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    """Code in a table cell: a `|` in a code span would end the cell, or show its escape."""
    escaped = html.escape(" ".join(str(text).split())).replace("|", "&#124;")
    return f"<code>{escaped}</code>"


def _exit_codes() -> str:
    """The EXIT_* constants of tunelab.search.cli.common with their docstrings."""
    from tunelab.search.cli import common

    tree = ast.parse(inspect.getsource(common))
    rows = []
    for node, following in zip(tree.body, tree.body[1:], strict=False):
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not name.startswith("EXIT_"):
            continue
        doc = ""
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            doc = " ".join(str(following.value.value).split())
        rows.append(f"| {getattr(common, name)} | `{name}` | {_cell(doc)} |")
    rows.sort(key=lambda row: int(row.split("|")[1]))
    return "\n".join(
        [
            "## Exit codes",
            "",
            "| code | name | meaning |",
            "| --- | --- | --- |",
            "| 0 | | success |",
            *rows,
        ]
    )
