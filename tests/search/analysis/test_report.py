"""The HTML report: every figure of the right study, edge-of-range warnings, importances,
the pruning summary, and the report logged to the study's MLflow parent run."""

import json
import random

import optuna
import plotly.io
import pytest
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tunelab.search.adapters.tracking import StudyTracker
from tunelab.search.analysis.importance import dashboard_note, rung_importance
from tunelab.search.analysis.report import (
    DEFAULT_EVALUATOR_LABEL,
    FIGURE_TITLES,
    edge_warnings,
    pruning_summary,
    write_report,
)

EPOCHS = 4
SPACE = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5),
    "blocks": IntDistribution(1, 8),
    "optimizer": CategoricalDistribution(["sgd", "adam"]),
}


def _interior(rng: random.Random) -> dict:
    """Parameters well inside every range (log range for lr)."""
    return {
        "lr": 10 ** rng.uniform(-3.4, -1.6),
        "dropout": rng.uniform(0.1, 0.4),
        "blocks": rng.randint(3, 6),
        "optimizer": rng.choice(["sgd", "adam"]),
    }


def _study(name, n_complete, storage=None, best=None, tracking_uri=None) -> optuna.Study:
    """A tunelab-like study built by hand: complete trials, one pruned, one failed."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    spec = {
        "task": "cnn",
        "dataset": "digits",
        "max_epochs": EPOCHS,
        "sampler": "tpe",
        "pruner": "median",
        "tracking_uri": tracking_uri,
    }
    study.set_user_attr("tunelab.spec", json.dumps(spec))
    study.set_user_attr("tunelab.metric", "val_accuracy")
    rng = random.Random(0)
    for _ in range(n_complete):
        params = _interior(rng)
        value = 0.5 + 0.4 * params["dropout"] + 0.01 * rng.random()
        _add(study, params, value, EPOCHS)
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params=_interior(rng),
            distributions=SPACE,
            intermediate_values={1: 0.1},
        )
    )
    study.add_trial(create_trial(state=TrialState.FAIL, params=_interior(rng), distributions=SPACE))
    if best is not None:
        _add(study, best, 0.99, EPOCHS)
    return study


def _add(study, params, value, epochs_run):
    curve = {e: value * e / epochs_run for e in range(1, epochs_run + 1)}
    study.add_trial(
        create_trial(
            params=params,
            distributions=SPACE,
            value=value,
            intermediate_values=curve,
            user_attrs={"tunelab.epochs_run": epochs_run, "tunelab.best_epoch": epochs_run},
        )
    )


def test_edge_warning_fires_for_a_best_value_at_the_edge(tmp_path):
    best = {"lr": 0.095, "dropout": 0.0, "blocks": 1, "optimizer": "sgd"}
    study = _study("edgy", 5, best=best)

    warnings = edge_warnings(study.best_trial)
    assert {(w.name, w.side) for w in warnings} == {
        ("lr", "upper"),
        ("blocks", "lower"),
        ("dropout", "lower"),
    }
    assert [w.name for w in warnings if w.at_floor] == ["dropout"]  # 0 = off: nothing below
    # log scale: 2e-4 is 0.1% of [1e-4, 0.1] linearly but a tenth of the way on a log scale
    inside = create_trial(params={"lr": 2e-4}, distributions={"lr": SPACE["lr"]}, value=1.0)
    assert edge_warnings(inside) == []
    middle = create_trial(
        params={"dropout": 0.25}, distributions={"dropout": SPACE["dropout"]}, value=1.0
    )
    assert edge_warnings(middle) == []

    files = write_report(study, tmp_path / "out")
    page = files.html.read_text()
    summary = page[page.index("id='summary'") : page.index("id='history'")]
    box = summary[summary.index("class='warning'") :]
    box = box[: box.index("</div>")]
    assert "widen it" in box
    assert "lr = 0.095 sits at the upper edge of its range [0.0001, 0.1, log scale]" in box
    assert "blocks = 1 sits at the lower edge" in box
    assert "dropout" not in box and "dropout = 0 sits at the floor of its range" in summary
    assert "optimizer =" not in summary  # categorical: no range to widen


def test_report_holds_every_figure_of_its_own_study(storage_url, tmp_path):
    _study("study-alpha-3c1", 6, storage=storage_url)
    _study("study-beta-9d7", 6, storage=storage_url)
    alpha = optuna.load_study(study_name="study-alpha-3c1", storage=storage_url)

    files = write_report(alpha, tmp_path / "alpha")
    page = files.html.read_text()
    for key, title in FIGURE_TITLES.items():
        assert f"{title}: study-alpha-3c1" in page, key
        assert f'id="figure-{key}"' in page, key
        figure = plotly.io.read_json(tmp_path / "alpha" / "figures" / f"{key}.json")
        assert figure.layout.title.text == f"{title}: study-alpha-3c1"
    assert "study-beta-9d7" not in page
    # one copy of plotly.js, inlined in the report (offline, and in MLflow's artifact view)
    assert page.count("* plotly.js v") == 1
    copies = [p for p in (tmp_path / "alpha").rglob("*") if p.is_file() and p != files.html]
    assert all("plotly.js v" not in p.read_text() for p in copies)
    assert sorted(p.suffix for p in copies) == [".json"] * len(FIGURE_TITLES)
    # Importances: Optuna's default evaluator beside fANOVA, each over the searched params.
    assert DEFAULT_EVALUATOR_LABEL in page and "fANOVA" in page
    assert "Importances need" not in page
    # Pruning: 6 complete x 4 epochs + 1 pruned after 1 + 1 failed after 0, of 8 x 4; only the
    # pruned trial's 3 epochs are saved, the failed trial's 4 are not
    assert "would have trained 8 &times; 4 = <b>32</b> epochs; they trained <b>25</b>" in page
    assert "Pruning saved <b>3</b> (9%), early stopping <b>0</b>" in page
    assert "4 epochs (12%) were not trained because configurations stopped on their own" in page
    # every trial in a table, with why it ended
    table = page[page.index("id='trials'") :]
    assert table.count("<tr class='state-") == 8
    assert "<tr class='state-pruned'><td>6</td><td>pruned</td>" in table
    assert "by the pruner" in table and "state-failed" in table


@pytest.mark.parametrize("n_complete", [0, 2])
def test_few_complete_trials_give_notes_instead_of_figures(n_complete, tmp_path):
    study = _study("sparse", n_complete)
    page = write_report(study, tmp_path / "out").html.read_text()
    expected = f"Importances on complete trials need at least 4; this study has {n_complete}."
    assert expected in page
    assert 'id="figure-importances"' not in page
    assert 'id="figure-intermediate"' in page and 'id="figure-timeline"' in page
    if n_complete == 0:
        assert "No complete trial yet" in page and 'id="figure-history"' not in page


def test_importance_at_a_rung_counts_pruned_trials(tmp_path):
    study = optuna.create_study(study_name="rungs", direction="maximize")
    rng = random.Random(3)
    for number in range(14):  # lr decides the value at the first rung; blocks does not
        params = _interior(rng)
        first = params["lr"] * 10
        complete = number < 2
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE if complete else TrialState.PRUNED,
                value=first + 0.1 if complete else None,
                params=params,
                distributions=SPACE,
                intermediate_values={1000: first, 2000: first + 0.1} if complete else {1000: first},
            )
        )
    rung, why_not = rung_importance(study)
    assert rung is not None and why_not == ""
    assert (rung.step, rung.trials, rung.pruned) == (1000, 14, 12)
    assert max(rung.importances, key=rung.importances.get) == "lr"
    assert rung.label("images") == "fANOVA at 1,000 training images (14 trials, 12 pruned)"

    page = write_report(study, tmp_path / "out").html.read_text()
    assert 'id="figure-importances"' in page and "fANOVA at epoch 1000" in page
    assert "Importances on complete trials need at least 4; this study has 2." in page
    note = dashboard_note(["14 configurations tried"], rung, why_not, "images")
    assert "| lr |" in note and "14 configurations tried" in note

    few, why_not = rung_importance(study, min_trials=15)
    assert few is None and "the most any rung has is 14" in why_not


def test_pruning_summary_counts_pruning_and_early_stopping():
    study = _study("pruned", 2)
    _add(study, _interior(random.Random(1)), 0.7, epochs_run=2)  # stopped early
    summary = pruning_summary(study, "epochs", EPOCHS)
    assert (summary.trials, summary.budget, summary.steps_run) == (5, 20, 4 + 4 + 1 + 0 + 2)
    assert summary.early_stopped == 1
    assert summary.by_state == {"complete": (3, 10), "pruned": (1, 1), "stopped on its own": (1, 0)}
    assert (summary.saved_by_pruning, summary.saved_by_early_stopping) == (3, 2)
    assert (summary.not_trained, summary.unknown) == (4, 1)
    assert summary.saved_fraction == pytest.approx(5 / 20)


def test_a_continuation_counts_once_with_what_it_trained_itself():
    study = optuna.create_study(direction="maximize")
    params = _interior(random.Random(2))
    paused = {"tunelab.paused_at": 1}
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params=params,
            distributions=SPACE,
            intermediate_values={1: 0.5},
            user_attrs=paused,
        )
    )
    study.add_trial(
        create_trial(
            params=params,
            distributions=SPACE,
            value=0.8,
            intermediate_values={1: 0.5, 2: 0.6, 3: 0.8},
            user_attrs={
                "tunelab.original_trial": 0,
                "tunelab.resume_of": 0,
                "tunelab.resumed_at_step": 1,
                "tunelab.steps_run": 3,
            },
        )
    )
    summary = pruning_summary(study, "epochs", EPOCHS)
    assert (summary.trials, summary.budget, summary.steps_run) == (1, 4, 3)
    assert summary.by_state == {"complete": (1, 3)}
    assert summary.saved_by_early_stopping == 1


def test_the_report_of_a_diverged_study_says_so_and_saves_nothing(tmp_path):
    study = optuna.create_study(study_name="nan", direction="maximize")
    study.set_user_attr("tunelab.metric", "val_accuracy")
    study.set_user_attr("tunelab.spec", json.dumps({"task": "cnn", "max_epochs": 2}))
    for _ in range(2):
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params=_interior(random.Random(4)),
                distributions=SPACE,
                user_attrs={"tunelab.fail_reason": "non-finite train_loss (nan) in epoch 1"},
            )
        )
    page = write_report(study, tmp_path / "out").html.read_text()
    summary = page[page.index("id='summary'") : page.index("id='history'")]
    assert "the search diverged: all 2 configurations that ended stopped on" in summary
    assert "2 pruned: non-finite train_loss" in summary
    pruning = page[page.index("id='pruning'") :]
    assert "Pruning saved <b>0</b> (0%), early stopping <b>0</b> (0%" in pruning
    assert "(100%) were not trained because configurations stopped on their own" in pruning
    assert "2 configurations ended before their first rung" in pruning
    assert "saving <b>" not in page


@pytest.mark.slow  # the real CLI
def test_cli_report_is_logged_to_the_parent_run(cli, tmp_path, tracking_uri):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = _study("logged", 5, storage=storage, tracking_uri=tracking_uri)
    tracker = StudyTracker(tracking_uri, "logged")
    parent = tracker.attach_parent(study, {})
    tracker.close("FINISHED")

    result = cli(["report", "logged", "--storage", storage, "--out", "rep"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"logged to MLflow run {parent}" in result.stdout
    assert (tmp_path / "rep" / "report.html").is_file()
    client = MlflowClient(tracking_uri)
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/figures"} <= logged
    figures = {a.path for a in client.list_artifacts(parent, "report/figures")}
    assert {f"report/figures/{key}.json" for key in FIGURE_TITLES} <= figures

    missing = cli(["report", "nope", "--storage", storage], cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"tunelab: error: no study 'nope' in {storage} (studies: logged)"
    ]
