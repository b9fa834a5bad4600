"""Editors and static tools see the real files: every `tunelab` import resolves statically, and
the public names keep their real types behind the lazy `__getattr__`s.

The package-dir mapping (`tunelab.search` is the folder `search/`, ...) is invisible to static
tools under setuptools' default editable install, an import hook they do not run; the Makefile
installs in strict editable mode (a tree of links under build/) instead. These checks fail under
the default mode, so it cannot come back unnoticed. Reinstall (`make`) after adding a module.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tunelab
import tunelab.objectives

REPO = Path(__file__).resolve().parents[1]
SKIPPED = (".venv", "build", "mlruns", "data", "reports", "checkpoints")
"""Top-level folders of the checkout that hold no project code (environments, outputs)."""
PROJECT_FOLDERS = ("models", "objectives", "search", "tunelab", "tests", "benchmarks", "examples")
_MISSING = re.compile(r'^Import "(?P<module>[\w.]+)" could not be resolved')
_NOT_AN_ATTRIBUTE = re.compile(r'is not a known attribute of module "(?P<module>[\w.]+)"')


def _public_names() -> dict[str, list[str]]:
    """Module -> the names it exports lazily."""
    return {
        "tunelab": [n for n in tunelab.__all__ if n != "__version__"],
        "tunelab.objectives": list(tunelab.objectives.__all__),
    }


def _pyright_config(tmp_path: Path, probe: Path) -> Path:
    config = {
        "include": [str(REPO), str(probe)],
        "exclude": [*(str(REPO / name) for name in SKIPPED), f"{REPO}/**/.*", "**/__pycache__"],
        # the repository root as an editor opened there sees it: its folders are on the path too
        "executionEnvironments": [{"root": str(REPO)}],
        "pythonPlatform": "Linux",
        "typeCheckingMode": "off",  # import resolution only (and reveal_type)
        "reportMissingImports": "error",
        "reportAttributeAccessIssue": "error",
    }
    path = tmp_path / "pyrightconfig.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def _unresolved_tunelab_imports(diagnostics: list[dict]) -> list[str]:
    found = []
    for d in diagnostics:
        line = d.get("range", {}).get("start", {}).get("line", -1) + 1
        where = (
            f"{Path(d['file']).relative_to(REPO)}:{line}"
            if d["file"].startswith(str(REPO))
            else d["file"]
        )
        message = d["message"]
        missing = _MISSING.match(message)
        unknown = _NOT_AN_ATTRIBUTE.search(message)
        if missing and missing["module"].split(".")[0] == "tunelab":
            found.append(f"{where}: {message}")
        elif d.get("rule") == "reportAttributeAccessIssue":
            text = Path(d["file"]).read_text().splitlines()[line - 1] if line > 0 else ""
            from_tunelab = text.lstrip().startswith("from tunelab")
            if (unknown and unknown["module"].startswith("tunelab")) or (
                "is unknown import symbol" in message and from_tunelab
            ):
                found.append(f"{where}: {message}")
    return found


@pytest.mark.slow  # basedpyright runs as a process (its bundled Node.js): about 20 s on 2 cores
def test_a_static_resolver_finds_every_tunelab_import_and_the_public_types(tmp_path):
    public = _public_names()
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import tunelab\nimport tunelab.objectives\n\n"
        + "".join(
            f"reveal_type({module}.{name})\n" for module, names in public.items() for name in names
        )
    )
    command = [sys.executable, "-m", "basedpyright", "--outputjson"]
    command += ["--project", str(_pyright_config(tmp_path, probe)), "--pythonpath", sys.executable]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "No module named basedpyright" not in result.stderr, "pip install -e '.[dev]'"
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    diagnostics = report["generalDiagnostics"]

    unresolved = _unresolved_tunelab_imports(diagnostics)
    assert not unresolved, (
        f"{len(unresolved)} unresolved tunelab import(s) or module attribute(s). All of them? A "
        "default editable install hides the package-dir mapping: run `make` (strict editable "
        "mode), again after adding a module\n" + "\n".join(unresolved)
    )
    # it really read the project: every Python file in its folders (and the probe)
    files = {p for folder in PROJECT_FOLDERS for p in (REPO / folder).rglob("*.py")}
    assert report["summary"]["filesAnalyzed"] >= len(files) + 1, report["summary"]

    revealed = {}
    for d in diagnostics:
        if d["file"] == str(probe) and d["severity"] == "information":
            match = re.match(r'Type of "(?P<name>[\w.]+)" is "(?P<type>.*)"$', d["message"], re.S)
            if match:
                revealed[match["name"]] = match["type"]
    expected = {f"{module}.{name}" for module, names in public.items() for name in names}
    assert set(revealed) == expected, sorted(expected ^ set(revealed))
    untyped = sorted(name for name, kind in revealed.items() if kind in ("Any", "Unknown"))
    assert not untyped, f"typed as Any (add them to the TYPE_CHECKING imports): {untyped}"
    assert revealed["tunelab.StudySpec"] == "type[StudySpec]"
    assert revealed["tunelab.Task"] == "type[Task]"
    assert revealed["tunelab.objectives.Objective"] == "type[Objective]"
    assert re.fullmatch(r"int|Literal\[\d+\]", revealed["tunelab.TASK_API_VERSION"])


def test_jedi_goes_to_the_public_names_real_files():
    """Go-to-definition from the repository root, as an editor opened there does it (jedi in
    this process: no subprocess)."""
    import jedi

    code = "import tunelab\nimport tunelab.objectives\n"
    targets = {
        "tunelab.StudySpec": "search/spec.py",
        "tunelab.Task": "objectives/base.py",
        "tunelab.run": "tunelab/api.py",
        "tunelab.objectives.Objective": "objectives/runner.py",
        "tunelab.search.spec.SpecError": "search/spec.py",
    }
    lines = list(targets)
    script = jedi.Script(
        code + "\n".join(lines) + "\n",
        path=str(REPO / "probe.py"),
        project=jedi.Project(REPO),
        environment=jedi.InterpreterEnvironment(),
    )
    found = {}
    for number, expression in enumerate(lines, start=3):
        definitions = script.goto(number, len(expression), follow_imports=True)
        found[expression] = sorted(
            str(Path(d.module_path).resolve().relative_to(REPO))
            for d in definitions
            if d.module_path
        )
    assert found == {name: [path] for name, path in targets.items()}


def _type_checking_imports(init: Path) -> dict[str, str]:
    """Name -> module of the `from M import N as N` lines under `if TYPE_CHECKING:`."""
    names = {}
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.unparse(statement)
                for alias in statement.names:
                    assert alias.asname == alias.name, f"re-export it as itself: {alias.name}"
                    names[alias.name] = statement.module
    return names


def test_the_type_checking_imports_are_the_lazy_names():
    """The TYPE_CHECKING imports beside each lazy `__getattr__` name exactly what it loads, from
    where it loads it (and `import tunelab` itself imports none of them)."""
    assert _type_checking_imports(REPO / "tunelab" / "__init__.py") == tunelab._HOME
    assert _type_checking_imports(REPO / "objectives" / "__init__.py") == {
        name: f"tunelab.objectives.{module}" for name, module in tunelab.objectives._HOME.items()
    }
