"""Command-line options derived from the StudySpec declarations, never written beside them.

Every StudySpec (and TaskOptionFlags) field with a flag becomes one typer option: its flag and
aliases, its docstring as help, its default as shown, its choices, its help panel. An option
left off the command line arrives as None, so the config file and the environment can still
set it (`build_spec`).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from tunelab.search.spec import (
    StudySpec,
    TaskOptionFlags,
    field_docs,
    field_type,
    option_of,
)

Body = Callable[..., Any]


def spec_parameters(joining: bool = False) -> list[inspect.Parameter]:
    """One keyword parameter per option: every flag of `run` / `create`, or (`joining`) the
    few a worker joining a study sets itself."""
    parameters = []
    for cls in (StudySpec,) if joining else (StudySpec, TaskOptionFlags):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            how = option_of(f)
            if how.flag == "" or (joining and not how.joins):
                continue
            parameters.append(_parameter(cls, f, docs.get(f.name, ""), joining))
    return parameters


def _parameter(cls: type, f: dataclasses.Field, help_text: str, joining: bool) -> inspect.Parameter:
    how = option_of(f)
    kind, _ = field_type(f, cls)
    flag = how.flag or f"--{f.name.replace('_', '-')}"
    # an alias may be the flag itself (`constraint` is the config key the flag already is):
    # listed twice, it only widened the option column until `--help` cut the flag off
    declarations = list(dict.fromkeys([flag, *(f"--{a.replace('_', '-')}" for a in how.aliases)]))
    if kind is bool:  # a plain flag: absent means "not set"
        info = typer.Option(False, *declarations, help=help_text, rich_help_panel=how.panel)
        return inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=bool
        )
    if kind is tuple:  # a list of names: repeatable, each may hold several (a,b)
        info = typer.Option(
            None,
            *declarations,
            help=help_text,
            show_default=_shown_default(f, how, joining),
            rich_help_panel=how.panel,
            callback=lambda values: values or None,  # absent: None, like every other option
        )
        return inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=info,
            annotation=typing.Optional[list[str]],  # noqa: UP045 (a runtime type, not syntax)
        )
    # Choices are listed in the help text (a metavar of every choice filled the type column and
    # was folded mid-word) and checked by StudySpec.validate, with the same one-line message
    # as a wrong value in the config file.
    metavar = "NAME" if how.choices else None
    if how.choices:
        help_text = f"{help_text} One of: {', '.join(how.choices)}."
    extra: dict[str, Any] = {}
    if how.auto:  # "auto" means None (tunelab chooses), anything else must parse as `kind`
        extra["parser"] = lambda text: None if text == "auto" else kind(text)
        metavar = f"{kind.__name__.upper()}|auto"
    # A plain value as default (`tpe`, `0`) is given to typer, which shows it as such, and
    # turned back into None when it came from no flag (`_unset_if_default`): text for typer to
    # show instead would be printed as a description, "[default: (tpe)]".
    literal = not joining and _shown_default(f, how, joining) == str(f.default)
    if literal:
        extra["callback"] = _unset_if_default
    info = typer.Option(
        f.default if literal else None,
        *declarations,
        help=help_text,
        show_default=True if literal else _shown_default(f, how, joining),
        rich_help_panel=how.panel,
        metavar=metavar,
        hidden=how.hidden,
        **extra,
    )
    return inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=info,
        annotation=typing.Optional[kind],  # noqa: UP045 (a runtime type, not syntax)
    )


def _unset_if_default(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """None for an option left off the command line, so that the config file can set it."""
    source = ctx.get_parameter_source(param.name or "")
    return None if source is None or source.name == "DEFAULT" else value


def _shown_default(f: dataclasses.Field, how: Any, joining: bool) -> str | bool:
    if joining and how.stored:
        return "the study's"
    if how.shown_default is not None:
        return how.shown_default
    if f.default in (None, (), "") or f.default is dataclasses.MISSING:
        return False  # nothing to show: "[default: (())]" said only that
    if how.env:
        return f"${how.env} or {f.default}"
    return str(f.default)


def with_parameters(leading: Sequence[inspect.Parameter], joining: bool = False):
    """Give a command body `body(*leading, **options)` the signature typer reads: the leading
    parameters, then the options derived from StudySpec."""

    def decorate(body: Body) -> Body:
        body.__signature__ = inspect.Signature([*leading, *spec_parameters(joining)])
        return body

    return decorate


def argument(name: str, annotation: Any, help_text: str, default: Any = ...) -> inspect.Parameter:
    """A positional typer argument, shown by its name in capitals (`tunelab run TASK`)."""
    info = typer.Argument(default, help=help_text, metavar=name.upper())
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=info, annotation=annotation
    )


def keyword(name: str, annotation: Any, info: Any) -> inspect.Parameter:
    """A keyword typer option declared by the command itself (not a study option)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation
    )


class CommandGroup(TyperGroup):
    """The `tunelab` group: its commands' help as typer renders it, without two flaws of that
    rendering (typer 0.29's rich panels), fixed here once for every command, the ones added
    later included.

    - The commands panel keeps a docstring's line breaks (its first paragraph is joined only
      in the other markup modes), so descriptions broke mid-sentence: a command's short help
      is its first paragraph on one line.
    - Every flag, `--help` included, was listed with a type (`--help <bool>`), as if it took a
      value: a flag shows none.
    """

    def get_command(self, ctx, cmd_name: str):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy_help(command, ctx)
        return command

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        _no_type(option)
        return option


def tidy_help(command, ctx) -> None:
    """One command's help as CommandGroup shows it (see there)."""
    if command.short_help is None and command.help:
        first = inspect.cleandoc(command.help).partition("\n\n")[0]
        command.short_help = " ".join(first.split())
    for param in [*command.params, command.get_help_option(ctx)]:
        _no_type(param)
    for sub in getattr(command, "commands", {}).values():  # a group added with add_typer
        tidy_help(sub, ctx)


def _no_type(param) -> None:
    if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""  # typer shows the metavar in the type column: nothing there
