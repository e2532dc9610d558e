"""Every exercise has a checker, every checker an exercise, a tested worked solution and a tested hint.

The notebooks call ``check_*`` functions of notebooks/exercises.py; each tests/course/test_exercises*.py module
lists its checkers in ``CHECKS`` ((notebook, check, solution function)) and their typical mistakes in ``MISTAKES``
((check, wrong function, hint regex)). The modules are found by glob, so a chapter that adds its own is covered.
"""
import importlib.util
import inspect
import json
import re

import pytest

import exercises          # notebooks/exercises.py (pytest's pythonpath: pyproject.toml)
from paths import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
TEST_MODULES = sorted((ROOT / "tests" / "course").glob("test_exercises*.py"))
NO_EXERCISES = {"12_parameter_explorer"}      # things to try with the widgets instead

CHECKERS = sorted(name for name, obj in vars(exercises).items()
                  if name.startswith("check_") and inspect.isfunction(obj) and obj.__module__ == exercises.__name__)


def calls(path):
    """The check_* names the notebook's code cells call (a definition ``def check_x(`` is not a call)."""
    code = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]
                     if cell["cell_type"] == "code")
    return set(re.findall(r"(?<!def )\b(check_\w+)\s*\(", code))


CALLS = {path.stem: calls(path) for path in NOTEBOOKS}


def load(path):
    spec = importlib.util.spec_from_file_location(f"_exercise_lists_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lists():
    """CHECKS and MISTAKES of every test_exercises*.py module, by module name."""
    modules = {path.stem: load(path) for path in TEST_MODULES}
    for name, module in modules.items():
        assert hasattr(module, "CHECKS") and hasattr(module, "MISTAKES"), f"{name} defines CHECKS and MISTAKES"
    return {name: (module.CHECKS, module.MISTAKES) for name, module in modules.items()}


def test_the_checkers_are_found():
    assert len(CHECKERS) >= 10 and "check_pieces_to_text" in CHECKERS
    assert "test_exercises" in [path.stem for path in TEST_MODULES]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_calls_only_existing_checkers(path):
    missing = sorted(CALLS[path.stem] - set(CHECKERS))
    assert not missing, f"{path.name} calls checkers that notebooks/exercises.py lacks: {missing}"
    if path.stem not in NO_EXERCISES:
        assert CALLS[path.stem], f"{path.name} has no exercise calling a checker"


@pytest.mark.parametrize("check", CHECKERS)
def test_the_checker_is_used_by_a_notebook(check):
    users = [stem for stem, names in CALLS.items() if check in names]
    assert users, f"{check} is in notebooks/exercises.py but no notebook calls it"


@pytest.mark.parametrize("check", CHECKERS)
def test_the_checker_has_a_tested_solution_and_a_tested_hint(check, lists):
    checked = [(module, entry) for module, (checks, _) in lists.items() for entry in checks if entry[1] == check]
    assert checked, f"{check} is in no CHECKS of tests/course/test_exercises*.py: its worked solution is untested"
    for module, (notebook, _, solution) in checked:
        assert check in CALLS.get(notebook, set()), \
            f"{module}: CHECKS says {check} belongs to {notebook}, which does not call it"
        solutions = ROOT / "notebooks" / "solutions" / f"{notebook}.py"
        assert re.search(rf"^def {solution}\(", solutions.read_text(encoding="utf-8"), flags=re.M), \
            f"{module}: no function {solution} in {solutions.name}"
    hinted = [module for module, (_, mistakes) in lists.items() for entry in mistakes if entry[0] == check]
    assert hinted, f"{check} is in no MISTAKES of tests/course/test_exercises*.py: none of its hints is tested"
