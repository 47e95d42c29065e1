"""from_pretrained / save_pretrained: formats, sharding, dtypes, devices, hub cache, safety, errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

import pretrained
from checkpoints import TINY_ENCODER, hf_checkpoint
from pretrained import AutoModel, AutoModelForSequenceClassification, BertModel
from pretrained.errors import CheckpointError, UnsafeCheckpointError


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    return hf_checkpoint(tmp_path_factory.mktemp("bert"), "BertConfig", "BertModel", **TINY_ENCODER)


def inputs():
    ids = torch.randint(1, 99, (2, 7), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.tensor([[1] * 7, [1] * 4 + [0] * 3])}


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=0, rtol=0, msg=k)


def test_save_load_round_trip(bert_folder, tmp_path):
    model = AutoModel.from_pretrained(bert_folder)
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    again = AutoModel.from_pretrained(tmp_path)
    assert_same_weights(model, again)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertModel"] and config["model_type"] == "bert"


def test_sharded_save_load_and_transformers_reads_it(bert_folder, tmp_path):
    import transformers

    model = AutoModel.from_pretrained(bert_folder)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and all(os.path.isfile(tmp_path / s) for s in shards)
    assert_same_weights(model, AutoModel.from_pretrained(tmp_path))
    theirs = transformers.BertModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs()).last_hidden_state, theirs(**inputs()).last_hidden_state, atol=1e-5, rtol=0)
    # saving unsharded again removes the stale shards and index
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_loading_matches_transformers(bert_folder, dtype):
    import transformers

    ours = AutoModel.from_pretrained(bert_folder, dtype=dtype)
    theirs = transformers.BertModel.from_pretrained(bert_folder, dtype=dtype).eval()
    assert ours.dtype == dtype and all(p.dtype == dtype for p in ours.parameters())
    assert ours.config.dtype == dtype
    with torch.no_grad():
        a, b = ours(**inputs()).last_hidden_state, theirs(**inputs()).last_hidden_state
    torch.testing.assert_close(a, b, atol=2e-2, rtol=0)


def test_auto_dtype_keeps_checkpoint_dtype(bert_folder, tmp_path):
    AutoModel.from_pretrained(bert_folder, torch_dtype=torch.float16).save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).dtype == torch.float16  # 'auto' is the default, as in transformers 5
    assert AutoModel.from_pretrained(tmp_path, dtype="float32").dtype == torch.float32


def test_pytorch_bin_loads_with_weights_only(bert_folder, tmp_path):
    model = AutoModel.from_pretrained(bert_folder)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, tmp_path / "pytorch_model.bin")
    model.config.save_pretrained(tmp_path)
    assert_same_weights(model, AutoModel.from_pretrained(tmp_path))
    with pytest.raises(CheckpointError, match="no weights"):
        AutoModel.from_pretrained(tmp_path, use_safetensors=True)


def test_sharded_bin_loads(bert_folder, tmp_path):
    model = AutoModel.from_pretrained(bert_folder)
    model.save_pretrained(tmp_path, max_shard_size="30KB", safe_serialization=False)
    assert (tmp_path / "pytorch_model.bin.index.json").exists()
    assert_same_weights(model, AutoModel.from_pretrained(tmp_path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_bin_is_refused_and_nothing_runs(bert_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    AutoModel.from_pretrained(bert_folder).config.save_pretrained(tmp_path)
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"embeddings.word_embeddings.weight": _Evil()}, f)
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model.bin was refused.*run code"):
        AutoModel.from_pretrained(tmp_path)
    assert not (tmp_path / "PWNED").exists()
    # the zip format torch.save writes is checked the same way
    torch.save({"x": _Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError):
        AutoModel.from_pretrained(tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_legacy_gamma_beta_names(bert_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(os.path.join(bert_folder, "model.safetensors"))
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in state.items()}
    assert any(k.endswith("gamma") for k in renamed)
    save_file(renamed, tmp_path / "model.safetensors")
    AutoModel.from_pretrained(bert_folder).config.save_pretrained(tmp_path)
    model, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert_same_weights(model, AutoModel.from_pretrained(bert_folder))


def test_mismatched_sizes_error_and_ignore(tmp_path_factory):
    folder = hf_checkpoint(tmp_path_factory.mktemp("cls"), "BertConfig", "BertForSequenceClassification", **TINY_ENCODER)
    with pytest.raises(CheckpointError, match=r"(?s)classifier.weight: checkpoint \(3, 32\), model \(5, 32\).*ignore_mismatched_sizes"):
        AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    assert model.classifier.weight.shape == (5, 32) and model.config.num_labels == 5
    assert {k for k, _, _ in info["mismatched_keys"]} == {"classifier.weight", "classifier.bias"}
    assert torch.isfinite(model.classifier.weight).all() and model.classifier.bias.abs().sum() == 0


def test_device_map_and_meta_free(bert_folder):
    for device_map in ("cpu", {"": "cpu"}, "auto", {"embeddings": "cpu", "encoder": "cpu", "pooler": "cpu"}):
        model = AutoModel.from_pretrained(bert_folder, device_map=device_map)
        assert all(p.device.type == "cpu" for p in model.parameters())
        model(**inputs())


def test_hub_id_from_local_cache_offline(bert_folder, tmp_path):
    """A repo id resolves through huggingface_hub's cache layout with HF_HUB_OFFLINE=1 (no network)."""
    import shutil

    sha = "a" * 40
    repo = tmp_path / "models--org--tiny-bert"
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for name in os.listdir(bert_folder):
        shutil.copy(os.path.join(bert_folder, name), snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    model = AutoModel.from_pretrained("org/tiny-bert", cache_dir=tmp_path)
    assert_same_weights(model, AutoModel.from_pretrained(bert_folder))
    with pytest.raises(CheckpointError, match="not in the local hub cache"):
        AutoModel.from_pretrained("org/other-model", cache_dir=tmp_path)


def test_clear_errors(bert_folder, tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        AutoModel.from_pretrained(str(tmp_path / "missing" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no file 'config.json'"):
        AutoModel.from_pretrained(tmp_path / "empty")
    AutoModel.from_pretrained(bert_folder).config.save_pretrained(tmp_path / "noweights")
    with pytest.raises(CheckpointError, match="has no weights: looked for model.safetensors"):
        AutoModel.from_pretrained(tmp_path / "noweights")
    with pytest.raises(TypeError, match="not_an_option"):
        BertModel.from_pretrained(bert_folder, not_an_option=1)


def test_truncated_safetensors_names_the_file(bert_folder, tmp_path):
    import shutil

    shutil.copytree(bert_folder, tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=r"model.safetensors.*truncated"):
        AutoModel.from_pretrained(tmp_path / "m")


def test_killed_save_leaves_previous_checkpoint_intact(bert_folder, tmp_path):
    """A process killed while writing weights leaves the earlier save loadable and unchanged."""
    target = tmp_path / "ckpt"
    first = AutoModel.from_pretrained(bert_folder)
    first.save_pretrained(target)
    before = {n: (target / n).read_bytes() for n in os.listdir(target)}
    script = textwrap.dedent(f"""
        import os, torch, safetensors.torch as st
        import pretrained
        real = st.save_file
        def dying_save(tensors, path, metadata=None):
            real(tensors, path, metadata)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)   # half-written, then the process dies
            os._exit(9)
        st.save_file = dying_save
        model = pretrained.AutoModel.from_pretrained({bert_folder!r})
        for p in model.parameters():
            p.data.add_(1.0)
        model.save_pretrained({str(target)!r}, max_shard_size="20KB")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert {n: (target / n).read_bytes() for n in os.listdir(target) if not n.startswith(".")} == before
    assert_same_weights(first, AutoModel.from_pretrained(target))


def test_shard_index_cannot_escape_folder(bert_folder, tmp_path):
    import shutil

    shutil.copytree(bert_folder, tmp_path / "m")
    os.rename(tmp_path / "m" / "model.safetensors", tmp_path / "m" / "shard.safetensors")
    (tmp_path / "m" / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight": "../../etc/passwd"}}))
    with pytest.raises(CheckpointError, match="escapes the folder"):
        AutoModel.from_pretrained(tmp_path / "m")


def test_import_is_lazy_and_does_not_import_torch():
    code = "import sys, pretrained; assert 'torch' not in sys.modules, 'torch imported'; pretrained.AutoConfig; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert "AutoModel" in dir(pretrained)
    with pytest.raises(AttributeError):
        pretrained.NotAThing


def test_tied_lm_decoder_shares_the_embeddings(tmp_path_factory, tmp_path):
    folder = hf_checkpoint(tmp_path_factory.mktemp("mlm"), "BertConfig", "BertForMaskedLM", **TINY_ENCODER)
    model = pretrained.BertForMaskedLM.from_pretrained(folder)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    from safetensors import safe_open

    assert "cls.predictions.decoder.weight" not in safe_open(str(tmp_path / "model.safetensors"), "pt").keys()
    untied = pretrained.BertForMaskedLM.from_pretrained(folder, tie_word_embeddings=False)
    assert untied.cls.predictions.decoder.weight is not untied.bert.embeddings.word_embeddings.weight


def test_saved_files_get_the_umask_modes_not_private_temp_modes(bert_folder, tmp_path):
    """Atomic writes go through temporary files; what they leave must have the modes a plain open() gives
    under the user's umask (a model saved by one user is read by a server running as another), not the
    0600 of mkstemp / 0700 of mkdtemp. Run under umask 027 in a child so the test process keeps its own."""
    script = textwrap.dedent(f"""
        import os
        os.umask(0o027)
        import pretrained
        from pretrained.training.callbacks import TrainerState
        model = pretrained.AutoModel.from_pretrained({bert_folder!r})
        model.save_pretrained({str(tmp_path / "single")!r})
        model.save_pretrained({str(tmp_path / "sharded")!r}, max_shard_size="20KB")
        TrainerState(global_step=3).save_to_json({str(tmp_path / "trainer_state.json")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    modes = {os.path.relpath(os.path.join(root, n), tmp_path): os.stat(os.path.join(root, n)).st_mode & 0o777
             for root, dirs, files in os.walk(tmp_path) for n in dirs + files}
    assert len([p for p in modes if p.startswith("sharded")]) > 3  # the shards and their index
    expected = {p: 0o750 if os.path.isdir(tmp_path / p) else 0o640 for p in modes}
    assert {p: oct(m) for p, m in modes.items()} == {p: oct(m) for p, m in expected.items()}


def test_umask_read_from_proc_and_from_a_probe_file_agree(monkeypatch):
    """files.umask() reads /proc/self/status; where that is missing it creates a probe file instead."""
    import builtins

    from pretrained import files

    expected = os.umask(0o022)
    os.umask(expected)
    assert files.umask() == expected
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: (_ for _ in ()).throw(OSError("no /proc"))
                        if path == "/proc/self/status" else real_open(path, *a, **k))
    assert files.umask() == expected
