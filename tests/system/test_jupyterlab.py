"""The course as a new user meets it: `jupyter lab notebooks/`, open a notebook, Run All, look.

A real JupyterLab server and Debian's chromium (driven by playwright). nbval already checks every output;
this checks what nbval cannot: that the README's command serves the notebooks, that they open and run from
the browser with the kernel JupyterLab picks, and that nothing lands on stderr or as an error. The notebook is
saved from the browser and read back (JupyterLab renders only the cells in view, so the page alone can't tell).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import browser

from paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    browser.sync_playwright()                               # fails on CI, skips elsewhere, before starting a server
    port = free_port()
    home = tmp_path_factory.mktemp("jupyter-home")          # no user settings, no workspace state
    work = tmp_path_factory.mktemp("course")                # a copy: JupyterLab autosaves what it runs
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), OMP_NUM_THREADS="1")
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
    server = subprocess.Popen(
        [jupyter, "lab", "notebooks/", "--no-browser", "--allow-root", f"--port={port}", "--ServerApp.token=",
         "--ServerApp.password=", "--ServerApp.ip=127.0.0.1", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        raise RuntimeError("jupyter lab did not start: " + server.stderr.read().decode()[-2000:])
    yield url, work / "notebooks"
    server.terminate()
    server.wait(timeout=30)


def test_tour_runs_in_jupyterlab(lab, tmp_path):
    url, folder = lab
    notebook = folder / "00_tour.ipynb"
    fresh = json.loads(notebook.read_text())                  # as a learner gets it after "Clear All Outputs"
    for cell in fresh["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    notebook.write_text(json.dumps(fresh))
    saved_before = notebook.stat().st_mtime

    def kernel_states() -> list[str]:        # the server's view: one session for the notebook once it opens
        sessions = json.load(urllib.request.urlopen(f"{url}/api/sessions", timeout=5))
        return [s["kernel"]["execution_state"] for s in sessions if s["path"].endswith(notebook.name)]

    def wait_until(condition, seconds: float, what: str):
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
            time.sleep(0.5)

    with browser.sync_playwright()() as p:
        chromium = browser.launch(p)
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/lab/tree/{notebook.name}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            wait_until(lambda: kernel_states() == ["idle"], 120, "the kernel to start")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            states = []

            def finished() -> bool:                            # busy once, then idle for 5 checks in a row
                states.append(kernel_states())
                return ["busy"] in states and all(s == ["idle"] for s in states[-5:])

            wait_until(lambda: kernel_states() == ["busy"], 60, "Run All to start the kernel")
            wait_until(finished, 300, "Run All to finish")
            page.get_by_role("menuitem", name="File", exact=True).click()
            page.get_by_text("Save Notebook", exact=True).first.click()
            wait_until(lambda: notebook.stat().st_mtime != saved_before, 30, "the notebook to be saved")
        finally:
            page.screenshot(path=str(tmp_path / "jupyterlab.png"))
            chromium.close()
    assert notebook.stat().st_mtime != saved_before, "JupyterLab did not save the notebook"
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in cells), "some cells did not run"
    outputs = [o for c in cells for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"], "a cell raised"
    assert not [o for o in outputs if o.get("name") == "stderr"], "something was printed to stderr"
    data = [kind for o in outputs for kind in o.get("data", {})]
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "image/png" in data and "<audio" in html, "the tour shows spectrograms and audio players"
