"""Function-style objectives: tune a training loop of one's own, kept as it is written.

    import tunelab

    @tunelab.objective(metric="val_accuracy", direction="maximize")
    def train(trial: tunelab.TrialHandle):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True, default=1e-3)
        ...                                   # your data, DataLoaders, split, model, optimizer
        for epoch in range(trial.resume(model, optimizer), 20):
            ...                               # your epoch
            trial.report({"val_accuracy": accuracy, "train_loss": loss})

`tunelab run my_module:train` (or `tunelab.run(train)`) tunes it like any task.

How it goes through the one loop: `FunctionTask` is a `Task` whose training is the user's
function. The shared loop (`runner.Objective`, over `training.TrialTraining`) drives it as any
task, one "batch" per report: `build` starts the function on a thread of its own and lets it
run up to `trial.resume(...)`, where the function names the objects that make its state;
every `train_step` lets it run to its next `trial.report(...)` and hands the loop the
reported metrics (train_* as the step's, the rest as `evaluate`'s scores). The two threads
take turns, never run at once: while the loop scores, checkpoints and asks the scheduler, the
function waits inside `report`. So the loop's rungs, checkpoints, pruning, pauses and
continuations (successive halving), early stopping, deadline, divergence checks, MLflow curves
and true status, best weights and `checkpoint/best.pt` are the loop's own, unchanged: a rung
is one report (`--rung-images N`: every N reports), the budget `--max-epochs` reports,
`--patience` counts reports. When the loop ends the trial (pruned, paused, early-stopped, at
its budget or deadline), the blocked `report` raises `TrialEnded` in the function, which
unwinds it (let it propagate: it is a BaseException, so `except Exception` does not catch it).

What a function-style objective can do: suggest parameters define-by-run (`suggest_float`,
`suggest_int`, `suggest_categorical`, Optuna's arguments plus a `default=` for the default
configuration, trial 0) or declare `Param`s for keyword parameters of the function
(`@tunelab.objective(..., space=[...])`, defaults from its signature); report at any point
of its loop (at the same points in every trial: reports are what trials are compared at);
resume after a crash, a pause or a promotion exactly where its last report left it (the
objects given to `resume` are checkpointed at every report, with torch's random state, and
`resume` returns how many reports the trial had made); add files to its MLflow run
(`log_artifacts`); run in several workers (a function in an importable module); and a
time-planned budget (`--timeout` alone), which times the default configuration in reports and
cuts trials in reports.

What it cannot do: tunelab never sees its data, so `--dataset` and `--limit-train` do not
apply, nothing is augmented or batched by tunelab, and a study has one objective (no
`--objectives` or `--constraint` on static metrics); the trial's value is its best report's
metric (the weights of that report, when the function gave its model to `resume`, are the
trial's best weights); the trial ends at its budget's last report without the function
returning (code after its loop runs only when its own loop ends first). `tunelab evaluate`
retrains the best configuration by calling the function again, once per seed, to the best
trial's best report, and records what it reports there as test_* metrics: a function that has
a test split reads `trial.evaluating` and reports its test scores then (otherwise they are its
validation scores again, and the evaluation's run says so). The dry run before a new study
runs the default configuration to its first report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import optuna
import torch

from tunelab.objectives.base import EXAMPLE_ROWS, Finalization, Parts, ServingModel, Task
from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.data import OWN_DATA, DataBundle, Split
from tunelab.objectives.metrics import MetricInfo
from tunelab.objectives.space import Param, SearchSpace
from tunelab.objectives.training import EndOfTraining

_log = logging.getLogger(__name__)
MARK = "__tunelab_objective__"
"""The attribute `@tunelab.objective` sets on the function it declares."""
REPORTS = "tunelab.reports"
"""Name, in a trial's `Parts.schedulers`, of the record of its reports (checkpointed)."""
REPORT_KEY = "tunelab.report"
"""Entry of a best-weights snapshot saying which report those weights were scored at."""
JOIN_S = 60.0
"""How long a stopped function may take to unwind (its own `finally` blocks) before the loop
goes on without it."""
ENDED = "the trial ended here (pruned, paused, early-stopped, or at its budget)"


