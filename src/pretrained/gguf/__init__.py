"""llama.cpp GGUF files: configs, tokenizers and dequantized weights, as Transformers' `gguf_file=`.

    AutoModelForCausalLM.from_pretrained(folder_or_repo, gguf_file="model.Q4_1.gguf")
    AutoTokenizer.from_pretrained("path/to/model.gguf")

reader.py wraps the `gguf` package's reader, quants.py dequantizes, mapping.py turns metadata and
tensor names into our configs and checkpoint keys, tokenizer.py builds the tokenizer, loading.py
locates files and caches the converted results.
"""

from __future__ import annotations

import os

from ..hub import HubOptions
from .loading import GGUFCheckpoint, is_gguf_path, load_config_dict, resolve_gguf

__all__ = ["GGUFCheckpoint", "is_gguf_path", "load_config_dict", "load_tokenizer", "resolve_gguf"]


def load_tokenizer(name_or_path, gguf_file: str | None = None, options: HubOptions | None = None, **kwargs):
    """A PreTrainedTokenizerFast built from the file's `tokenizer.ggml.*` metadata."""
    from ..tokenization.fast import PreTrainedTokenizerFast

    path = resolve_gguf(name_or_path, gguf_file, options)
    tokenizer, config = GGUFCheckpoint(path, options).tokenizer()
    for key in ("trust_remote_code", "use_fast", "_hub_options"):
        kwargs.pop(key, None)
    arguments = {**config, **kwargs, "name_or_path": os.fspath(name_or_path)}
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **arguments)
