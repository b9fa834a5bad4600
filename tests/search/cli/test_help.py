"""`tunelab --help` and every command's `--help`, as a terminal of 80 or 100 columns shows
them: descriptions wrapped, never broken mid-sentence or cut off, flags listed without a type,
and the generated CLI reference of the docs built from the same app."""

from __future__ import annotations

import re

import pytest
import typer

from tunelab.search.cli import main, make_app

WIDTHS = (80, 100)


def _commands() -> list[str]:
    root = typer.main.get_command(make_app())
    context = typer.Context(root, info_name="tunelab")
    return [
        name for name in root.list_commands(context) if not root.get_command(context, name).hidden
    ]


def _help(argv: list[str], width: int, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    assert main([*argv, "--help"]) in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("width", WIDTHS)
def test_no_command_help_is_cut_or_gives_a_flag_a_type(width, capsys, monkeypatch):
    for argv in ([], *([name] for name in _commands())):
        text = _help(argv, width, capsys, monkeypatch)
        assert "…" not in text, (argv, text)  # rich's mark of a cut cell
        assert "<bool>" not in text, (argv, text)
        assert "(())" not in text, (argv, text)
        assert re.search(r"│ --help\s+Show this message and exit\.", text), (argv, text)
        assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_command_descriptions_wrap_without_breaking_mid_sentence(width, capsys, monkeypatch):
    text = _help([], width, capsys, monkeypatch)
    panel = text[text.index("Commands") :]
    rows: list[list[str]] = []
    for line in panel.splitlines()[1:]:
        cells = re.fullmatch(r"│ (\S*)\s+(.*?)\s*│", line)
        if cells is None:
            continue
        if cells.group(1):
            rows.append([cells.group(2)])
        elif rows:
            rows[-1].append(cells.group(2))
    assert len(rows) == len(_commands())
    column = max(len(line) for row in rows for line in row)
    for row in rows:
        for line, following in zip(row, row[1:], strict=False):
            # wrapped, not broken: the next word would not have fit on this line
            assert len(line) + 1 + len(following.split()[0]) > column, row
    joined = [" ".join(row) for row in rows]
    assert (
        "Create or resume a study and run it to its target number of finished trials, or for "
        "its time budget." in joined
    )


def test_run_help_lists_constraint_choices_and_plain_defaults(capsys, monkeypatch):
    text = _help(["run"], 80, capsys, monkeypatch)
    assert re.search(r"│ --constraint\s+<list\[str\]>\s+A bound on a metric", text), text
    assert "--constraint,--constraint" not in text
    assert "One of: tpe, random, cmaes, gp, qmc, nsga2." in " ".join(text.replace("│", "").split())
    assert "[default: tpe]" in text and "[default: (tpe)]" not in text
    assert "[default: (TASK-DATASET)]" in text  # a description of a default keeps its marks


def test_the_docs_cli_reference_holds_every_command_and_the_exit_codes():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "docs" / "hooks" / "tunelab_docs.py"
    spec = importlib.util.spec_from_file_location("tunelab_docs", path)
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    reference = hooks.cli_reference()
    for name in _commands():
        assert f"## `tunelab {name}`" in reference, name
    assert "<code>--constraint &lt;list[str]&gt;</code>" in reference
    assert "| 3 | `EXIT_DIVERGED` |" in reference and "| 2 | `EXIT_USAGE` |" in reference