class TrialEnded(BaseException):
    """Raised inside a function-style objective by its handle when the loop has ended the
    trial (pruned, paused, early-stopped, at its budget or deadline): let it propagate. A
    BaseException, like KeyboardInterrupt, so that `except Exception` does not catch it."""


class _SpaceKnown(BaseException):
    """Ends the pass that learns a function's search space (at its first non-suggestion)."""


@dataclass(frozen=True)
class ObjectiveInfo:
    """What `@tunelab.objective` declares about a function."""

    function: Callable[..., Any]
    """The user's function; called with a `TrialHandle` (and declared parameters)."""
    metric: str
    """The reported metric the study optimizes."""
    direction: Literal["maximize", "minimize"]
    """Whether a higher or a lower metric is better."""
    name: str
    """The task's name (the study's default name; the function's own by default)."""
    space: tuple[Param, ...] | None
    """Declared parameters, passed as keyword arguments (None: suggested define-by-run)."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Defaults of the declared parameters: the function's own, from its signature."""


def objective(
    metric: str,
    direction: Literal["maximize", "minimize"],
    *,
    name: str | None = None,
    space: Sequence[Param] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a function as a function-style objective (see the module): the study
    optimizes `metric`, one of the metrics it reports, in `direction`. `space`: `Param`s of
    keyword parameters of the function, whose defaults are the default configuration (else
    the function suggests its parameters through its handle). The function is returned as
    it is; `tunelab run module:function` or `tunelab.run(function)` tunes it."""
    if direction not in ("maximize", "minimize"):
        raise TypeError(f"direction must be 'maximize' or 'minimize', not {direction!r}")
    if not isinstance(metric, str) or not metric:
        raise TypeError(f"metric must be the name of a reported metric, not {metric!r}")

    def declare(function: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(function):
            raise TypeError(f"@tunelab.objective declares a function, not {function!r}")
        params = None if space is None else tuple(space)
        defaults = {} if params is None else _declared_defaults(function, params)
        info = ObjectiveInfo(function, metric, direction, name or function.__name__, params)
        setattr(function, MARK, dataclasses.replace(info, defaults=defaults))
        return function

    return declare


def _declared_defaults(function: Callable[..., Any], params: tuple[Param, ...]) -> dict:
    """The defaults of the keyword parameters `params` name; TypeError (at the decorator's
    line) for a Param that names no parameter, or one without a default."""
    for param in params:
        if not isinstance(param, Param):
            raise TypeError(f"space holds tunelab.Param entries, not {param!r}")
    signature = inspect.signature(function)
    accepted = [p for n, p in signature.parameters.items() if n != next(iter(signature.parameters))]
    names = {p.name: p for p in accepted}
    unknown = [p.name for p in params if p.name not in names]
    if unknown:
        raise TypeError(
            f"Param {', '.join(map(repr, unknown))} names no parameter of "
            f"{function.__name__} (its parameters after the trial: {', '.join(names) or 'none'})"
        )
    missing = [p.name for p in params if names[p.name].default is inspect.Parameter.empty]
    if missing:
        raise TypeError(
            f"parameter(s) {', '.join(missing)} of {function.__name__} need a default: the "
            "default configuration (trial 0) trains it"
        )
    return {p.name: names[p.name].default for p in params}


def is_objective(obj: Any) -> bool:
    """Whether `obj` is a function declared with `@tunelab.objective`."""
    return isinstance(getattr(obj, MARK, None), ObjectiveInfo)


def objective_function(obj: Any) -> Callable[..., Any]:
    """The declared function itself."""
    return getattr(obj, MARK).function


def function_task(obj: Any) -> type[FunctionTask]:
    """The Task class of a declared function (made once per function)."""
    info: ObjectiveInfo = getattr(obj, MARK)
    made = getattr(info.function, "__tunelab_task__", None)
    if made is None:
        made = type(
            f"{info.name}_objective",
            (FunctionTask,),
            {
                "name": info.name,
                "metric": info.metric,
                "direction": info.direction,
                "objective": info,
                "__module__": info.function.__module__,
                "__doc__": f"The function-style objective {info.function.__qualname__}.",
            },
        )
        info.function.__tunelab_task__ = made  # type: ignore[attr-defined]
    return made


# -- what the function sees -------------------------------------------------------------------


class TrialHandle:
    """A function-style objective's trial: what it suggests, resumes, reports and logs."""

    def __init__(self, driver: _Driver) -> None:
        self._driver = driver

    @property
    def number(self) -> int:
        """The trial's number in its study."""
        return self._driver.number

    @property
    def params(self) -> dict[str, Any]:
        """The configuration so far: declared parameters and those suggested."""
        return dict(self._driver.values)

    @property
    def evaluating(self) -> bool:
        """Whether `tunelab evaluate` is retraining the best configuration (report your test
        split's scores then, under the same names; they are recorded as test_*)."""
        self._driver.evaluating_read = True
        return self._driver.evaluating

    @property
    def device(self) -> torch.device:
        """The study's training device (--device), should the function want it."""
        return self._driver.device

    @property
    def seed(self) -> int:
        """The trial's seed (torch's global generator is seeded with it before the call)."""
        return self._driver.seed

    def suggest_float(
        self, name: str, low: float, high: float, *, log: bool = False, default: float | None = None
    ) -> float:
        """A float in [low, high] (Optuna's `suggest_float`); `default`: its value in the
        default configuration (else the middle of the range, geometric when `log`)."""
        return self._driver.suggest(_param(name, "float", low=low, high=high, log=log), default)

    def suggest_int(
        self,
        name: str,
        low: int,
        high: int,
        *,
        step: int = 1,
        log: bool = False,
        default: int | None = None,
    ) -> int:
        """An int in [low, high] (Optuna's `suggest_int`); `default` as `suggest_float`."""
        param = _param(name, "int", low=low, high=high, log=log, step=step)
        return self._driver.suggest(param, default)

    def suggest_categorical(self, name: str, choices: Sequence[Any], *, default: Any = None) -> Any:
        """One of `choices` (Optuna's `suggest_categorical`); `default`: the default
        configuration's (else the first choice)."""
        return self._driver.suggest(_param(name, "categorical", choices=tuple(choices)), default)

    def resume(self, *state: Any) -> int:
        """Name the objects that make the trial's state (a model, its optimizer, a scheduler,
        a GradScaler: anything with `state_dict` and `load_state_dict`), once, before the
        first report. They are checkpointed at every report; when the trial takes up a
        checkpoint (a retry after a crash, a paused trial continued) their states are loaded
        here. Returns how many reports the trial had made (0 on a fresh trial): the epoch to
        start from, when it reports once per epoch. The first module given is the model
        `tunelab evaluate` registers."""
        return self._driver.resume(state)

    def report(self, metrics: Mapping[str, Any]) -> None:
        """Report metrics at this point of the loop (numbers or one-element tensors): the
        objective's metric among them, train_* for training curves. The study may end the
        trial here: then this raises `TrialEnded` (let it propagate)."""
        self._driver.report(metrics)

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        """Files for the trial's MLflow run, by relative path (logged at the next report)."""
        self._driver.log_artifacts(files)


def _param(name: str, kind: str, **spec: Any) -> Param:
    """A suggestion as the Param it is, with Optuna's checks of its arguments."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a parameter's name is text, not {name!r}")
    if kind == "categorical":
        choices = spec["choices"]
        optuna.distributions.CategoricalDistribution(choices)  # raises for an empty list
        return Param(name, "categorical", choices=choices)
    if kind == "float":
        optuna.distributions.FloatDistribution(spec["low"], spec["high"], log=spec["log"])
        return Param(name, "float", float(spec["low"]), float(spec["high"]), log=spec["log"])
    optuna.distributions.IntDistribution(
        spec["low"], spec["high"], log=spec["log"], step=spec["step"]
    )
    step = None if spec["step"] == 1 else int(spec["step"])
    return Param(name, "int", int(spec["low"]), int(spec["high"]), log=spec["log"], step=step)


def default_value(param: Param, default: Any = None) -> Any:
    """`default` (checked against the range), or the middle of the range: geometric on a log
    scale, on the step grid for ints; the first choice of a categorical."""
    if default is not None:
        if not param.contains(default):
            raise ValueError(f"default {default!r} of '{param.name}' is outside its range")
        return default
    if param.kind == "categorical":
        return param.choices[0]
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    middle = math.sqrt(low * high) if param.log else (low + high) / 2
    if param.kind == "float":
        return middle
    step = param.step or 1
    return int(low + round((middle - low) / step) * step)


class _Driver:
    """What a handle does, by mode: learning the space, or running a trial."""

    number = 0
    evaluating = False
    evaluating_read = False
    device = torch.device("cpu")
    seed = 0

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def suggest(self, param: Param, default: Any) -> Any:
        raise NotImplementedError

    def resume(self, state: tuple[Any, ...]) -> int:
        raise NotImplementedError

    def report(self, metrics: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        raise NotImplementedError


class _Discovery(_Driver):
    """The pass that learns a define-by-run function's search space: every suggestion takes
    its default and is recorded; the first call that is no suggestion ends the pass."""

    def __init__(self) -> None:
        super().__init__()
        self.params: list[Param] = []

    def suggest(self, param: Param, default: Any) -> Any:
        if param.name in self.values:
            return self.values[param.name]
        self.params.append(param)
        self.values[param.name] = default_value(param, default)
        return self.values[param.name]

    def resume(self, state: tuple[Any, ...]) -> int:
        raise _SpaceKnown

    def report(self, metrics: Mapping[str, Any]) -> None:
        raise _SpaceKnown

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        raise _SpaceKnown


# -- the configuration the loop sees ----------------------------------------------------------


class FunctionConfig(Mapping[str, Any]):
    """A function's trial configuration as the loop logs it (a mapping of its parameters):
    the declared parameters, then whatever the function has suggested so far."""

    def __init__(
        self, trial: optuna.trial.BaseTrial, space: SearchSpace, declared: Mapping[str, Any]
    ) -> None:
        self.trial, self.space, self.declared = trial, space, dict(declared)

    def _values(self) -> dict[str, Any]:
        return {**self.declared, **self.trial.params}

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


class _Reports:
    """A trial's reported scores, one dict per report: checkpointed with its state (a
    resumed trial knows how far it was, and the scores of its best weights)."""

    def __init__(self) -> None:
        self.scores: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"scores": [dict(s) for s in self.scores]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scores = [{k: float(v) for k, v in s.items()} for s in state["scores"]]


@dataclass
class FunctionParts(Parts):
    """A function's trial as the loop holds it: the objects given to `resume`, its reports,
    and the running function. A best-weights snapshot carries the report it was scored at,
    so that the scores of weights loaded back (the best, at the trial's end) are known."""

    run: _FunctionRun | None = None
    """The function, on its thread."""
    loaded_report: int | None = None
    """The report whose weights were loaded last (None: the latest weights)."""

    @property
    def reports(self) -> _Reports:
        return self.schedulers[REPORTS]

    def module_state(self) -> dict[str, dict[str, torch.Tensor]]:
        state = super().module_state()
        state[REPORT_KEY] = {"index": torch.tensor(len(self.reports.scores) - 1)}
        return state

    def load_module_state(self, state: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        super().load_module_state(state)
        self.loaded_report = int(state[REPORT_KEY]["index"])


# -- the function on its thread ---------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    """What the function's thread hands the loop: it resumed, reported, returned or raised."""

    kind: Literal["resume", "report", "returned", "raised"]
    state: tuple[Any, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: BaseException | None = None


class _FunctionRun(_Driver):
    """One trial's function on a thread of its own, in turns with the loop (see the module):
    the function runs while the loop waits for its next event, then waits in its handle for
    the loop's reply."""

    def __init__(
        self,
        task: FunctionTask,
        config: FunctionConfig,
        device: torch.device,
        evaluating: bool,
    ) -> None:
        super().__init__()
        self.task, self.config = task, config
        self.number = config.trial.number
        self.device, self.evaluating = device, evaluating
        self.seed = torch.initial_seed()  # TrialTraining seeded it for this trial
        self.values = dict(config.declared)
        self.parts: FunctionParts | None = None
        self.example: torch.Tensor | None = None
        """A few rows of the model's first input (the registered model's input example)."""
        self.artifacts: dict[str, bytes] = {}
        self.running = False
        """Whether the function runs now (the loop waits for it), rather than waiting."""
        self.ended = False
        self._to_loop: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._to_function: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._main, name=f"tunelab-trial-{self.number}", daemon=True
        )

    # -- the loop's side ---------------------------------------------------------------------

    def start(self) -> _Event:
        self.running = True
        self.thread.start()
        return self._event()

    def go_on(self) -> _Event:
        """Let the function run to its next event."""
        self.running = True
        self._to_function.put(None)
        return self._event()

    def _event(self) -> _Event:
        event = self._to_loop.get()  # Ctrl-C interrupts this wait: then the function runs on
        self.running = False
        return event

    def stop(self) -> None:
        """End the function: a waiting one unwinds at once (TrialEnded in its handle) and is
        waited for; a running one (the loop was interrupted while it trained) unwinds at its
        next handle call, without holding the loop up."""
        if self.ended:
            return
        self.ended = True
        if not self.thread.is_alive():
            return
        waiting = not self.running
        self._to_function.put(TrialEnded(ENDED))
        if waiting:
            self.thread.join(JOIN_S)
            if self.thread.is_alive():
                _log.warning(
                    "trial %s: its function did not unwind within %g s", self.number, JOIN_S
                )

    # -- the function's side -----------------------------------------------------------------

    def _main(self) -> None:
        try:
            # declared parameters (`space=`) come as keyword arguments; none otherwise
            self.task.objective.function(TrialHandle(self), **self.config.declared)
        except TrialEnded:
            return  # the loop ended the trial; it waits for nobody's event
        except BaseException as error:  # the function's own failure: the loop raises it
            self._to_loop.put(_Event("raised", error=error))
        else:
            self._to_loop.put(_Event("returned"))

    def _turn(self, event: _Event) -> None:
        """Hand the loop `event` and wait for its reply (TrialEnded: the trial ended)."""
        if self.ended:
            raise TrialEnded(ENDED)
        self._to_loop.put(event)
        reply = self._to_function.get()
        if reply is not None:
            raise reply

    def suggest(self, param: Param, default: Any) -> Any:
        if self.ended:
            raise TrialEnded(ENDED)
        name, space = param.name, self.config.space
        if name in self.values:
            return self.values[name]
        if name in space.fixed:  # fixed by the study (--config params)
            value = space.fixed[name]
        else:
            known = {p.name: p for p in space.params}
            # the study's (maybe narrowed) distribution; one the space never saw (a branch
            # the default configuration does not take) goes to Optuna as the function asks
            value = known.get(name, param).suggest(self.config.trial)
        self.values[name] = value
        return value

    def resume(self, state: tuple[Any, ...]) -> int:
        if self.parts is not None:
            raise RuntimeError("trial.resume(...) is called once per trial, before its loop")
        if not state:
            raise TypeError("trial.resume(...) needs the objects that make the trial's state")
        for obj in state:
            if not (callable(getattr(obj, "state_dict", None)) and hasattr(obj, "load_state_dict")):
                raise TypeError(
                    "trial.resume(...) takes objects with state_dict() and load_state_dict() "
                    f"(a model, an optimizer...), not {type(obj).__name__}"
                )
        self._turn(_Event("resume", state=state))
        assert self.parts is not None
        return len(self.parts.reports.scores)

    def report(self, metrics: Mapping[str, Any]) -> None:
        if self.parts is None:
            raise RuntimeError(
                "trial.report(...) before trial.resume(model, optimizer, ...): name the "
                "trial's state first, so that a retried or continued trial resumes it"
            )
        values = _numbers(metrics)
        metric = self.task.metric
        if metric not in values:
            raise KeyError(
                f"trial.report(...) got no '{metric}' (the objective's metric); it got "
                f"{', '.join(values) or 'nothing'}"
            )
        self._turn(_Event("report", metrics=values))

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        for path, content in files.items():
            if not isinstance(content, (bytes, bytearray)):
                raise TypeError(f"artifact {path!r} must be bytes, not {type(content).__name__}")
            self.artifacts[str(path)] = bytes(content)

    def capture_example(self, module: torch.nn.Module) -> None:
        """Keep a few rows of the model's first input (for the registered model)."""

        def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            if self.example is None and args and isinstance(args[0], torch.Tensor):
                self.example = args[0][:EXAMPLE_ROWS].detach().to("cpu", copy=True)
            handle.remove()

        handle = module.register_forward_pre_hook(hook)


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"trial.report(...) takes a mapping of names to numbers, not {metrics!r}")
    values = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise TypeError(f"metric '{name}' is a tensor of {value.numel()} values: one")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"metric '{name}' must be a number, not {value!r}") from None
        values[str(name)] = float(value)
    return values


