"""CTranslate2 Whisper models -> Hugging Face Whisper folders (`pretrained convert ctranslate2 SRC DST`).

A CTranslate2 model folder (what faster-whisper loads) holds model.bin, config.json (Whisper's suppress
ids, language ids, alignment heads) and the tokenizer. model.bin is CTranslate2's own layout, little-endian
(its writer is `ModelSpec._serialize` in CTranslate2's python/ctranslate2/specs/model_spec.py):

    uint32 binary version (2-6 are read here; 1 has no spec name)
    string spec name ("WhisperSpec"), uint32 spec revision
    uint32 variable count, then for each variable:
        string name, e.g. "encoder/layer_0/self_attention/linear_0/weight"
        uint8 rank, uint32 dims[rank]
        version >= 4: uint8 dtype id (float32, int8, int16, int32, float16, bfloat16), uint32 byte count
        version < 4:  uint8 item size, uint32 item count
        the values, row-major
    version >= 3: uint32 alias count, then (alias, target) string pairs: a variable equal to another one
    strings: uint16 length counting a trailing NUL, the UTF-8 bytes, the NUL

Rank-0 variables are the spec's settings (head counts, pre-norm, activation). Quantized weights (int8,
int16) come with a `<name>_scale` and are expanded to float32 here.

The HF folder gets config.json, model.safetensors (float32, or the source's dtype with dtype="auto"),
generation_config.json (Whisper's prompt ids, suppress lists and alignment heads), the tokenizer (with
Whisper's timestamp tokens) and preprocessor_config.json. It is staged beside DST and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct

import numpy as np

from .errors import CheckpointError, InputError
from .files import new_temp_dir, read_json_object, seal_tree

MODEL_FILE = "model.bin"
BINARY_VERSIONS = range(2, 7)
WHISPER_REVISIONS = range(1, 4)
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")  # CTranslate2's DataType order
_ITEM_SIZES = {4: "float32", 2: "int16", 1: "int8"}  # binary versions < 4 record only the item size
_NUMPY = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32,
          "float16": np.float16, "bfloat16": np.uint16}  # bfloat16 kept as its raw 16 bits
_MAX_RANK = 8
# Whisper's decoder settings in CTranslate2's TransformerDecoderSpec: the values a Whisper model has
_DECODER_FLAGS = {"pre_norm": 1, "scale_embeddings": 0, "alibi": 0, "start_from_zero_embedding": 0}
# settings that change nothing in the forward pass HF's Whisper runs (alignment output, alibi details)
_INERT_SCALARS = ("alignment_layer", "alignment_heads", "alibi_use_positive_positions", "scale_alibi")
_GELU = {1: 1, 2: 1, 3: 3}  # revision -> activation id of exact GELU (revision 3 added the GELU variants)
WHISPER_TOKENS = {"endoftext": "<|endoftext|>", "startoftranscript": "<|startoftranscript|>",
                  "translate": "<|translate|>", "transcribe": "<|transcribe|>", "startofprev": "<|startofprev|>",
                  "notimestamps": "<|notimestamps|>"}
MAX_INITIAL_TIMESTAMP_INDEX = 50  # Whisper's 1.0 s limit on the first timestamp, in 0.02 s steps


class CT2Model:
    """The variables of a model.bin: `arrays` name -> numpy array, `aliases` name -> the name it equals."""

    def __init__(self, path: str, binary_version: int, spec: str, revision: int, arrays: dict, dtypes: dict,
                 aliases: dict):
        self.path, self.binary_version, self.spec, self.revision = path, binary_version, spec, revision
        self.arrays, self.dtypes, self.aliases = arrays, dtypes, aliases

    def resolve(self, name: str) -> str | None:
        """The stored variable `name` stands for (itself, or its alias target), None when absent."""
        seen = set()
        while name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        return name if name in self.arrays else None

    def has(self, name: str) -> bool:
        return self.resolve(name) is not None


class _Reader:
    def __init__(self, path: str, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise CheckpointError(f"{self.path}: truncated CTranslate2 model: {what} needs {size} bytes at offset "
                                  f"{self.pos}, but the file has {len(self.data)} bytes")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def string(self, what: str) -> str:
        (length,) = self.unpack("H", f"the length of {what}")
        raw = self.take(length, what)
        if length == 0 or raw[-1] != 0:
            raise CheckpointError(f"{self.path}: {what} at offset {self.pos - length} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{self.path}: {what} is not UTF-8 ({e})") from None


def read_model_bin(path: str | os.PathLike) -> CT2Model:
    """Every variable and alias of a CTranslate2 model.bin, checked for truncation, sizes and duplicates."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read the CTranslate2 model {path}: {e}") from e
    r = _Reader(path, data)
    if len(data) < 4:
        raise CheckpointError(f"{path} is not a CTranslate2 model.bin: {len(data)} bytes, shorter than its header")
    (version,) = r.unpack("I", "the binary version")
    if version not in BINARY_VERSIONS:
        raise CheckpointError(f"{path} is not a CTranslate2 model.bin this reader knows: binary version {version}, "
                              f"expected {BINARY_VERSIONS.start}-{BINARY_VERSIONS.stop - 1}")
    spec = r.string("the spec name")
    (revision,) = r.unpack("I", "the spec revision")
    (count,) = r.unpack("I", "the variable count")
    if count * 8 > len(data):  # each variable takes at least 8 bytes
        raise CheckpointError(f"{path}: header claims {count} variables, more than a {len(data)}-byte file can hold")
    arrays, dtypes = {}, {}
    for i in range(count):
        name = r.string(f"the name of variable {i}")
        if name in arrays:
            raise CheckpointError(f"{path}: variable {name!r} appears twice")
        (rank,) = r.unpack("B", f"the rank of {name!r}")
        if rank > _MAX_RANK:
            raise CheckpointError(f"{path}: variable {name!r} has rank {rank}; expected at most {_MAX_RANK}")
        shape = r.unpack(f"{rank}I", f"the shape of {name!r}")
        if version >= 4:
            type_id, nbytes = r.unpack("BI", f"the dtype of {name!r}")
            if type_id >= len(_DTYPES):
                raise CheckpointError(f"{path}: variable {name!r} has dtype id {type_id}; expected "
                                      f"0-{len(_DTYPES) - 1} ({', '.join(_DTYPES)})")
            dtype = _DTYPES[type_id]
        else:
            item_size, items = r.unpack("BI", f"the item size of {name!r}")
            if item_size not in _ITEM_SIZES:
                raise CheckpointError(f"{path}: variable {name!r} has item size {item_size}; expected 1, 2 or 4")
            dtype, nbytes = _ITEM_SIZES[item_size], items * item_size
        np_dtype = np.dtype(_NUMPY[dtype]).newbyteorder("<")
        expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
        if nbytes != expected:
            raise CheckpointError(f"{path}: variable {name!r} of shape {list(shape)} and dtype {dtype} needs "
                                  f"{expected} bytes, the file gives {nbytes}")
        arrays[name] = np.frombuffer(r.take(nbytes, f"the values of {name!r}"), dtype=np_dtype).reshape(shape)
        dtypes[name] = dtype
    aliases = {}
    if version >= 3:
        (n_aliases,) = r.unpack("I", "the alias count")
        for i in range(n_aliases):
            alias, target = r.string(f"alias {i}"), r.string(f"the target of alias {i}")
            if target not in arrays:
                raise CheckpointError(f"{path}: alias {alias!r} points to {target!r}, which is not a variable")
            aliases[alias] = target
    if r.pos != len(data):
        raise CheckpointError(f"{path}: {len(data) - r.pos} unexpected bytes after the last "
                              f"{'alias' if version >= 3 else 'variable'} (offset {r.pos})")
    return CT2Model(path, version, spec, revision, arrays, dtypes, aliases)


