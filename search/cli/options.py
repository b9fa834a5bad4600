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
    declarations = [flag, *(f"--{a.replace('_', '-')}" for a in how.aliases)]
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
    # Choices are shown here and checked by StudySpec.validate, with the same one-line
    # message as a wrong value in the config file.
    metavar = "|".join(how.choices) if how.choices else None
    extra: dict[str, Any] = {}
    if how.auto:  # "auto" means None (tunelab chooses), anything else must parse as `kind`
        extra["parser"] = lambda text: None if text == "auto" else kind(text)
        metavar = f"{kind.__name__.upper()}|auto"
    info = typer.Option(
        None,
        *declarations,
        help=help_text,
        show_default=_shown_default(f, how, joining),
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


def _shown_default(f: dataclasses.Field, how: Any, joining: bool) -> str | bool:
    if joining and how.stored:
        return "the study's"
    if how.shown_default is not None:
        return how.shown_default
    if f.default is None or f.default is dataclasses.MISSING:
        return False
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
    """A positional typer argument."""
    info = typer.Argument(default, help=help_text)
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=info, annotation=annotation
    )


def keyword(name: str, annotation: Any, info: Any) -> inspect.Parameter:
    """A keyword typer option declared by the command itself (not a study option)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation
    )
