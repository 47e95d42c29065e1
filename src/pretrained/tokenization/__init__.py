"""Tokenizers: one API (base.py) over three backends: Rust `tokenizers` (fast.py), pure Python
WordPiece / byte-level BPE (python.py) and SentencePiece (sentencepiece.py); per-model classes in
models.py (Whisper's in whisper.py), AutoTokenizer in auto.py, chat templates in chat.py, file round trip in
loading.py.

Names resolve lazily so that importing one backend does not import the others.
"""

from importlib import import_module

_EXPORTS = {
    "BatchEncoding": "encoding",
    "PreTrainedTokenizerBase": "base",
    "PreTrainedTokenizerFast": "fast",
    "PreTrainedTokenizer": "python",
    "SentencePieceTokenizer": "sentencepiece",
    "AutoTokenizer": "auto",
    "BertTokenizer": "models",
    "BertTokenizerFast": "models",
    "DistilBertTokenizer": "models",
    "DistilBertTokenizerFast": "models",
    "GPT2Tokenizer": "models",
    "GPT2TokenizerFast": "models",
    "RobertaTokenizer": "models",
    "BartTokenizer": "models",
    "CLIPTokenizer": "models",
    "CLIPTokenizerFast": "models",
    "BartTokenizerFast": "models",
    "RobertaTokenizerFast": "models",
    "LlamaTokenizer": "models",
    "LlamaTokenizerFast": "models",
    "T5Tokenizer": "models",
    "T5TokenizerFast": "models",
    "XLMRobertaTokenizerFast": "models",
    "DebertaV2Tokenizer": "models",
    "DebertaV2TokenizerFast": "models",
    "MPNetTokenizerFast": "models",
    "WhisperTokenizer": "whisper",
    "WhisperTokenizerFast": "whisper",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained.tokenization' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