class _Whisper:
    """Reads a WhisperSpec's variables for their HF names, recording which ones were read (all must be)."""

    def __init__(self, model: CT2Model):
        self.model = model
        self.used: set[str] = set()

    def fail(self, message: str):
        raise CheckpointError(f"{self.model.path}: {message}")

    def scalar(self, name: str) -> int:
        stored = self.model.resolve(name)
        if stored is None:
            self.fail(f"missing the setting {name!r} of CTranslate2's WhisperSpec")
        self.used.add(stored)
        return int(self.model.arrays[stored].reshape(-1)[0])

    def array(self, name: str, shape: tuple | None = None):
        """The variable as a tensor in its own float dtype (quantized ones expanded to float32 with their
        scale); `shape` checks it (None entries match anything)."""
        import torch

        stored = self.model.resolve(name)
        if stored is None:
            self.fail(f"missing the array {name!r} that a CTranslate2 WhisperSpec has")
        self.used.add(stored)
        value, dtype = self.model.arrays[stored], self.model.dtypes[stored]
        if shape is not None and (len(shape) != value.ndim or any(e is not None and e != s
                                                                  for e, s in zip(shape, value.shape))):
            self.fail(f"array {name!r} has shape {list(value.shape)}; expected "
                      f"{['*' if e is None else e for e in shape]}")
        if dtype in ("int8", "int16"):
            scale_name = self.model.resolve(stored + "_scale") or self.model.resolve(name + "_scale")
            if scale_name is None:
                self.fail(f"quantized array {name!r} ({dtype}) has no {name + '_scale'!r}")
            self.used.add(scale_name)
            scale = torch.from_numpy(self.model.arrays[scale_name].astype(np.float32))
            tensor = torch.from_numpy(value.astype(np.float32))
            # int8: one scale per output row (127 / max |row|); int16: one for the whole array
            return tensor / (scale.reshape(-1, *([1] * (tensor.ndim - 1))) if scale.numel() > 1 else scale)
        if dtype == "int32":
            self.fail(f"array {name!r} is int32; expected a float or quantized weight")
        if dtype == "bfloat16":
            return torch.from_numpy(value.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(value.copy())

    def source_float_dtype(self) -> str:
        weights = {self.model.dtypes[n] for n in self.used if self.model.arrays[n].ndim > 0}  # scalars are settings
        return weights.pop() if len(weights) == 1 and weights <= {"float32", "float16", "bfloat16"} else "float32"

    def layer_count(self, stack: str) -> int:
        pattern = re.compile(rf"^{stack}/layer_(\d+)/")
        indices = {int(m.group(1)) for n in self.model.arrays for m in [pattern.match(n)] if m}
        if indices != set(range(len(indices))) or not indices:
            self.fail(f"the {stack} layers are numbered {sorted(indices)}; expected layer_0 .. layer_N-1")
        return len(indices)


def whisper_weights(model: CT2Model) -> tuple[dict, dict, str]:
    """(config fields, HF state dict of torch tensors, the source's float dtype) of a CTranslate2 WhisperSpec."""
    if model.spec != "WhisperSpec":
        raise CheckpointError(f"{model.path} holds a CTranslate2 {model.spec!r}; this converter reads WhisperSpec")
    if model.revision not in WHISPER_REVISIONS:
        raise CheckpointError(f"{model.path}: WhisperSpec revision {model.revision}; expected "
                              f"{WHISPER_REVISIONS.start}-{WHISPER_REVISIONS.stop - 1}")
    w = _Whisper(model)
    embed = w.array("decoder/embeddings/weight", (None, None))
    vocab, d = embed.shape
    mels = w.array("encoder/conv1/weight", (d, None, 3))
    n_enc, n_dec = w.layer_count("encoder"), w.layer_count("decoder")
    config = {"vocab_size": vocab, "d_model": d, "num_mel_bins": mels.shape[1],
              "encoder_layers": n_enc, "decoder_layers": n_dec,
              "encoder_attention_heads": w.scalar("encoder/num_heads"),
              "decoder_attention_heads": w.scalar("decoder/num_heads")}
    for key in ("encoder_attention_heads", "decoder_attention_heads"):
        if config[key] <= 0 or d % config[key]:
            w.fail(f"{key.split('_')[0]}/num_heads = {config[key]} does not divide the model width {d}")
    for flag, expected in _DECODER_FLAGS.items():
        if model.has(f"decoder/{flag}") and w.scalar(f"decoder/{flag}") != expected:
            w.fail(f"decoder/{flag} = {w.scalar(f'decoder/{flag}')}; Whisper has {expected}")
    if w.scalar("decoder/activation") != _GELU[model.revision]:
        w.fail(f"decoder/activation = {w.scalar('decoder/activation')}; Whisper's GELU is {_GELU[model.revision]} "
               f"in WhisperSpec revision {model.revision}")
    for name in _INERT_SCALARS:
        if model.has(f"decoder/{name}"):
            w.scalar(f"decoder/{name}")

    sd = {"model.decoder.embed_tokens.weight": embed, "model.encoder.conv1.weight": mels,
          "model.encoder.conv1.bias": w.array("encoder/conv1/bias", (d,)),
          "model.encoder.conv2.weight": w.array("encoder/conv2/weight", (d, d, 3)),
          "model.encoder.conv2.bias": w.array("encoder/conv2/bias", (d,))}
    enc_pos = w.array("encoder/position_encodings/encodings", (None, d))
    dec_pos = w.array("decoder/position_encodings/encodings", (None, d))
    sd["model.encoder.embed_positions.weight"], sd["model.decoder.embed_positions.weight"] = enc_pos, dec_pos
    config["max_source_positions"], config["max_target_positions"] = enc_pos.shape[0], dec_pos.shape[0]

    def norm(src: str, dst: str):
        sd[dst + ".weight"] = w.array(src + "/gamma", (d,))
        sd[dst + ".bias"] = w.array(src + "/beta", (d,))

    def linear(src: str, dst: str, rows=None, cols=None):
        sd[dst + ".weight"] = w.array(src + "/weight", (rows, cols))
        sd[dst + ".bias"] = w.array(src + "/bias", (sd[dst + ".weight"].shape[0],))

    def fused(src: str, dst: str, names: tuple[str, ...]):
        """CTranslate2 stores q|k|v (or k|v) as one linear; HF's k_proj has no bias: the fused bias has zeros
        there, and any value would only add q.b_k to every score of a row, which softmax ignores."""
        weight = w.array(src + "/weight", (len(names) * d, d))
        bias = w.array(src + "/bias", (len(names) * d,))
        for name, wpart, bpart in zip(names, weight.split(d), bias.split(d)):
            sd[f"{dst}.{name}.weight"] = wpart.clone()
            if name != "k_proj":
                sd[f"{dst}.{name}.bias"] = bpart.clone()

    ffn_dims = {}
    for stack, count in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(count):
            src, dst = f"{stack}/layer_{i}", f"model.{stack}.layers.{i}"
            fused(f"{src}/self_attention/linear_0", f"{dst}.self_attn", ("q_proj", "k_proj", "v_proj"))
            linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", d, d)
            norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            if stack == "decoder":
                linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", d, d)
                fused(f"{src}/attention/linear_1", f"{dst}.encoder_attn", ("k_proj", "v_proj"))
                linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", d, d)
                norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
            linear(f"{src}/ffn/linear_0", f"{dst}.fc1", ffn_dims.get(stack), d)
            ffn_dims[stack] = sd[f"{dst}.fc1.weight"].shape[0]
            linear(f"{src}/ffn/linear_1", f"{dst}.fc2", d, ffn_dims[stack])
            norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
        norm(f"{stack}/layer_norm", f"model.{stack}.layer_norm")
    config["encoder_ffn_dim"], config["decoder_ffn_dim"] = ffn_dims["encoder"], ffn_dims["decoder"]

    # the output projection: an alias of the embeddings (tied, as in every Whisper release) or its own array
    tied = model.resolve("decoder/projection/weight") == model.resolve("decoder/embeddings/weight")
    config["tie_word_embeddings"] = tied
    projection = w.array("decoder/projection/weight", (vocab, d))
    if not tied:
        sd["proj_out.weight"] = projection
    if model.has("decoder/projection/bias"):
        if w.array("decoder/projection/bias", (vocab,)).any():
            w.fail("decoder/projection/bias is not zero; Whisper's output projection has no bias")
    unused = sorted(n for n in model.arrays if n not in w.used)
    if unused:
        w.fail(f"variables a WhisperSpec does not have: {', '.join(unused[:8])}"
               f"{' ...' if len(unused) > 8 else ''}")
    return config, sd, w.source_float_dtype()


def _tokenizer_files(src: str, vocab_size: int) -> tuple[dict, dict]:
    """(tokenizer.json with Whisper's timestamp tokens, {token name: id}) from the CTranslate2 folder."""
    path = os.path.join(src, "tokenizer.json")
    try:
        with open(path, encoding="utf-8") as f:
            tokenizer = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{src} has no tokenizer.json; a Whisper folder needs the model's tokenizer") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable tokenizer.json: {e}") from None
    added = tokenizer.get("added_tokens") if isinstance(tokenizer, dict) else None
    if not isinstance(added, list):
        raise CheckpointError(f"{path}: expected a tokenizers JSON with an 'added_tokens' list")
    ids = {t.get("content"): t.get("id") for t in added if isinstance(t, dict)}
    special = {}
    for key, token in WHISPER_TOKENS.items():
        if not isinstance(ids.get(token), int):
            raise CheckpointError(f"{path}: Whisper's special token {token} is missing")
        special[key] = ids[token]
    # CTranslate2 stores only the text vocabulary; ids past <|notimestamps|> are the 0.02 s timestamps
    first = special["notimestamps"] + 1
    present = max(t["id"] for t in added if isinstance(t.get("id"), int))
    if present < vocab_size - 1:
        if present != special["notimestamps"]:
            raise CheckpointError(f"{path}: tokens end at id {present}, the model has {vocab_size}; expected them "
                                  f"to end at <|notimestamps|> ({special['notimestamps']}) or cover the vocabulary")
        added += [{"id": first + i, "content": f"<|{i * 0.02:.2f}|>", "single_word": False, "lstrip": False,
                   "rstrip": False, "normalized": False, "special": False} for i in range(vocab_size - first)]
    special["langs"] = {t: i for t, i in ids.items() if special["startoftranscript"] < i < special["translate"]
                        and re.fullmatch(r"<\|[a-z_-]+\|>", t)}
    return tokenizer, special


def _read_ct2_config(src: str) -> dict:
    path = os.path.join(src, "config.json")
    return read_json_object(path) if os.path.exists(path) else {}


def _hf_files(src: str, config: dict, source_dtype: str, dtype: str) -> dict[str, str]:
    """config.json, generation_config.json, tokenizer and preprocessor files (name -> text)."""
    tokenizer, tok = _tokenizer_files(src, config["vocab_size"])
    ct2 = _read_ct2_config(src)
    multilingual = config["vocab_size"] >= 51865  # Whisper's multilingual vocabularies; English-only is 51864
    eot, sot = tok["endoftext"], tok["startoftranscript"]
    suppress = ct2.get("suppress_ids")  # null (CTranslate2 writes it when the source had none): no suppression
    begin_suppress = ct2.get("suppress_ids_begin")
    heads = ct2.get("alignment_heads") or [[layer, h] for layer in range(config["decoder_layers"] // 2,
                                                                        config["decoder_layers"])
                                           for h in range(config["decoder_attention_heads"])]
    where, vocab = os.path.join(src, "config.json"), config["vocab_size"]
    for key, value in (("suppress_ids", suppress), ("suppress_ids_begin", begin_suppress)):
        if value is not None and not (isinstance(value, list) and all(isinstance(v, int) for v in value)):
            raise CheckpointError(f"{where}: {key} must be a list of token ids, got {value!r}")
        outside = [v for v in value or () if not 0 <= v < vocab]
        if outside:
            raise CheckpointError(f"{where}: {key} has ids outside the model's {vocab}-token vocabulary: {outside}")
    # the ids as OpenAI's checkpoints on the hub have them (bos: <|endoftext|> multilingual, <|startoftranscript|>
    # English-only)
    ids = {"bos_token_id": eot if multilingual else sot, "decoder_start_token_id": sot, "eos_token_id": eot,
           "pad_token_id": eot}
    hf_config = {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
        **config, "num_hidden_layers": config["encoder_layers"],
        "activation_function": "gelu", "activation_dropout": 0.0, "attention_dropout": 0.0, "dropout": 0.0,
        "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0, "init_std": 0.02, "scale_embedding": False,
        "is_encoder_decoder": True, "use_cache": True, "apply_spec_augment": False,
        "max_length": config["max_target_positions"], **ids,
        "suppress_tokens": suppress, "begin_suppress_tokens": begin_suppress,
        "torch_dtype": source_dtype if dtype == "auto" else dtype,
    }
    prompt = ([[1, None], [2, tok["transcribe"]], [3, tok["notimestamps"]]] if multilingual
              else [[1, tok["notimestamps"]]])
    generation = {**ids, "alignment_heads": heads, "begin_suppress_tokens": begin_suppress,
                  "forced_decoder_ids": prompt, "is_multilingual": multilingual,
                  "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
                  "max_length": config["max_target_positions"], "no_timestamps_token_id": tok["notimestamps"],
                  "prev_sot_token_id": tok["startofprev"], "return_timestamps": False, "suppress_tokens": suppress}
    if multilingual:
        generation["lang_to_id"] = tok["langs"]
        generation["task_to_id"] = {"transcribe": tok["transcribe"], "translate": tok["translate"]}
    tokenizer_config = {"tokenizer_class": "WhisperTokenizer", "model_max_length": 1024, "errors": "replace",
                        "add_prefix_space": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                        "processor_class": "WhisperProcessor"}
    # as on the Hub: the special tokens up to <|notimestamps|> (Transformers' decoders find the first timestamp
    # id, and skip the prompt tokens, by this list)
    specials = sorted((t for t in tokenizer.get("added_tokens", []) if t.get("special")), key=lambda t: t["id"])
    tokenizer_config["additional_special_tokens"] = [t["content"] for t in specials if t["id"] <= tok["notimestamps"]]
    preprocessor_path = os.path.join(src, "preprocessor_config.json")
    if os.path.isfile(preprocessor_path):
        with open(preprocessor_path, encoding="utf-8") as f:
            preprocessor = f.read()
    else:
        from .processing.whisper import WhisperFeatureExtractor

        fields = {**WhisperFeatureExtractor(feature_size=config["num_mel_bins"]).to_dict(),
                  "processor_class": "WhisperProcessor"}
        preprocessor = _json(fields)
    return {"config.json": _json(hf_config), "generation_config.json": _json(generation),
            "tokenizer.json": json.dumps(tokenizer, ensure_ascii=False),
            "tokenizer_config.json": _json(tokenizer_config),
            "preprocessor_config.json": preprocessor}


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def convert_ctranslate2(src: str | os.PathLike, dst: str | os.PathLike, dtype: str = "float32",
                        overwrite: bool = False) -> str:
    """Write the CTranslate2 Whisper folder `src` as a Hugging Face Whisper folder `dst`; returns `dst`.

    `dtype`: "float32" (default), "float16", "bfloat16", or "auto" for the source's own float dtype
    (float32 when the source is quantized). An existing non-empty `dst` is replaced only with `overwrite`.
    """
    import torch

    src, dst = os.fspath(src), os.path.abspath(os.fspath(dst))
    if dtype not in ("float32", "float16", "bfloat16", "auto"):
        raise InputError(f"dtype={dtype!r}; expected 'float32', 'float16', 'bfloat16' or 'auto' (the source's)")
    if not os.path.isdir(src):
        raise CheckpointError(f"{src} is not a folder; expected a CTranslate2 model folder with {MODEL_FILE}")
    if not os.path.isfile(os.path.join(src, MODEL_FILE)):
        raise CheckpointError(f"{src} has no {MODEL_FILE}; expected a CTranslate2 model folder")
    if os.path.isdir(dst) and os.listdir(dst) and not overwrite:
        raise CheckpointError(f"{dst} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise CheckpointError(f"{dst} exists and is not a folder")
    config, state_dict, source_dtype = whisper_weights(read_model_bin(os.path.join(src, MODEL_FILE)))
    files = _hf_files(src, config, source_dtype, dtype)
    target = getattr(torch, source_dtype if dtype == "auto" else dtype)
    state_dict = {k: v.to(target).contiguous() for k, v in state_dict.items()}

    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    staging = new_temp_dir(parent, f".{os.path.basename(dst)}.converting-")
    try:
        from safetensors.torch import save_file

        save_file(state_dict, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
        for name, text in files.items():
            with open(os.path.join(staging, name), "w", encoding="utf-8") as f:
                f.write(text)
        seal_tree(staging)
        _swap_in(staging, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dst


def _swap_in(staging: str, dst: str) -> None:
    """Rename the finished folder to `dst`; an old `dst` is moved aside first and removed after."""
    old = None
    if os.path.isdir(dst):
        old = new_temp_dir(os.path.dirname(dst), f".{os.path.basename(dst)}.old-")
        os.rmdir(old)
        os.replace(dst, old)
    try:
        os.replace(staging, dst)
    except OSError:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


CACHE_DIRNAME = "pretrained-ct2"


def cached_conversion(src: str | os.PathLike, options=None) -> str:
    """The HF folder converted from the CTranslate2 folder `src`, made on first use under
    `<hub cache>/../pretrained-ct2/<sha256 of model.bin>/` and reused afterwards."""
    from .gguf.loading import file_digest, hub_cache_dir

    src = os.fspath(src)
    root = os.path.join(os.path.dirname(os.path.abspath(hub_cache_dir(options))), CACHE_DIRNAME)
    folder = os.path.join(root, file_digest(os.path.join(src, MODEL_FILE), root))
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return folder
    os.makedirs(root, exist_ok=True)
    fresh = convert_ctranslate2(src, new_temp_dir(root, ".converting-"))
    try:  # the first finished conversion wins; a rename onto a filled folder fails and ours is dropped
        os.rename(fresh, folder)
    except OSError:
        if not os.path.isfile(os.path.join(folder, "model.safetensors")):
            raise
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return folder