# -- the task the loop drives -----------------------------------------------------------------


class OwnData(DataBundle):
    """The data set of a function-style objective: the function loads its own. One
    placeholder row per split, so that the loop's batches are its reports."""

    def summary(self) -> str:
        return f"{OWN_DATA}: the objective loads its own data (tunelab counts its reports)"


def own_data() -> OwnData:
    one = Split(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))
    val = Split(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))
    return OwnData(OWN_DATA, one, val, val, num_classes=1, class_names=("-",))


class FunctionTask(Task):
    """A Task whose training is a user's function (see the module)."""

    objective: ClassVar[ObjectiveInfo]
    """The function and what its decorator declares."""
    hparams_type = FunctionConfig

    def __init__(self) -> None:
        self._space: SearchSpace | None = None
        self._last: _FunctionRun | None = None

    def search_space(self) -> SearchSpace:
        """The declared parameters, or those the function suggests on its way to its first
        `resume` or `report` (learned by calling it once, every suggestion at its default)."""
        if self._space is None:
            info = self.objective
            if info.space is not None:
                self._space = SearchSpace(params=info.space, defaults=dict(info.defaults))
            else:
                self._space = _discover(info.function)
        return self._space

    def metrics(self) -> tuple[MetricInfo, ...]:
        return (MetricInfo(self.metric, self.direction, description="the function's report"),)

    def suggest(self, trial: optuna.trial.BaseTrial, space: SearchSpace) -> FunctionConfig:
        declared = {}
        if self.objective.space is not None:
            names = {p.name for p in self.objective.space}
            declared = {k: v for k, v in space.suggest(trial).items() if k in names}
        return FunctionConfig(trial, space, declared)

    def batch_size(self, hp: Any) -> int:
        return 1  # one "batch" is one report

    def build(
        self, hp: FunctionConfig, data: DataBundle, device: torch.device, budget: TrialBudget
    ) -> Parts:
        # `tunelab evaluate` retrains on a bundle that re-splits the study's (`source`)
        run = _FunctionRun(self, hp, device, evaluating=data.source is not None)
        self._last = run
        event = run.start()
        if event.kind == "raised":
            assert event.error is not None
            raise event.error
        if event.kind == "returned":
            raise RuntimeError(
                f"{self.objective.function.__qualname__} returned before trial.resume(...) "
                "and its first trial.report(...)"
            )
        modules, optimizers, others = {}, {}, {}
        for obj in event.state:
            if isinstance(obj, torch.nn.Module):
                modules["model" if not modules else f"module_{len(modules)}"] = obj
            elif isinstance(obj, torch.optim.Optimizer):
                optimizers["optimizer" if not optimizers else f"optimizer_{len(optimizers)}"] = obj
            else:
                others[f"state_{len(others)}"] = obj
        parts = FunctionParts(
            modules=modules,
            optimizers=optimizers,
            schedulers={**others, REPORTS: _Reports()},
            run=run,
        )
        run.parts = parts
        if modules:
            run.capture_example(next(iter(modules.values())))
        return parts

    def train_step(self, parts, hp, x, y, ctx) -> dict[str, torch.Tensor]:
        run = parts.run
        event = run.go_on()
        if event.kind == "raised":
            assert event.error is not None
            raise event.error
        if event.kind == "returned":
            raise EndOfTraining
        if event.kind != "report":
            raise RuntimeError(f"unexpected {event.kind} from the function")
        parts.reports.scores.append(dict(event.metrics))
        parts.loaded_report = None
        return {k: torch.tensor(v) for k, v in event.metrics.items() if k.startswith("train_")}

    def evaluate(self, parts, hp, data, split, ctx) -> dict[str, float]:
        """The scores reported with the weights the trial holds now: the last report's, or,
        after the loop loaded a best-weights snapshot back, that report's."""
        scores = parts.reports.scores
        if not scores:
            raise RuntimeError("evaluated before the function's first report")
        index = parts.loaded_report if parts.loaded_report is not None else len(scores) - 1
        return {k: v for k, v in scores[index].items() if not k.startswith("train_")}

    def epoch_artifacts(self, parts, hp, data, ctx) -> dict[str, bytes]:
        files, parts.run.artifacts = parts.run.artifacts, {}
        return files

    def finalize(self, parts, hp, data) -> Finalization:
        parts.run.stop()
        files, parts.run.artifacts = parts.run.artifacts, {}
        return Finalization(artifacts=files)

    def release(self, parts: Parts) -> None:
        if isinstance(parts, FunctionParts) and parts.run is not None:
            parts.run.stop()

    def trial_tags(self, data: DataBundle) -> dict[str, str]:
        if data.source is None or self._last is None:
            return {}
        # `tunelab evaluate` records the function's reports as test_* metrics: say what they
        # were scored on
        scored = (
            "the function's test split (it reads trial.evaluating)"
            if self._last.evaluating_read
            else "the function's validation split (it does not read trial.evaluating)"
        )
        return {"tunelab.function_scores": scored}

    def serving_model(self, parts: Parts, data: DataBundle, seed: int) -> ServingModel:
        run = parts.run if isinstance(parts, FunctionParts) else None
        if not parts.modules or run is None or run.example is None:
            raise NotImplementedError(
                f"{self.objective.function.__qualname__} gave trial.resume(...) no model "
                "called with one tensor: nothing to register"
            )
        module = next(iter(parts.modules.values())).to("cpu").eval()
        return ServingModel(module, run.example, kind="model")


def _discover(function: Callable[..., Any]) -> SearchSpace:
    """Call `function` with a handle that records its suggestions (each at its default) and
    stops it at its first call that is no suggestion."""
    discovery = _Discovery()
    # the pass ends at the function's first non-suggestion; torch's random state is kept
    with torch.random.fork_rng(devices=[]), contextlib.suppress(_SpaceKnown):
        function(TrialHandle(discovery))
    return SearchSpace(params=tuple(discovery.params), defaults=dict(discovery.values))
