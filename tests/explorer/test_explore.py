"""The parameter explorer: measures on constructed inputs, spec checks, interrupt and resume, the report in a
browser."""
import html
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

import browser
import minicraft
from minicraft.explorer import measures
from minicraft.toyworld import world as toyworld
from minicraft.explorer.explore import Spec, SpecError, explore, read_results, spec_from
from minicraft.api import GenModel

RATE = 16000


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is bound by per-operation overhead: one thread is as fast, and never fights other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- measures on constructed inputs

def sine(freq=1000.0, seconds=1.0, amplitude=0.5):
    t = torch.arange(int(RATE * seconds), dtype=torch.float64) / RATE
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def test_repetition_is_high_for_a_loop_and_low_for_random_codes():
    loop = torch.tensor([5, 9, 2] * 20).repeat(4, 1)                  # [K=4, 60 frames], stuck in a 3-code loop
    assert measures.repetition(loop) > 0.9
    assert measures.repetition(torch.zeros(4, 60, dtype=torch.long)) > 0.9
    random = torch.randint(0, 256, (4, 60), generator=torch.Generator().manual_seed(0))
    assert measures.repetition(random) < 0.05
    assert measures.repetition(torch.tensor([[1, 2]])) == 0.0         # too short for a 4-gram


def test_token_entropy_counts_bits():
    assert measures.token_entropy(torch.zeros(4, 50, dtype=torch.long)) == 0.0
    assert measures.token_entropy(torch.tensor([0, 1] * 25).repeat(4, 1)) == pytest.approx(1.0)
    assert measures.token_entropy(torch.arange(256).repeat(4, 2)) == pytest.approx(8.0)


