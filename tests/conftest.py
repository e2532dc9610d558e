import pytest
import torch

from minicraft.formats.checkpoints import load_into, read_audiocraft
from minicraft.models.lm import LM, LMConfig
from paths import FIXTURES


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in offline mode, for this process and its subprocesses."""
    import huggingface_hub.constants as constants
    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture(scope="module")
def refs():
    return torch.load(FIXTURES / "refs.pt", weights_only=True)


@pytest.fixture(scope="module")
def audiocraft_lm():
    """The LM of audiocraft's tiny MusicGen fixture (reference modules)."""
    config, state, _ = read_audiocraft(FIXTURES / "musicgen_tiny" / "state_dict.bin")
    with torch.device("meta"):
        model = LM(LMConfig.from_audiocraft(config))
    state = {k: v for k, v in state.items() if not k.startswith("condition_provider.")}
    return load_into(model, state, "state_dict.bin").eval()


@pytest.fixture(scope="module")
def lm(audiocraft_lm):
    return audiocraft_lm
