"""Declarative search spaces: each task lists its tunable parameters once, users narrow them.

A `Param` describes one hyperparameter (its Optuna distribution and its default); a
`SearchSpace` samples them from an Optuna trial, yields the defaults for the first enqueued
trial, and applies a user's narrowing (`{"lr": {"low": 1e-4, "high": 1e-2}, "optimizer": "adam"}`)
with one clear error for an unknown name or an impossible range.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

ParamKind = Literal["float", "int", "categorical"]


class SearchSpaceError(ValueError):
    """A narrowing of the search space that cannot be applied."""


@dataclass(frozen=True)
class Bounds:
    """The values the code supports for a numeric hyperparameter (wider than the range
    searched by default): a user's narrowing must stay inside them."""

    low: float = -math.inf
    """Smallest supported value."""
    high: float = math.inf
    """Largest supported value."""
    low_open: bool = False
    """`low` itself is not supported (e.g. a learning rate of 0)."""
    high_open: bool = False
    """`high` itself is not supported (e.g. a dropout probability of 1)."""

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        return (
            f"{'(' if self.low_open else '['}{self.low:g}, "
            f"{self.high:g}{')' if self.high_open else ']'}"
        )


def above(low: float, high: float = math.inf) -> Bounds:
    """Bounds (low, high]: values above `low` (learning rates, loss weights)."""
    return Bounds(low, high, low_open=True)


def fraction(high_open: bool = True) -> Bounds:
    """Bounds [0, 1) (a probability that must leave something, e.g. dropout) or [0, 1]."""
    return Bounds(0.0, 1.0, high_open=high_open)


@dataclass(frozen=True)
class Param:
    """One tunable hyperparameter."""

    name: str
    """Name of the hyperparameter (a field of the task's hyperparameter dataclass)."""
    kind: ParamKind
    """Distribution family: float, int or categorical."""
    low: float | None = None
    """Lower bound (float and int)."""
    high: float | None = None
    """Upper bound, inclusive (float and int)."""
    log: bool = False
    """Sample on a log scale (float and int)."""
    step: int | None = None
    """Step between int values (None = 1)."""
    choices: tuple[Any, ...] = ()
    """Allowed values (categorical)."""
    allowed: tuple[Any, ...] = ()
    """Every value the code supports (categorical); narrowing may only pick among these."""
    when: tuple[str, tuple[Any, ...]] | None = None
    """Only sampled when another parameter takes one of these values (e.g. momentum for sgd)."""
    supported: Bounds | None = None
    """Every value the code supports (float and int); narrowing must stay inside. None: any
    number (a task from a plugin that declares none); built-in tasks declare them all."""

    def __post_init__(self) -> None:
        if self.kind == "categorical" and not self.allowed:
            object.__setattr__(self, "allowed", tuple(self.choices))
        if self.supported is not None and not (
            self.low in self.supported and self.high in self.supported
        ):  # a task definition that searches outside what it supports
            raise TypeError(f"parameter '{self.name}': searched range outside {self.supported}")

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.log, step=self.step or 1
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        return self.low <= value <= self.high

    def narrowed(self, override: Any) -> Param | Any:
        """Apply one user override; returns a new Param, or a plain value when it is fixed."""
        if not isinstance(override, Mapping):
            return self._checked_value(override)
        unknown = set(override) - {"low", "high", "log", "choices", "value"}
        if unknown:
            raise SearchSpaceError(
                f"parameter '{self.name}': unknown key(s) {sorted(unknown)}; "
                "use low/high/log, choices or value"
            )
        if "value" in override:
            return self._checked_value(override["value"])
        if self.kind == "categorical":
            if set(override) - {"choices"}:
                raise SearchSpaceError(f"parameter '{self.name}' is categorical: use choices")
            choices = tuple(self._checked_value(c) for c in override.get("choices", ()))
            if not choices:
                raise SearchSpaceError(f"parameter '{self.name}': choices must not be empty")
            return dataclasses.replace(self, choices=choices)
        if "choices" in override:
            raise SearchSpaceError(f"parameter '{self.name}' is numeric: use low/high")
        low = _number(self.name, override.get("low", self.low))
        high = _number(self.name, override.get("high", self.high))
        log = override.get("log", self.log)
        if not isinstance(log, bool):  # bool("no") would be True
            raise SearchSpaceError(f"parameter '{self.name}': log must be true or false")
        if self.kind == "int" and (low != int(low) or high != int(high)):
            raise SearchSpaceError(f"parameter '{self.name}' takes integer bounds")
        if low > high:
            raise SearchSpaceError(f"parameter '{self.name}': low {low} is above high {high}")
        if log and low <= 0:
            raise SearchSpaceError(f"parameter '{self.name}': a log range needs low > 0")
        self._check_supported(low)
        self._check_supported(high)
        if self.kind == "float" and low == high:
            return float(low)
        return dataclasses.replace(self, low=low, high=high, log=log)

    def _checked_value(self, value: Any) -> Any:
        if self.kind == "categorical":
            if value not in self.allowed:
                raise SearchSpaceError(
                    f"parameter '{self.name}': {value!r} is not one of {list(self.allowed)}"
                )
            return value
        number = _number(self.name, value)
        self._check_supported(number)
        if self.kind == "int":
            if number != int(number):
                raise SearchSpaceError(f"parameter '{self.name}' takes an integer")
            return int(number)
        return number

    def _check_supported(self, number: float) -> None:
        # Caught here, before the study exists: past this point a value such as dropout 1.5
        # fails every trial with a torch traceback.
        if self.supported is not None and number not in self.supported:
            raise SearchSpaceError(
                f"parameter '{self.name}': {number:g} is outside its supported range "
                f"{self.supported}"
            )