def test_silence_scores_silence():
    assert measures.silence_ratio(torch.zeros(RATE), RATE) == 1.0
    assert measures.silence_ratio(sine(), RATE) == 0.0
    half = torch.cat([torch.zeros(RATE // 2), sine(seconds=0.5)])
    assert measures.silence_ratio(half, RATE) == pytest.approx(0.5)
    assert measures.silence_ratio(1e-4 * sine(), RATE) == 1.0          # -80 dBFS counts as silence
    assert measures.loudness(torch.zeros(RATE), RATE) == -70.0       # the floor, not -inf
    assert measures.loudness(sine(amplitude=1.0), RATE) == pytest.approx(-3.0, abs=0.3)


def test_spectral_centroid_and_flatness():
    centroid, flatness = measures.spectral_shape(sine(1000.0), RATE)
    assert centroid == pytest.approx(1000.0, rel=0.02)
    assert flatness < 0.01                                            # a pure tone
    noise = torch.randn(RATE, generator=torch.Generator().manual_seed(0))
    centroid, flatness = measures.spectral_shape(noise, RATE)
    assert centroid == pytest.approx(RATE / 4, rel=0.05)              # white noise: the middle of the band
    assert 0.4 < flatness < 0.7
    assert measures.spectral_shape(torch.zeros(RATE), RATE) == (None, None)


def test_prompt_class_finds_the_toy_world_class():
    for clip in toyworld.sample_clips(200, seed=0) + toyworld.sample_clips(50, seed=1, held_out=True):
        assert measures.prompt_class(clip.caption) == clip.label, clip.caption
    assert measures.prompt_class("calm piano") is None                # names no class
    assert measures.prompt_class("rain and drums") is None            # names two
    assert measures.prompt_class("an 8-bit tune") == "chiptune"


# ---------------------------------------------------------------- bad specs, before any model is loaded

@pytest.mark.parametrize("spec, message", [
    (dict(prompts=["rain"], tempreature=[0.5]),
     "unknown parameter 'tempreature' in the spec (did you mean 'temperature'?)"),
    (dict(prompts=["rain"], seed=[1]), "unknown parameter 'seed'"),
    (dict(prompts=[]), "the grid is empty: there are no prompts"),
    (dict(temperature=[1.0]), "the grid is empty: there are no prompts"),
    (dict(prompts={"music": []}), "the grid is empty: prompt group 'music' has no prompts"),
    (dict(prompts=["rain"], temperature=[]), "the grid is empty: temperature has no values"),
    (dict(prompts=["rain"], seeds=[]), "the grid is empty: seeds has no values"),
    (dict(prompts=["rain"], top_p=[0.5, 1.5]), "top_p must be within [0, 1] (0 = off), got 1.5"),
    (dict(prompts=["rain"], temperature=-1), "temperature must be >= 0 (0 = greedy), got -1"),
    (dict(prompts=["rain"], cfg_coef=[-2]), "cfg_coef must be >= 0 (1 = no guidance, 3 = default), got -2"),
    (dict(prompts=["rain"], top_k=[2.5]), "top_k must be an integer"),
    (dict(prompts=["rain"], seeds=[-1]), "seeds must be an integer from 0 to 9223372036854775807, got -1"),
    (dict(prompts=["rain"], duration=0), "duration must be > 0 and at most 60 s, got 0"),
    (dict(prompts=["rain"], duration=600), "duration must be > 0 and at most 60 s, got 600"),
    (dict(prompts=["rain"], temperature=["hot"]), "temperature must be a finite number, got 'hot'"),
    (dict(prompts=["rain"], temperature=[1, 1.0]), "temperature lists 1.0 twice"),
    (dict(prompts=["rain", "rain"]), "the prompt 'rain' appears twice"),
    (dict(prompts=["rain"], objective="loud"), "objective must be a measure"),
    (dict(prompts=["rain"], model="small", objective="adherence"), "the objective 'adherence' needs the tiny model"),
])
def test_bad_specs_fail_before_loading_a_model(spec, message, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded for a bad spec")
    monkeypatch.setattr(GenModel, "get_pretrained", classmethod(no_loading))
    with pytest.raises(SpecError) as error:
        explore(spec, tmp_path / "run", progress=False)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_settings_the_model_cannot_take_fail_before_generating(tmp_path, monkeypatch):
    monkeypatch.setattr(GenModel, "generate", lambda *a, **k: pytest.fail("generated despite a bad setting"))
    with pytest.raises(ValueError, match=r"top_k must be an integer from 0 to 256 \(0 = off"):
        explore(dict(prompts=["rain"], top_k=[50, 300]), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_spec_files_and_defaults(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("prompts: {music: [a fast high chiptune melody], effects: the sound of rain}\n"
                    "temperature: [0.5, 1]\ncfg_coef: 3\n")
    spec = spec_from(path, seeds=[0, 1])
    assert spec.prompts == {"music": ["a fast high chiptune melody"], "effects": ["the sound of rain"]}
    assert (spec.temperature, spec.top_k, spec.cfg_coef, spec.seeds) == ([0.5, 1.0], [250], [3.0], [0, 1])
    assert len(spec.points()) == 2 * 2 * 2 and spec.goal() == "adherence"
    (tmp_path / "grid.json").write_text(json.dumps({"prompts": ["rain"], "model": "small"}))
    assert spec_from(tmp_path / "grid.json").goal() == "-repetition"
    assert Spec(prompts=["rain"]).prompts == {"all": ["rain"]}


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "minicraft", "explore", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_bad_spec_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "grid.yaml").write_text("prompts: [rain]\ntop_k: [50]\ncfg: [1, 3]\n")
    for args, message in ((["--spec", "grid.yaml"], "unknown parameter 'cfg' in the spec (did you mean 'cfg_coef'?)"),
                          (["rain", "--top-p", "0.5", "2"], "top_p must be within [0, 1] (0 = off), got 2.0")):
        result = run_cli(*args, "--out", "run", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- a run, interrupted and resumed

GRID = dict(prompts={"music": ["a fast high chiptune melody", "a slow low flute melody in minor"],
                     "effects": ["the sound of rain"]},
            temperature=[0.7, 1.0], cfg_coef=[1.0, 3.0], seeds=[0, 1], duration=1.0, batch_size=2)


class Stop(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """GRID explored in two sessions: interrupted after 4 samples (half-way through the third batch), then resumed.

    An untrained attribute classifier stands in for the trained one (training takes 7 to 35 s on a shared
    2-core machine; notebook 12 runs the real one): it sits in a cache folder of this module's
    (``MINICRAFT_CACHE``), as a finished training leaves it, so this also checks that a cached classifier is used.
    """
    from minicraft.fast import kernels
    from minicraft.toyworld.evaluate import AttributeClassifier
    out = tmp_path_factory.mktemp("explore") / "run"
    out.mkdir()
    cache, before_cache = tmp_path_factory.mktemp("cache"), os.environ.get("MINICRAFT_CACHE")
    for built in kernels.cache_dir().glob("kernels-*.so"):         # this machine's kernels: no compiling again
        shutil.copy(built, cache / built.name)
    os.environ["MINICRAFT_CACHE"] = str(cache)                      # for this process and the CLI's
    torch.manual_seed(0)
    measures.save_classifier(AttributeClassifier().eval(), measures.classifier_cache())
    trained, measures._classifiers = measures._classifiers, {}
    first = []

    def interrupt(sidecar):
        first.append(sidecar["id"])
        if len(first) == 4:
            raise Stop
    with pytest.raises(Stop):
        explore(GRID, out, on_sample=interrupt, progress=False)
    before = {p.relative_to(out): (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "samples").rglob("*")
              if p.is_file()}
    after_interrupt = read_results(out)
    second = []
    rows = explore(GRID, out, on_sample=lambda sidecar: second.append(sidecar["id"]), progress=False)
    yield dict(out=out, first=first, second=second, before=before, after_interrupt=after_interrupt, rows=rows)
    measures._classifiers = trained
    if before_cache is None:
        del os.environ["MINICRAFT_CACHE"]
    else:
        os.environ["MINICRAFT_CACHE"] = before_cache


def test_interrupted_run_resumes_without_losing_or_redoing(run):
    out, spec = run["out"], Spec(**GRID)
    ids = [p.id for p in spec.points()]
    assert len(ids) == 24 and len(set(ids)) == 24
    assert [r["id"] for r in run["after_interrupt"]] == run["first"]        # results.jsonl kept up to date
    assert len(run["first"]) == 4 and len(run["second"]) == 20
    assert sorted(run["first"] + run["second"]) == sorted(ids)              # each sample generated once
    for path, identity in run["before"].items():                            # written before: untouched
        assert ((out / path).stat().st_ino, (out / path).stat().st_mtime_ns) == identity, path
    files = sorted(p.relative_to(out / "samples").as_posix() for p in (out / "samples").rglob("*") if p.is_file())
    assert files == sorted([f"{i}.wav" for i in ids] + [f"{i}.json" for i in ids])   # once each, no leftovers
    rows = read_results(out)
    assert [r["id"] for r in rows] == ids == [r["id"] for r in run["rows"]]
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 25 and csv_lines[0].startswith("id,group,prompt,temperature,top_k,top_p,cfg_coef,seed")


def test_sidecars_have_consistent_metadata(run):
    out = run["out"]
    for row in read_results(out):
        sidecar = json.loads((out / "samples" / f"{row['id']}.json").read_text())
        assert sidecar == row
        assert row["id"].endswith(f"t{row['temperature']:g}_k250_p0_cfg{row['cfg_coef']:g}_seed{row['seed']}")
        assert (row["model"], row["minicraft_version"], row["device"], row["dtype"]) == \
            ("tiny", minicraft.__version__, "cpu", "float32")
        assert row["prompt"] in row["batch"] and row["group"] in GRID["prompts"]
        assert row["prompt"] in GRID["prompts"][row["group"]]
        info = sf.info(str(out / row["audio"]))
        assert (info.samplerate, info.channels, info.frames) == (RATE, 1, row["samples"]) == (RATE, 1, RATE)
        assert row["frames"] == 50 and row["codebooks"] == 4
        assert set(row["measures"]) == set(measures.MEASURES)
        assert row["target_class"] == measures.prompt_class(row["prompt"]) and row["heard_class"] in toyworld.CLASSES
        assert row["measures"]["adherence"] == float(row["heard_class"] == row["target_class"])
        timings = row["timings"]
        assert timings["seconds"] == pytest.approx(timings["batch_seconds"] / timings["batch_size"], abs=1e-3)


def test_resumed_equals_uninterrupted_and_a_finished_run_does_nothing(run, tmp_path):
    fresh = tmp_path / "fresh"
    explore(GRID, fresh, progress=False, report=False)
    for row in read_results(fresh):
        assert (fresh / row["audio"]).read_bytes() == (run["out"] / row["audio"]).read_bytes(), row["id"]
    again = []
    rows = explore(GRID, fresh, on_sample=lambda s: again.append(s), progress=False, report=False)
    assert again == [] and len(rows) == 24


def test_classifier_is_cached_on_disk_and_in_the_process(tmp_path, monkeypatch):
    from minicraft.toyworld.evaluate import AttributeClassifier
    calls = []

    def train():
        calls.append(1)
        return AttributeClassifier().eval()
    monkeypatch.setattr("minicraft.toyworld.evaluate.train_classifier", train)
    monkeypatch.setattr(measures, "_classifiers", {})
    first = measures.attribute_classifier(tmp_path / "a.pt")
    assert calls == [1] and (tmp_path / "a.pt").is_file()
    assert measures.attribute_classifier(tmp_path / "b.pt") is first and (tmp_path / "b.pt").is_file()
    monkeypatch.setattr(measures, "_classifiers", {})                       # a new process, in effect
    again = measures.attribute_classifier(tmp_path / "a.pt")
    assert calls == [1]
    torch.testing.assert_close(again.state_dict(), first.state_dict())
    (tmp_path / "c.pt").write_bytes(b"not a checkpoint")                    # unreadable: trained again
    monkeypatch.setattr(measures, "_classifiers", {})
    measures.attribute_classifier(tmp_path / "c.pt")
    assert calls == [1, 1]


def test_a_run_folder_keeps_its_model_and_duration(run):
    with pytest.raises(SpecError, match="holds a run with duration 1.0, not 2.0"):
        explore({**GRID, "duration": 2.0}, run["out"], progress=False)


def test_cli_runs_stops_and_resumes(run, tmp_path):
    out = tmp_path / "grid"
    out.mkdir()
    args = ("the sound of rain", "--temperature", "0.5", "1", "--duration", "0.5", "--out", str(out))
    result = run_cli(*args, "--max-samples", "1")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out / 'report.html'} (1 of 2 samples)" in result.stdout
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "resuming: 1 of 2 samples" in result.stderr
    assert "(2 of 2 samples)" in result.stdout and "all: highest prompt adherence" in result.stdout
    assert len(list((out / "samples").rglob("*.wav"))) == 2


# ---------------------------------------------------------------- the report, in a real browser

def test_report_is_self_contained(run):
    page = (run["out"] / "report.html").read_text()
    assert page.count("<audio") == 24 and "<script" not in page
    assert "http://" not in page and "https://" not in page and "src='samples/" not in page
    for best in ("music: highest prompt adherence", "effects: highest prompt adherence"):
        assert best in page
    for measure in measures.MEASURES.values():
        assert html.escape(measure.explanation.split(".")[0]) in page


def test_report_in_a_real_browser(run, tmp_path):
    """Every player loads, every image renders, nothing is fetched, no console errors.

    The screenshot goes to MINICRAFT_SCREENSHOT if set (docs/explorer.md shows notebook 12's report).
    """
    with browser.sync_playwright()() as p:
        chromium = browser.launch(p)
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(60_000)
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((run["out"] / "report.html").as_uri(), wait_until="load")
            audio = page.evaluate("""() => Promise.all([...document.querySelectorAll('audio')].map(a =>
                new Promise(done => {
                    const report = () => done({state: a.readyState, duration: a.duration,
                                               error: a.error && a.error.code});
                    if (a.readyState >= 1) return report();
                    a.addEventListener('loadedmetadata', report);
                    a.addEventListener('error', report);
                    a.load();
                })))""")
            images = page.evaluate("() => [...document.images].map(i => [i.complete, i.naturalWidth, i.alt])")
            screenshot = Path(os.environ.get("MINICRAFT_SCREENSHOT", tmp_path / "report.png"))
            page.screenshot(path=str(screenshot))
        finally:
            chromium.close()
    assert len(audio) == 24
    for a in audio:
        assert a["error"] is None and a["state"] >= 1 and a["duration"] == pytest.approx(1.0, abs=0.01), a
    assert len(images) == 24 + 2                              # spectrograms, and a heat map per group
    assert all(complete and width > 0 for complete, width, _ in images), images
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
