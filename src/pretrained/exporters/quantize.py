"""Dynamic int8 quantization of an exported folder with ONNX Runtime's quantizer.

    quantize("out/", "out-int8/")       # or: pretrained quantize onnx --mode dynamic-int8 out/ out-int8/

MatMul/Gemm weights are stored as int8, per output channel by default (ONNX Runtime's dynamic
quantizer supports per-channel weights for both); activations are quantized on the fly at run time,
so no calibration data is needed. Every graph of the folder is quantized (a seq2seq export has two).
The companion files (config, tokenizer, generation config) are copied, and export.json gains a
"quantization" entry with the sizes before and after. The accuracy cost is measured by
tests/exporters/test_quantize.py and bench/export.py on MiniLM embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import CheckpointError, InputError
from ..files import atomic_write_text
from .onnx import COMPANION_FILES, EXPORT_FILE, ONNX_FILE, SEQ2SEQ_FILES, read_export_record, require

MODES = ("dynamic-int8",)
_COPIED = ("config.json", "generation_config.json", *COMPANION_FILES)


def quantize(folder: str | os.PathLike, output_dir: str | os.PathLike, mode: str = "dynamic-int8",
             per_channel: bool = True, file_name: str = ONNX_FILE) -> Path:
    """Write the int8 version of each graph of `folder` (`file_name`, or a seq2seq export's encoder and
    decoder) into `output_dir`; returns the folder. export.json's "quantization" has the byte sizes."""
    if mode not in MODES:
        raise InputError(f"mode={mode!r}; supported: {', '.join(MODES)}")
    require("onnx")
    quantization = require("onnxruntime.quantization")
    folder, out = Path(folder), Path(output_dir)
    files = [name for name in SEQ2SEQ_FILES if (folder / name).is_file()] if file_name == ONNX_FILE and not (
        folder / file_name).is_file() else [file_name]
    if not files or not (folder / files[0]).is_file():
        raise CheckpointError(f"{os.fspath(folder)!r} has no ONNX graph {file_name!r} to quantize")
    if out.resolve() == folder.resolve():
        raise InputError("quantize() writes a new folder: output_dir must differ from the input folder")
    out.mkdir(parents=True, exist_ok=True)
    before = after = 0
    for name in files:
        source, target = folder / name, out / name
        partial = target.with_name(f".{name}.partial")
        try:
            quantization.quantize_dynamic(str(source), str(partial), per_channel=per_channel,
                                          weight_type=quantization.QuantType.QInt8,
                                          op_types_to_quantize=["MatMul", "Gemm"])
        except Exception as e:  # protobuf's DecodeError, onnx's checker errors, ...
            if partial.exists():
                partial.unlink()
            raise CheckpointError(f"{os.fspath(source)!r} could not be quantized (is it a valid ONNX graph?): "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        os.replace(partial, target)
        before, after = before + graph_bytes(source), after + graph_bytes(target)
    for name in _COPIED:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
    record = read_export_record(folder)
    record["quantization"] = {"mode": mode, "per_channel": per_channel, "bytes_before": before, "bytes_after": after}
    atomic_write_text(out / EXPORT_FILE, json.dumps(record, indent=2) + "\n")
    return out


def graph_bytes(path: Path) -> int:
    """The graph's bytes, with its external weights file when it has one."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
