"""Reading checkpoint files: safety, clear errors, memory maps, xp.cfg references, weight norm."""
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from minicraft.formats import checkpoints
from minicraft.formats.checkpoints import (CheckpointError, fold_weight_norm, load_into, read_audiocraft,
                                   read_safetensors, read_state_dict, release_file_pages, resolve_config)
from minicraft.fast.int8 import quantize_rows

from paths import FIXTURES


class RunsCode:
    """Unpickling this would run a shell command."""
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "state_dict.bin"
    torch.save({"best_state": {}, "xp.cfg": "", "evil": RunsCode()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_audiocraft(path)
    assert not (tmp_path / "pwned_by_pickle").exists()
    # A legacy (non-zip) pickle too.
    legacy = tmp_path / "legacy.bin"
    with open(legacy, "wb") as f:
        pickle.dump({"x": RunsCode()}, f)
    with pytest.raises(CheckpointError):
        read_state_dict(legacy)
    assert not (tmp_path / "pwned_by_pickle").exists()


def test_truncated_and_corrupt_files(tmp_path):
    source = FIXTURES / "musicgen_tiny" / "state_dict.bin"
    truncated = tmp_path / "state_dict.bin"
    truncated.write_bytes(source.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=f"{truncated}.*corrupt or truncated"):
        read_audiocraft(truncated)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="garbage.bin"):
        read_state_dict(garbage)
    st = tmp_path / "model.safetensors"
    save_file({"w": torch.randn(64, 64)}, st)
    st.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        read_safetensors(st)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_state_dict(tmp_path / "missing.safetensors")


def test_wrong_format_is_named(tmp_path):
    path = tmp_path / "state_dict.bin"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an audiocraft checkpoint.*best_state"):
        read_audiocraft(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="dictionary of tensors"):
        read_state_dict(path)


def test_load_into_names_the_first_offending_keys():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    good = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    bad = dict(good)
    bad["0.weight"] = torch.zeros(5, 4)
    del bad["1.bias"]
    bad["2.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_into(model, bad, "model.safetensors")
    message = str(err.value)
    assert "model.safetensors" in message
    assert "1 missing: 1.bias" in message and "1 unexpected: 2.weight" in message
    assert "0.weight (file (5, 4), model (3, 4))" in message
    load_into(model, good, "ok")
    assert all(not p.is_meta for p in model.parameters())


def test_safetensors_are_memory_mapped(tmp_path):
    path = tmp_path / "model.safetensors"
    tensors = {"a": torch.randn(3, 5), "b": torch.arange(7), "c": torch.randn(4).to(torch.bfloat16)}
    save_file(tensors, path)
    loaded = read_safetensors(path)
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor) and loaded[name].dtype == tensor.dtype
    # All tensors are views of one storage: the file's mapping.
    storages = {t.untyped_storage().data_ptr() for t in loaded.values()}
    assert len(storages) == 1


@pytest.mark.parametrize("dtype", [None, torch.float32, torch.bfloat16])
def test_converting_and_quantizing_while_reading(tmp_path, monkeypatch, dtype):
    """Block by block (a tiny block here, so every tensor takes several), the reader gives what converting and
    quantizing the whole tensors gives, bit for bit; stacked sources become one int8 weight."""
    monkeypatch.setattr(checkpoints, "BLOCK_BYTES", 96)
    torch.manual_seed(0)
    tensors = {"q": torch.randn(7, 12), "k": torch.randn(5, 12), "v": torch.randn(3, 12) * 50, "out": torch.randn(6, 4),
               "norm": torch.randn(12), "steps": torch.arange(5), "one": torch.tensor(2.5), "half": torch.randn(9, 3).half()}
    save_file(tensors, tmp_path / "model.safetensors")
    loaded = read_safetensors(tmp_path / "model.safetensors", dtype, int8={"attn": ["q", "k", "v"], "proj": ["out"]})
    rounded = {k: t.to(dtype) if dtype is not None and t.is_floating_point() else t for k, t in tensors.items()}
    for module, parts in (("attn", ["q", "k", "v"]), ("proj", ["out"])):
        q, scale = quantize_rows(torch.cat([rounded[p] for p in parts]))
        assert torch.equal(loaded[module + ".weight"], q) and torch.equal(loaded[module + ".scale"], scale)
    assert sorted(loaded) == ["attn.scale", "attn.weight", "half", "norm", "one", "proj.scale", "proj.weight", "steps"]
    for name in ("norm", "steps", "one", "half"):
        assert loaded[name].dtype == rounded[name].dtype and torch.equal(loaded[name], rounded[name])


def test_sharded_index(tmp_path):
    save_file({"a": torch.ones(2)}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"b": torch.zeros(3)}, tmp_path / "model-00002-of-00002.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text('{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", '
                     '"b": "model-00002-of-00002.safetensors"}}')
    state = read_state_dict(index)
    assert sorted(state) == ["a", "b"] and torch.equal(state["b"], torch.zeros(3))


def test_xp_cfg_references_are_resolved():
    config = {"sample_rate": 32000, "channels": 1,
           "encodec": {"sample_rate": "${sample_rate}", "causal": False},
           "seanet": {"causal": "${encodec.causal}", "name": "sr-${sample_rate}-x"}}
    resolved = resolve_config(config)
    assert resolved["encodec"]["sample_rate"] == 32000
    assert resolved["seanet"]["causal"] is False
    assert resolved["seanet"]["name"] == "sr-32000-x"
    with pytest.raises(CheckpointError, match="points nowhere"):
        resolve_config({"a": "${b.c}"})


