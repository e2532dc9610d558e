"""A checkpoint's generation_config.json recommends how to sample it, as transformers' ``generate`` reads it:
the tiny MusicGen recommends temperature 0.7; everything else samples as audiocraft does (1.0, 250, 3)."""
import json
import shutil

import pytest

from minicraft import AudioGen, MusicGen
from minicraft.api import TINY
from minicraft.cli import main, model_from_args, parser
from minicraft.formats.checkpoints import CheckpointError
from minicraft.formats.export import export_musicgen


def test_the_tiny_musicgen_samples_at_its_recommended_temperature():
    model = MusicGen.get_pretrained("tiny", device="cpu")
    assert model.recommended == dict(temperature=0.7, top_k=250, cfg_coef=3.0)
    assert model.generation_params == dict(use_sampling=True, temperature=0.7, top_k=250, top_p=0.0,
                                           cfg_coef=3.0, two_step=False)
    model.set_generation_params(duration=1.0, cfg_coef=1.0)         # what is left out stays recommended
    assert model.generation_params["temperature"] == 0.7 and model.generation_params["cfg_coef"] == 1.0
    model.set_generation_params(temperature=1.0, top_k=20)           # what is given wins
    assert (model.generation_params["temperature"], model.generation_params["top_k"]) == (1.0, 20)


def test_a_checkpoint_without_a_temperature_samples_at_one():
    model = AudioGen.get_pretrained("tiny", device="cpu")
    assert "temperature" not in model.recommended and model.generation_params["temperature"] == 1.0


def test_the_command_line_takes_the_model_s_temperature_unless_given():
    args = parser().parse_args(["generate", "a flute", "--device", "cpu"])
    assert model_from_args(args).generation_params["temperature"] == 0.7
    args = parser().parse_args(["generate", "a flute", "--device", "cpu", "--temperature", "0"])
    params = model_from_args(args).generation_params
    assert params["temperature"] == 0 and params["use_sampling"] is False


def test_an_export_writes_the_temperature_and_a_load_reads_it(tmp_path):
    model = MusicGen.get_pretrained("tiny", device="cpu")
    export_musicgen(tmp_path / "t", model.lm, model.conditioner, model.codec, max_duration=2.0, temperature=0.5)
    assert json.loads((tmp_path / "t" / "generation_config.json").read_text())["temperature"] == 0.5
    assert MusicGen.get_pretrained(str(tmp_path / "t"), device="cpu").generation_params["temperature"] == 0.5
    export_musicgen(tmp_path / "u", model.lm, model.conditioner, model.codec, max_duration=2.0)
    assert "temperature" not in json.loads((tmp_path / "u" / "generation_config.json").read_text())


@pytest.mark.parametrize("key, value", [("temperature", "hot"), ("temperature", -1), ("top_k", -3),
                                        ("guidance_scale", float("nan"))])
def test_a_wrong_recommendation_is_refused_at_load(tmp_path, key, value):
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    generation = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**generation, key: value}))
    with pytest.raises(CheckpointError, match=f"generation_config.json: {key}: .* must be"):
        MusicGen.get_pretrained(str(folder), device="cpu")


def test_info_says_which_temperature_the_model_samples_at(capsys):
    assert main(["info", "tiny"]) == 0
    assert "samples at temperature 0.7 unless told otherwise" in capsys.readouterr().out
    assert main(["info", "audiogen-tiny"]) == 0
    assert "samples at temperature" not in capsys.readouterr().out
