"""Smoke runs of the benchmarks: each one runs as a real subprocess (`python benchmarks/X.py`)
on tiny data with a tiny budget, and must exit 0 and print its result lines. The lines are
matched on their shape, never on their figures: figures belong to benchmarks run on a quiet
machine (README, Performance). `benchmarks/chaos.py` has tests of its own.

The runs are what costs here (a `tunelab run` process spends 5 to 10 s of CPU starting), so
one module fixture starts every run the selected tests need when the module starts, in two
lanes, each lane one run after the other (LANES). Every run gets OMP_NUM_THREADS=1, and the
searches and overhead.py one single-threaded worker (ONE_CORE), so that the two lanes share
the two cores without oversubscribing them. One lane runs the time-budgeted searches (pareto.py,
then budget.py), the other the single-process benchmarks beside them, then workers.py, which
starts several `tunelab` processes at once, only once the searches are over (budget.py's
search line): beside it, or with two threads per search, a 25-s search spent its budget
starting and trained nothing. Each test waits for its own run only; the tests come in the order
their runs end, so that no one test waits for most of the module.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUM = r"[-+]?(?:\d[\d,]*(?:\.\d+)?|nan|inf)"
"""A printed figure (its value is not checked)."""
SEARCH_SECONDS = 25
"""`--timeout` of the smoke searches (one worker, in the `tunelab run` process): on two quiet
cores it spends about 12 s starting (imports, data, throughput calibration) before its first
trial. At 20 s the default configuration completes alone (budget.py's gain over it is then 0
by construction); at 25 s a few more configurations run and the multi-objective fronts have
points (pareto.py's hypervolumes). With `--workers auto` (two worker processes) nothing
completed below 30 s."""
LANES = (("pareto", "budget"), ("overhead", "steps", "fid", "augment", "workers", "search"))
"""The runs of each lane, in order (search.py last: its searches start once the other
lane's are over, and beside no other benchmark's)."""
SEARCHES = {"pareto": 2, "budget": 1}
"""The runs of time-budgeted searches, in their order, and the lines each has printed once its
searches are over (pareto.py: one per search; budget.py: its search's line)."""
AFTER_SEARCHES = ("workers",)
"""The runs that wait for the searches to end: they start several processes at once."""
RUN_TIMEOUT_S = 600
ONE_CORE = ("--workers", "1", "--threads", "1")
"""Every `tunelab run` of the searches: one worker process of one thread. (`--workers 1` alone
gives that worker every core's thread, whatever OMP_NUM_THREADS says; two threads on a busy
machine made the default CNN's step ten times slower than one.)"""


def smoke(benchmark: str):
    """Marks a test slow (it waits for a subprocess) and names the benchmark run it reads."""

    def mark(test):
        test.benchmark = benchmark
        return pytest.mark.slow(test)

    return mark


def benchmark_args(postgres_server: str | None, weights: Path | None, tmp: Path) -> dict:
    """Each benchmark's tiny arguments."""
    fid = ["--dataset", "digits", "--sizes", "32", "--inception-n", "2"]
    fid += ["--cache-dir", str(tmp / "fid-cache")]
    if weights is not None:
        fid += ["--weights", str(weights)]
    search = ("--dataset", "digits", "--seconds", str(SEARCH_SECONDS), *ONE_CORE)
    return {
        # the limit scenario runs all three sides: the search, the default alone, the baseline
        "budget": ("--scenarios", "limit", "--seeds", "0", *search),
        "pareto": search,
        "workers": ("--trials", "2", "--epochs", "1", "--backends", "postgresql", "--pg")
        + (postgres_server or "",),
        "overhead": ("--dataset", "digits", "--epochs", "1", "--repeats", "1", "--threads", "1"),
        "steps": ("--dataset", "digits", "--steps", "5", "--device", "cpu"),
        "fid": tuple(fid),
        "augment": ("--dataset", "digits", "--images", "256", "--repeats", "1"),
        # the embedded mnist5k as the base (digits' 8x8 images are too small to clutter)
        "search": (
            *("--base", "mnist5k", "--datasets", "few", "--seeds", "0", "--workers", "1"),
            *("--seconds", str(SEARCH_SECONDS + 5), "--sides", "tunelab", "optuna", "random"),
            *("--cache-dir", str(tmp / "search-data"), "--plot", str(tmp / "search-plots")),
        ),
    }


def env() -> dict[str, str]:
    """This environment without storage or tracking URIs, one thread per process."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TUNELAB_STORAGE", "MLFLOW_"))}
    extra = {"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    return keep | extra


def run_benchmark(
    name: str,
    args: tuple[str, ...],
    folder: Path,
    on_line: Callable[[int], None] = lambda count: None,
) -> subprocess.CompletedProcess:
    """Run benchmarks/NAME.py in `folder`, calling `on_line(lines so far)` at each line."""
    folder.mkdir(parents=True)
    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args]
    with open(folder / "stderr.txt", "w+") as stderr:  # a file: a full pipe would block it
        process = subprocess.Popen(
            command, cwd=folder, env=env(), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        watchdog = threading.Timer(RUN_TIMEOUT_S, process.kill)
        watchdog.start()
        lines = []
        try:
            for line in process.stdout:
                lines.append(line)
                on_line(len(lines))
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        stderr.seek(0)
        return subprocess.CompletedProcess(
            command, process.returncode, "".join(lines), stderr.read()
        )


class Runs:
    """The benchmark runs of this module, started at once in their lanes."""

    def __init__(self, args: dict[str, tuple[str, ...]], wanted: set[str], tmp: Path) -> None:
        self.args = args
        self.searched = threading.Event()
        """Set once the searches are over (AFTER_SEARCHES wait for it)."""
        searches = [n for n in SEARCHES if n in wanted]
        if not searches:
            self.searched.set()
        self.lanes = [ThreadPoolExecutor(1) for _ in LANES]
        self.futures: dict[str, Future] = {}
        for lane, names in zip(self.lanes, LANES, strict=True):
            for name in (n for n in names if n in wanted):
                last_search = bool(searches) and name == searches[-1]
                waits = name in AFTER_SEARCHES
                self.futures[name] = lane.submit(self._run, name, tmp, last_search, waits)

    def _run(self, name: str, tmp: Path, last_search: bool, waits: bool):
        if waits:
            self.searched.wait()

        def on_line(count: int) -> None:
            if last_search and count >= SEARCHES[name]:
                self.searched.set()

        try:
            return run_benchmark(name, self.args[name], tmp / name, on_line)
        finally:
            if last_search:
                self.searched.set()

    def output(self, name: str) -> str:
        """The run's stdout, once it has exited 0 (the test fails with its stderr if not)."""
        done = self.futures[name].result()
        if done.returncode != 0:
            pytest.fail(
                f"benchmarks/{name}.py {' '.join(self.args[name])} exited "
                f"{done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
            )
        return done.stdout

    def close(self) -> None:
        self.searched.set()
        for lane in self.lanes:
            lane.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> Iterator[Runs]:
    items = [i for i in request.session.items if i.module is request.module]
    wanted = {getattr(i.function, "benchmark", None) for i in items}
    weights = None
    with contextlib.suppress(pytest.skip.Exception):  # where absent, its test skips
        weights = request.getfixturevalue("inception_weights")
    server = None
    if "workers" in wanted:  # the local PostgreSQL, required as for the storage tests: the
        # fixture's server URL, checked by making a database (workers.py makes its own)
        server = request.getfixturevalue("postgres").new("tunelab_smoke").rsplit("/", 1)[0]
    tmp = tmp_path_factory.mktemp("benchmarks")
    started = Runs(benchmark_args(server, weights, tmp), wanted, tmp)
    yield started
    started.close()


def lines_matching(output: str, *patterns: str) -> None:
    """Every pattern matches a whole line of the output."""
    lines = output.splitlines()
    for pattern in patterns:
        assert any(re.fullmatch(pattern, line) for line in lines), (
            f"no line matches {pattern!r} in:\n{output}"
        )


@smoke("overhead")
def test_overhead(runs):
    """Both sides on digits for one epoch, once: the bare loop (the task's model, budget and
    schedule) and a whole one-trial study through `tunelab.run`; the schema warm-up line,
    the repeat's line with both sides and the trial's own time, the threads line, and the
    best-of and ratio lines."""
    lines_matching(
        runs.output("overhead"),
        rf"first study in fresh databases \(schemas \+ 1 epoch\): {NUM} s wall",
        rf"repeat 0: bare {NUM} s wall / {NUM} s CPU, tunelab {NUM} s wall "
        rf"\(its trial {NUM} s\) / {NUM} s CPU",
        r"digits, float32 on the CPU, torch threads: bare \d+, tunelab \d+ "
        r"\(one worker, this process\)",
        *(
            rf"best of 1, 1 epochs, {clock}: bare {NUM} s, tunelab {NUM} s, ratio {NUM}"
            for clock in ("wall", "CPU")
        ),
        rf"ratio tunelab / bare: {NUM} wall, {NUM} CPU",
    )


@smoke("steps")
def test_steps(runs):
    """Five timed steps per variant of the trial loop's own steps on digits, on the CPU: the
    header, every variant's line, and the profile's summary line and operator table."""
    variants = ("default \\(the trial loop\\)", "default, bf16 autocast", "no augmentation")
    step = (
        rf"{{}}\s+(?:fp32|bf16) batch\s+\d+:\s+{NUM} ms/step, 10-epoch trial\s+{NUM} s "
        rf"\(set-up\s+{NUM} s\); val accuracy after {NUM}"
    )
    output = runs.output("steps")
    lines_matching(
        output,
        r"digits on CPU, torch .+: 5 steps per variant",
        *(step.format(variant) for variant in (*variants, "batch 256")),
        rf"profile of 50 steps \(fp32\): {NUM} kernel launches and {NUM} synchronisations "
        r"per step",
    )
    assert "aten::" in output  # the profiler's table of operators


@smoke("fid")
def test_fid_classifier(runs):
    """The fd_classifier side on digits at N = 32: the classifier (trained into a fresh
    cache), the real reference, and the cost line of each step."""
    lines_matching(
        runs.output("fid"),
        rf"digits: .*; torch .+, \d+ CPU threads, load average {NUM}",
        rf"fd_classifier on cpu: classifier ready in {NUM} s \(val accuracy {NUM}, .+\)",
        rf"  real reference \(270 val images, once per process\): {NUM} s",
        rf"  N=\s+32: total\s+{NUM} s = generate {NUM} \+ features {NUM} \+ FD {NUM} \+ KID "
        rf"{NUM}  \({NUM} ms/sample\)",
    )


@smoke("fid")
def test_fid_inception(runs, inception_weights):
    """The fid_inception side of the same run (skipped without the weights): Inception
    features of 2 generated images measured, the rest at N = 32 extrapolated, and the
    closing ratio line."""
    lines_matching(
        runs.output("fid"),
        r"fid_inception on cpu: extractor loaded in .+",
        rf"  features of 2 generated images: {NUM} s \({NUM} ms/image, measured\)",
        r"  real reference: 270 val images would take .+ \(extrapolated\); .+",
        rf"  N=\s+32: total\s+{NUM} s = .+ \({NUM} ms/sample, extrapolated\)",
        rf"cpu: inception/classifier cost per sample at N=32: {NUM}x "
        r"\(Inception features extrapolated\)",
    )


@smoke("augment")
def test_augment(runs):
    """256 digits images, once: the batched side and the DataLoader + PIL side with 0 and 2
    loader workers, each line saying the threads it ran on (the workers' as they reported
    them), and the ratio line naming the threads of both sides."""
    threads = r"this process, \d+ torch thread\(s\)"
    lines_matching(
        runs.output("augment"),
        r"256 digits images 1x8x8, rotation .*, batch 128, torch threads \d+",
        rf"batched \(tunelab\)\s+{NUM} s\s+{NUM} images/s  \({threads}\)",
        rf"DataLoader \+ PIL, 0 workers\s+{NUM} s\s+{NUM} images/s  \({threads}\)",
        rf"DataLoader \+ PIL, 2 workers\s+{NUM} s\s+{NUM} images/s  "
        r"\(2 worker process\(es\), torch threads \d+/\d+\)",
        rf"ratio batched / fastest DataLoader: {NUM}x \(batched on \d+ torch thread\(s\); "
        r"fastest: DataLoader \+ PIL, \d workers, .+\)",
    )


@smoke("pareto")
def test_pareto(runs):
    """Both multi-objective searches on digits (`--pruner auto` and `none`), 25 s, one worker:
    each one's line (trials, pruned, budget saved, front, span, hypervolume), each front's
    points, the goals line and the hypervolume ratio. Where the machine is loaded a front may
    be empty (the ratio is then nan): the lines' shape is asserted, not their figures."""
    search = (
        rf"\s*{{}}: \d+ trials, \d+ pruned \(\d+%\), {NUM}% of the full budget saved; front \d+ "
        rf"trials, \d+ distinct points, spanning {NUM}x in params, hypervolume {NUM} \(\d+ s\)"
    )
    lines_matching(
        runs.output("pareto"),
        *(search.format(pruner) for pruner in ("auto", "none")),
        *(rf"\s*{pruner} front \(val_accuracy@params\): .*" for pruner in ("auto", "none")),
        r"reference point: val_accuracy 0\.9, params 10\*\*6; goals: .*",
        rf"hypervolume pruned / unpruned: {NUM} \(goal >= 0\.95\)",
    )


@smoke("budget")
def test_budget(runs):
    """The limit scenario on digits (seed 0, 1,000 training images), 25 s, one worker: the
    real `tunelab run --timeout 25` search, the default configuration alone (`tunelab run
    --n-trials 1`) and the pytorch_simple baseline, one line each, and the scenario's closing
    line with the gain over the default alone and the configurations ratio. The gain over the
    same study's default appears where that trial completed in time: not asserted, since on
    a loaded machine the search may not reach a rung before its time is up."""
    side = (
        rf"limit1k-s0-{SEARCH_SECONDS}s\s+{{}}\s+wall\s+{NUM} s\s+\d+ configurations,\s+\d+ "
        rf"past their first rung,\s+\d+ complete; best val accuracy (?:{NUM}|-) on [\d,]+ images.*"
    )
    lines_matching(
        runs.output("budget"),
        *(side.format(name) for name in ("tunelab", "default", "optuna")),
        rf"limit: tunelab mean best {NUM}(?:, {NUM} pp over its default configuration "
        rf"\(same study, same trial budget\))?, {NUM} pp over the default configuration alone "
        rf"at the default epoch budget; optuna mean best {NUM}; configurations past their "
        rf"first rung, tunelab / optuna: {NUM}",
    )


@smoke("workers")
def test_workers(runs):
    """Two one-epoch trials per setup, on PostgreSQL only (SQLite's setups are the same code on
    another storage, and double the run): its setups' lines (1 and 2 one-core workers) and its
    steady-state ratio line."""
    rate = rf"{NUM} trials/hour end to end,\s+{NUM} in steady state"
    lines_matching(
        runs.output("workers"),
        *(
            rf"postgresql\s+{workers} worker\(s\), 1 thread\(s\) each:\s+{rate}"
            for workers in (1, 2)
        ),
        rf"steady-state scaling, 2 workers / 1 worker, one core each, postgresql: {NUM}x",
    )


@smoke("search")
def test_search(runs):
    """The `few` member of the family built from mnist5k (600 training images), one seed,
    one worker, 30 s a search: the header, the default's, tunelab's and both plain Optuna
    sides' lines, each side's summary line over the seeds, and the plot's PNG. (Ray Tune's
    side installs Ray into an environment of its own: it is left to the benchmark's own
    runs.)"""
    output = runs.output("search")
    best = rf"best val_accuracy (?:{NUM}|-)"
    lines_matching(
        output,
        r"30 s a search, 1 workers of one thread, seeds 0, base mnist5k: 1 data sets x 1 seeds"
        r" x 3 searches",
        rf"few\s+seed 0 default\s+{best}\s+\d+ configurations,\s+\d+ complete, in trials\s+"
        rf"{NUM}%",
        *(
            rf"few\s+seed 0 {side}\s+{best}(?: \({NUM} pp\))?\s+\d+ configurations,\s+\d+ "
            rf"complete, in trials\s+{NUM}%"
            for side in ("tunelab", "optuna", "random")
        ),
        *(
            rf"few\s+{side}\s+best (?:{NUM}|-) over 1 seeds, gain over the default "
            rf"(?:{NUM} pp \(1 seed\)|-), \d+ configurations, in trials {NUM}%"
            for side in ("default", "tunelab", "optuna", "random")
        ),
        r"few\s+plot .+search-few\.png",
    )
    png = output.split("plot ")[-1].strip()
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
