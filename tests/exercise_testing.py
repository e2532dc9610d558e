"""What every test of notebook exercise checkers asks, written once.

A module of ``tests/course/test_exercises*.py`` lists its checkers in ``CHECKS`` ((notebook, check, solution
function)) and their typical mistakes in ``MISTAKES`` ((check, wrong function, hint regex)), then takes its tests
from :func:`checker_tests`: the worked solution passes, the stub points to it, each mistake gets its hint.
"""
import importlib.util

import pytest

import exercises          # notebooks/exercises.py (pytest's pythonpath: pyproject.toml)
from paths import ROOT

SOLUTIONS = ROOT / "notebooks" / "solutions"


def solutions(name):
    """The worked solutions of one notebook, notebooks/solutions/<name>.py, as a module."""
    spec = importlib.util.spec_from_file_location(f"solutions_{name}", SOLUTIONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub(*args, **kwargs):
    raise NotImplementedError


def passes(check, fn, capsys):
    check(fn)
    return capsys.readouterr().out.strip() == "correct!"


def _name(value):
    return getattr(value, "__name__", None)


def checker_tests(checks, mistakes):
    """The three parametrized tests over ``checks`` and ``mistakes``; assign them to test_* names in the module."""
    @pytest.mark.parametrize("notebook, check, solution", checks)
    def worked_solution_is_correct(notebook, check, solution, capsys):
        assert passes(getattr(exercises, check), getattr(solutions(notebook), solution), capsys)

    @pytest.mark.parametrize("notebook, check, solution", checks)
    def stub_points_to_the_solution(notebook, check, solution, capsys):
        getattr(exercises, check)(stub)     # must not raise: the stored notebooks run with the stubs
        assert capsys.readouterr().out.strip() == f"not solved yet — see notebooks/solutions/{notebook}.py"

    @pytest.mark.parametrize("check, wrong, message", mistakes, ids=_name)
    def typical_mistake_gets_its_hint(check, wrong, message):
        with pytest.raises(AssertionError, match=message):
            getattr(exercises, check)(wrong)

    return worked_solution_is_correct, stub_points_to_the_solution, typical_mistake_gets_its_hint
