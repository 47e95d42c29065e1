"""Dynamic int8 quantization of an exported folder with ONNX Runtime's quantizer.

    quantize("out/", "out-int8/")       # or: ORTModelFor*.from_pretrained("out-int8/")

MatMul/Gemm weights are stored as int8 (per output channel by default); activations are quantized
on the fly at run time, so no calibration data is needed. The companion files (config, tokenizer,
generation config) are copied, and export.json gains a "quantization" entry with the sizes before
and after. The accuracy cost is measured outside: bench/export.py on MiniLM embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import CheckpointError, InputError
from .onnx import EXPORT_FILE, read_export_record, require

MODES = ("dynamic-int8",)
_COPIED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
           "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json",
           "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


def quantize(folder: str | os.PathLike, output_dir: str | os.PathLike, mode: str = "dynamic-int8",
             per_channel: bool = True, file_name: str = "model.onnx") -> Path:
    """Write `output_dir`/model.onnx, the int8 version of `folder`/model.onnx; returns the folder."""
    if mode not in MODES:
        raise InputError(f"mode={mode!r}; supported: {', '.join(MODES)}")
    require("onnx")
    quantization = require("onnxruntime.quantization")
    source = Path(folder) / file_name
    if not source.is_file():
        raise CheckpointError(f"{os.fspath(folder)!r} has no ONNX graph {file_name!r} to quantize")
    out = Path(output_dir)
    if out.resolve() == Path(folder).resolve():
        raise InputError("quantize() writes a new folder: output_dir must differ from the input folder")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.onnx"
    quantization.quantize_dynamic(str(source), str(target), per_channel=per_channel,
                                  weight_type=quantization.QuantType.QInt8,
                                  op_types_to_quantize=["MatMul", "Gemm"])
    for name in _COPIED:
        if (Path(folder) / name).is_file():
            shutil.copyfile(Path(folder) / name, out / name)
    record = read_export_record(folder)
    record["quantization"] = {"mode": mode, "per_channel": per_channel, "bytes_before": _size(source),
                              "bytes_after": _size(target)}
    (out / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def _size(path: Path) -> int:
    """The graph's bytes, with its external weights file when it has one."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
