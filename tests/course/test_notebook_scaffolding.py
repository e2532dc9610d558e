"""Every notebook tells the learner what it teaches, what it needs and how long it takes, and ends with questions
whose answers are in notebooks/solutions/."""
import json
import re

import pytest

from paths import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))


def markdown(path):
    return ["".join(cell["source"]) for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_first_cell_states_objectives_prerequisites_and_time(path):
    first = markdown(path)[0]
    assert first.startswith("# "), "the first cell is the title"
    for label in ("**Objectives.**", "**Prerequisites.**", "**Time.**"):
        assert first.count(label) == 1, f"{path.name}: {label} once in the first cell"
    objectives = first.split("**Objectives.**")[1].split("**Prerequisites.**")[0]
    assert len(re.findall(r"^- ", objectives, flags=re.M)) >= 2, "at least two objectives, as a list"
    assert re.search(r"\*\*Time\.\*\* about \d+ minutes", first), "a time in minutes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_check_your_understanding_has_questions_and_answers(path):
    cells = [c for c in markdown(path) if c.startswith("## Check your understanding")]
    assert len(cells) == 1, f"{path.name}: one 'Check your understanding' section"
    questions = re.findall(r"^\d+\. ", cells[0], flags=re.M)
    assert 3 <= len(questions) <= 5
    answers = ROOT / "notebooks" / "solutions" / f"{path.stem}_answers.md"
    assert f"notebooks/solutions/{answers.name}" in cells[0]
    assert answers.is_file(), f"{answers.name} is missing"
    assert len(re.findall(r"^\*\*", answers.read_text(), flags=re.M)) >= len(questions), "an answer per question"