def _number(name: str, value: Any) -> float:
    # YAML 1.1 reads "1e-4" as a string; accept it as the number the user meant.
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SearchSpaceError(f"parameter '{name}': {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise SearchSpaceError(f"parameter '{name}': {value!r} is not a finite number")
    return number


@dataclass(frozen=True)
class SearchSpace:
    """The tunable parameters of a task, and those the user fixed."""

    params: tuple[Param, ...]
    """Parameters sampled by Optuna, in sampling order (conditions refer to earlier ones)."""
    defaults: Mapping[str, Any]
    """Default value of every hyperparameter (the task's dataclass defaults)."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Parameters fixed by the user; not sampled."""

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def narrowed(self, overrides: Mapping[str, Any] | None) -> SearchSpace:
        """A copy with the user's overrides applied; unknown names are an error."""
        if not overrides:
            return self
        known = {p.name: p for p in self.params}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise SearchSpaceError(
                f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        params: list[Param] = []
        fixed = dict(self.fixed)
        for param in self.params:
            if param.name not in overrides:
                params.append(param)
                continue
            result = param.narrowed(overrides[param.name])
            if isinstance(result, Param):
                params.append(result)
            else:
                fixed[param.name] = result
        return SearchSpace(params=tuple(params), defaults=self.defaults, fixed=fixed)

    def _active(self, param: Param, values: Mapping[str, Any]) -> bool:
        if param.when is None:
            return True
        other, accepted = param.when
        return values.get(other, self.defaults.get(other)) in accepted

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Every hyperparameter's value for this trial: sampled, fixed or default."""
        values: dict[str, Any] = {**self.defaults, **self.fixed}
        for param in self.params:
            if self._active(param, values):
                values[param.name] = param.suggest(trial)
        return values

    def signature(self) -> dict[str, dict[str, Any]]:
        """What the space searches, JSON-ready: each parameter's distribution, by name (what
        a study records, so that a rerun that searches another space is refused)."""
        return {p.name: _distribution(p) for p in self.params}

    def default_trial_params(self, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Params of the task's default configuration (with `changes` to some of its values),
        as Optuna would record them.

        A value outside a narrowed range is left out, so the sampler picks that one.
        """
        chosen: dict[str, Any] = {**self.defaults, **(changes or {})}
        values = {**chosen, **self.fixed}
        params: dict[str, Any] = {}
        for param in self.params:
            if self._active(param, values) and param.contains(chosen[param.name]):
                params[param.name] = chosen[param.name]
        return params


def _distribution(param: Param) -> dict[str, Any]:
    if param.kind == "categorical":
        return {"kind": "categorical", "choices": list(param.choices)}
    found = {"kind": param.kind, "low": param.low, "high": param.high, "log": param.log}
    if param.kind == "int":
        found["step"] = param.step or 1
    return found


def signature_of(distributions: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`SearchSpace.signature` of Optuna distributions (those a study's trials recorded)."""
    found = {}
    for name, d in distributions.items():
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            found[name] = {"kind": "categorical", "choices": list(d.choices)}
        elif isinstance(d, optuna.distributions.IntDistribution):
            found[name] = {"kind": "int", "low": d.low, "high": d.high, "log": d.log}
            found[name]["step"] = d.step
        elif isinstance(d, optuna.distributions.FloatDistribution):
            found[name] = {"kind": "float", "low": d.low, "high": d.high, "log": d.log}
    return found


def space_changes(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]], complete: bool
) -> list[str]:
    """How `new` differs from `old` (signatures), in words: a parameter whose distribution
    changed, and, when `old` is complete (recorded whole, not gathered from trials that
    may not have sampled every conditional parameter), one added or removed."""
    old, new = json.loads(json.dumps(old)), json.loads(json.dumps(new))
    changes = [
        f"{name}: {_shown(old[name])} -> {_shown(new[name])}"
        for name in new
        if name in old and old[name] != new[name]
    ]
    if complete:
        changes += [f"{name} added" for name in new if name not in old]
        changes += [f"{name} removed" for name in old if name not in new]
    return changes


def _shown(distribution: Mapping[str, Any]) -> str:
    if distribution["kind"] == "categorical":
        return "(" + ", ".join(map(str, distribution["choices"])) + ")"
    low, high = distribution["low"], distribution["high"]
    scale = " log" if distribution.get("log") else ""
    step = f" step {distribution['step']}" if distribution.get("step", 1) != 1 else ""
    return f"{distribution['kind']} [{low:g}, {high:g}]{scale}{step}"


def fields_of(dataclass_type: type, source: Any) -> dict[str, Any]:
    """The values `source` holds for the fields of `dataclass_type` (e.g. the network
    architecture part of a task's hyperparameters)."""
    return {f.name: getattr(source, f.name) for f in dataclasses.fields(dataclass_type)}


def space_from(hparams_type: type, params: list[Param]) -> SearchSpace:
    """A search space whose defaults are the hyperparameter dataclass's own defaults.
    TypeError (a mistake in a task definition) for a Param that names no field, or a field
    without a default (`check_space`)."""
    if not dataclasses.is_dataclass(hparams_type):
        raise TypeError(f"{hparams_type!r} is not a dataclass: its fields are the hyperparameters")
    space = SearchSpace(params=tuple(params), defaults=dataclass_defaults(hparams_type))
    check_space(space, hparams_type)
    return space


def dataclass_defaults(hparams_type: type) -> dict[str, Any]:
    """Each field's default (its factory's value); fields without one are left out."""
    defaults = {}
    for f in dataclasses.fields(hparams_type):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


def check_space(space: SearchSpace, hparams_type: type) -> None:
    """TypeError, naming the dataclass's file and line, unless every Param names one of its
    fields and every field has a default: the default configuration (trial 0) trains the
    defaults, and a field without one would have no value in any trial."""
    fields = [f.name for f in dataclasses.fields(hparams_type)]
    for param in space.params:
        if not isinstance(param, Param):
            raise TypeError(f"a search space holds tunelab.Param entries, not {param!r}")
    unknown = [p.name for p in space.params if p.name not in fields]
    cls = hparams_type.__name__
    if unknown:
        close = {n: difflib.get_close_matches(n, fields, n=1) for n in unknown}
        hints = "".join(f" ('{n}': did you mean '{m[0]}'?)" for n, m in close.items() if m)
        raise SpaceDefinitionError(
            f"Param {', '.join(map(repr, unknown))} names no field of {cls}{hints}; its "
            f"fields: {', '.join(fields)}"
        )
    defaults = dataclass_defaults(hparams_type)
    missing = [n for n in fields if n not in defaults]
    if missing:
        raise SpaceDefinitionError(
            f"field(s) {', '.join(missing)} of {cls} need a default: the default configuration "
            "(trial 0) trains every field's default",
            hparams_type,
        )


class SpaceDefinitionError(TypeError):
    """A search space that does not fit its hyperparameter dataclass (a mistake in a task's
    definition); `defined` is what to point the user at when no frame of theirs raised it:
    the dataclass (a field without a default), or None (the task's own definition)."""

    def __init__(self, message: str, defined: Any = None) -> None:
        super().__init__(message)
        self.defined = defined
