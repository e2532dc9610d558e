"""Every notebook cites the papers its ideas come from (arXiv links in its markdown), and docs/references.md lists
each of them."""
import json

import pytest

from paths import ROOT

NOTEBOOKS = ROOT / "notebooks"
REFERENCES = ROOT / "docs" / "references.md"

MUSICGEN, ENCODEC, SOUNDSTREAM, AUDIOGEN = "2306.05284", "2210.13438", "2107.03312", "2209.15352"
T5, TRANSFORMER, BPE, SENTENCEPIECE = "1910.10683", "1706.03762", "1508.07909", "1808.06226"
VQ_VAE, WEIGHT_NORM, CFG, NUCLEUS = "1711.00937", "1602.07868", "2207.12598", "1904.09751"
LORA, DREAMBOOTH = "2106.09685", "2208.12242"

# The arXiv ids each notebook must cite, in a markdown cell. A new notebook must be added here, even with no paper.
CITES = {
    "00_tour": [MUSICGEN, ENCODEC, T5],
    "00b_audio_fundamentals": [],
    "01_tokenization": [BPE, SENTENCEPIECE],
    "02_attention": [TRANSFORMER],
    "03_transformer_t5": [TRANSFORMER, T5],
    "04_codec": [ENCODEC, SOUNDSTREAM, VQ_VAE],
    "04b_codec_from_primitives": [ENCODEC, SOUNDSTREAM, WEIGHT_NORM],
    "04c_codec_training": [VQ_VAE, ENCODEC, SOUNDSTREAM],
    "05_language_model": [MUSICGEN],
    "05b_training_the_lm": [MUSICGEN],
    "06_sampling": [CFG, NUCLEUS],
    "07_generation_loop": [MUSICGEN, CFG],
    "08_official_musicgen": [MUSICGEN],
    "08b_melody_and_stereo": [MUSICGEN, ENCODEC, TRANSFORMER],
    "09_audiogen": [AUDIOGEN],
    "10_long_generation": [MUSICGEN],
    "11_memory_and_speed": [],
    "12_parameter_explorer": [],
    "13_listening_lab": [MUSICGEN, CFG],
    "14_fine_tuning": [LORA, DREAMBOOTH],
}


def markdown(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown")


@pytest.mark.parametrize("stem", sorted(CITES))
def test_notebook_cites_its_papers(stem):
    path = NOTEBOOKS / f"{stem}.ipynb"
    assert path.is_file(), f"{path.name} is missing"
    text = markdown(path)
    missing = [arxiv for arxiv in CITES[stem] if f"arxiv.org/abs/{arxiv}" not in text]
    assert not missing, f"{path.name} does not link " + ", ".join(f"https://arxiv.org/abs/{m}" for m in missing)


def test_every_notebook_says_what_it_cites():
    stems = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))
    unlisted = [stem for stem in stems if stem not in CITES]
    assert not unlisted, f"add {unlisted} to CITES in {__file__} (an empty list if it cites no paper)"


def test_references_md_lists_every_cited_paper():
    text = REFERENCES.read_text(encoding="utf-8")
    ids = sorted({arxiv for cited in CITES.values() for arxiv in cited})
    missing = [arxiv for arxiv in ids if f"arxiv.org/abs/{arxiv}" not in text]
    assert not missing, f"docs/references.md lacks {missing}"