def test_fixture_xp_cfg():
    config, state, package = read_audiocraft(FIXTURES / "musicgen_tiny" / "compression_state_dict.bin")
    assert config["encodec"]["sample_rate"] == 32000 and config["seanet"]["channels"] == 1
    assert package["version"] == "1.3.0" and "encoder.model.0.conv.conv.weight_g" in state


@pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning")
def test_weight_norm_spellings_fold_to_the_same_weight():
    conv = nn.Conv1d(3, 4, 5)
    old = nn.utils.weight_norm(nn.Conv1d(3, 4, 5))
    new = nn.utils.parametrizations.weight_norm(nn.Conv1d(3, 4, 5))
    new.load_state_dict({"bias": old.bias, "parametrizations.weight.original0": old.weight_g,
                         "parametrizations.weight.original1": old.weight_v})
    for module in (old, new):
        folded = fold_weight_norm(dict(module.state_dict()))
        assert sorted(folded) == ["bias", "weight"]
        load_into(conv, folded, "test")
        x = torch.randn(2, 3, 9)
        torch.testing.assert_close(conv(x), old(x))
    # Transposed convolutions normalise over dim 0 as well.
    convtr = nn.utils.weight_norm(nn.ConvTranspose1d(4, 2, 3))
    folded = fold_weight_norm(dict(convtr.state_dict()))
    torch.testing.assert_close(folded["weight"], convtr.weight)


def test_fixture_files_untouched(tmp_path):
    """Reading never writes: the memory map is private (copy-on-write)."""
    path = tmp_path / "model.safetensors"
    shutil.copy(FIXTURES / "t5_tiny" / "model.safetensors", path)
    before = path.read_bytes()
    state = read_safetensors(path)
    next(iter(state.values())).add_(1.0)   # writing to a loaded tensor
    assert path.read_bytes() == before


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="MADV_DONTNEED is used on Linux only")
def test_released_pages_are_read_again_from_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    values = torch.arange(1 << 20, dtype=torch.float32)                  # 4 MiB
    save_file({"w": values}, str(path))
    state = read_safetensors(path)
    assert torch.equal(state["w"], values)                               # every page now resident
    assert release_file_pages([path]) >= values.numel() * 4
    assert torch.equal(state["w"], values)                               # faulted in again, unchanged
    assert release_file_pages([tmp_path / "other.safetensors"]) == 0


def test_converting_a_mapped_torch_file_hands_its_pages_back(tmp_path):
    """A float32 torch file (audiocraft's format, memory-mapped) loaded as bfloat16: the peak holds the converted
    copy and a window of the file's pages, not the whole file beside the copy (3x the final model, before)."""
    import json
    import subprocess
    import sys
    import textwrap
    path = tmp_path / "state_dict.bin"
    torch.save({f"w{i}": torch.randn(1024, 4096) for i in range(16)}, path)      # 256 MiB of float32
    script = textwrap.dedent(f"""
        import json, torch
        from torch import nn
        from minicraft.formats import checkpoints
        def peak():
            line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
            return int(line.split()[1]) * 1024
        checkpoints.RELEASE_EVERY = 16 * 2**20
        torch.ones(8).to(torch.bfloat16)                      # PyTorch's first-use pages, before measuring
        before = peak()
        state = checkpoints.read_torch_file({str(path)!r})
        with torch.device("meta"):
            module = nn.ParameterDict({{k: nn.Parameter(torch.empty(1024, 4096)) for k in state}})
        checkpoints.load_into(module, state, {str(path)!r}, torch.bfloat16)
        final = sum(p.numel() * p.element_size() for p in module.parameters())
        assert all(p.dtype == torch.bfloat16 for p in module.parameters())
        print(json.dumps(dict(added=peak() - before, final=final)))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    assert rss["added"] <= 1.2 * rss["final"], rss


def test_meta_models_skip_random_init():
    """Building on meta must not run init kernels: in a fresh process, they import torch._dynamo (68 MB)."""
    script = ("import sys, torch\n"
              "from minicraft.formats.checkpoints import on_meta\n"
              "from minicraft.models.lm import LM, LMConfig\n"
              "from minicraft.fast.int8 import quantize_lm_int8\n"
              "with on_meta():\n"
              "    lm = quantize_lm_int8(LM(LMConfig(dim=64, num_heads=4, num_layers=2, ffn_dim=128)))\n"
              "assert lm.emb[0].weight.is_meta and lm.linears[0].weight.dtype == torch.int8\n"
              "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    real = torch.empty(1000)
    with checkpoints.on_meta():
        nn.init.normal_(real)                  # a real tensor is still initialized inside
    assert real.std() > 0.5 and nn.init.normal_.__module__ == "torch.nn.init"   # and normal_ restored


def raw_safetensors(path, header, data=b"\0" * 16):
    import json
    import struct
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize("header, why", [
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, "negative"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, "bytes for shape"),
    ({"w": {"shape": [2], "data_offsets": [0, 8]}}, "missing dtype"),
    ({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, "not a list of sizes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, "overlapping"),
    ([1, 2, 3], "not a JSON object"),
])
def test_safetensors_headers_are_checked_before_any_data_is_read(tmp_path, header, why):
    from minicraft.formats.checkpoints import read_safetensors
    from minicraft.info import safetensors_params
    path = raw_safetensors(tmp_path / "model.safetensors", header)
    for read in (read_safetensors, safetensors_params):          # one reader for loading and `minicraft info`
        with pytest.raises(CheckpointError, match=why):
            read(path)


def test_a_valid_raw_safetensors_file_reads(tmp_path):
    from minicraft.formats.checkpoints import read_safetensors
    from minicraft.info import safetensors_params
    header = {"b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
              "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    path = raw_safetensors(tmp_path / "model.safetensors", header)
    assert safetensors_params(path) == 4 and set(read_safetensors(path)) == {"a", "b"}
