"""WhisperFeatureExtractor: 16 kHz mono audio -> (batch, 80 or 128, 3000) log-mel features, padded or truncated
to 30 s, with Transformers' keys, defaults and numbers (and, with `return_attention_mask`, a frame mask)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .audio import log_mel_spectrogram, mel_filter_bank
from .base import BatchFeature, ProcessorConfig

_PADDINGS = ("max_length", "longest", "do_not_pad", True, False)


class WhisperFeatureExtractor(ProcessorConfig):
    type_key = "feature_extractor_type"
    model_input_names = ["input_features"]
    defaults: dict[str, Any] = {
        "feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400,
        "padding_value": 0.0, "dither": 0.0, "return_attention_mask": False, "padding_side": "right",
    }
    derived = ("n_samples", "nb_max_frames", "mel_filters")  # recomputed from the fields; older files store them

    def __init__(self, **kwargs: Any):
        for name in self.derived:
            kwargs.pop(name, None)
        super().__init__(**kwargs)
        if self.padding_side not in ("right", "left"):
            raise InputError(f"padding_side={self.padding_side!r}; expected 'right' or 'left'")
        self.n_samples = self.chunk_length * self.sampling_rate
        self.nb_max_frames = self.n_samples // self.hop_length
        self.mel_filters = mel_filter_bank(1 + self.n_fft // 2, self.feature_size, 0.0, 8000.0, self.sampling_rate)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "n_samples": self.n_samples, "nb_max_frames": self.nb_max_frames}

    def __call__(self, raw_speech, truncation: bool = True, pad_to_multiple_of: int | None = None,
                 return_tensors=None, return_attention_mask: bool | None = None, padding="max_length",
                 max_length: int | None = None, sampling_rate: int | None = None, do_normalize: bool | None = None,
                 device: str | None = "cpu") -> BatchFeature:
        """One clip (1-D array or list of floats) or a batch (list of clips, or a 2-D array); mono only."""
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise InputError(f"sampling_rate={sampling_rate}, but this feature extractor expects {self.sampling_rate} Hz "
                             "audio; resample it first")
        if device not in (None, "cpu"):
            raise InputError(f"device={device!r}: features are computed on the CPU")
        if padding not in _PADDINGS:
            raise InputError(f"padding={padding!r}; expected one of {_PADDINGS}")
        clips = self._clips(raw_speech)
        target = max_length or self.n_samples
        if truncation:
            clips = [c[:target] for c in clips]
        if padding in ("longest", True):
            target = max(len(c) for c in clips)
        elif padding in ("do_not_pad", False):
            target = None
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        want_mask = bool(return_attention_mask or do_normalize)
        sizes = [len(c) if target is None else max(target, len(c)) for c in clips]
        if len(set(sizes)) == 1:  # padded straight into the batch array the STFT reads
            batch = np.full((len(clips), sizes[0]), self.padding_value, dtype=np.float32)
            padded = list(batch)
        else:
            batch, padded = None, [np.full(n, self.padding_value, dtype=np.float32) for n in sizes]
        masks = []
        for clip, row in zip(clips, padded):
            real = slice(len(row) - len(clip), None) if self.padding_side == "left" else slice(0, len(clip))
            row[real] = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7) if do_normalize else clip
            if want_mask:
                mask = np.zeros(len(row), dtype=np.int32)
                mask[real] = 1
                masks.append(mask)
        if batch is not None:
            features = list(log_mel_spectrogram(batch, self.mel_filters, self.n_fft, self.hop_length, self.dither))
        else:  # unpadded clips of different lengths: one spectrogram each
            features = [log_mel_spectrogram(c[None], self.mel_filters, self.n_fft, self.hop_length, self.dither)[0]
                        for c in padded]
        out = {"input_features": features}
        if return_attention_mask:  # one entry per frame: the mask sampled every hop, the last one dropped
            out["attention_mask"] = [m[::self.hop_length][:-1] if len(m) % self.hop_length else m[::self.hop_length]
                                     for m in masks]
        elif want_mask:  # do_normalize alone returns the per-sample mask it used, as Transformers does
            out["attention_mask"] = masks
        return BatchFeature(out, tensor_type=return_tensors)

    @staticmethod
    def _clips(raw_speech) -> list[np.ndarray]:
        def mono(x) -> np.ndarray:
            x = np.asarray(x)
            if x.ndim != 1:
                raise InputError(f"each clip must be mono audio, a 1-D array of samples; got shape {x.shape} "
                                 "(average the channels of stereo audio first)")
            if not np.issubdtype(x.dtype, np.floating):
                raise InputError(f"audio samples must be floats in [-1, 1], got dtype {x.dtype}")
            return x.astype(np.float32)

        if isinstance(raw_speech, np.ndarray):
            if raw_speech.ndim > 2:
                raise InputError(f"audio must be (samples,) or (batch, samples); got shape {raw_speech.shape}")
            return [mono(c) for c in raw_speech] if raw_speech.ndim == 2 else [mono(raw_speech)]
        if isinstance(raw_speech, (list, tuple)) and raw_speech and isinstance(raw_speech[0], (np.ndarray, list, tuple)):
            return [mono(np.asarray(c, dtype=np.float32) if isinstance(c, (list, tuple)) else c) for c in raw_speech]
        if isinstance(raw_speech, (list, tuple)) and raw_speech:
            return [mono(np.asarray(raw_speech, dtype=np.float32))]
        raise InputError("raw_speech must be a 1-D array, a list of floats or a batch of them; "
                         f"got {type(raw_speech).__name__}")


class WhisperProcessor:
    """Whisper's feature extractor and tokenizer behind one object: audio -> input_features, text -> labels."""

    attributes = ["feature_extractor", "tokenizer"]

    def __init__(self, feature_extractor=None, tokenizer=None):
        if feature_extractor is None or tokenizer is None:
            raise InputError("WhisperProcessor needs both a feature_extractor and a tokenizer")
        self.feature_extractor, self.tokenizer = feature_extractor, tokenizer

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any):
        from ..hub import hub_kwargs
        from ..tokenization.auto import AutoTokenizer
        from .auto import AutoFeatureExtractor

        extractor = AutoFeatureExtractor.from_pretrained(pretrained_model_name_or_path, **hub_kwargs(kwargs))
        return cls(extractor, AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs))

    def save_pretrained(self, save_directory, **kwargs: Any) -> None:
        self.tokenizer.save_pretrained(save_directory, **kwargs)
        self.feature_extractor.extra["processor_class"] = type(self).__name__
        self.feature_extractor.save_pretrained(save_directory)

    def __call__(self, audio=None, text=None, sampling_rate: int | None = None, return_tensors=None, **kwargs: Any):
        """Audio keywords go to the feature extractor; `text` is tokenized into `labels` (with audio) or returned."""
        if audio is None and text is None:
            raise InputError("WhisperProcessor needs audio, text or both")
        out = None
        if audio is not None:
            out = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs)
        if text is None:
            return out
        encoded = self.tokenizer(text, return_tensors=return_tensors)
        if out is None:
            return encoded
        out["labels"] = encoded["input_ids"]
        return out

    def get_decoder_prompt_ids(self, task: str | None = None, language: str | None = None, no_timestamps: bool = True):
        """[(position, token id)] forced after <|startoftranscript|>: language, task, <|notimestamps|>. A
        WhisperTokenizer answers itself (and takes them as its encoding prefix, as in Transformers)."""
        if hasattr(self.tokenizer, "get_decoder_prompt_ids"):
            return self.tokenizer.get_decoder_prompt_ids(task=task, language=language, no_timestamps=no_timestamps)
        tokens = [f"<|{language}|>" if language and not language.startswith("<|") else language,
                  f"<|{task}|>" if task else None, "<|notimestamps|>" if no_timestamps else None]
        ids = []
        for token in filter(None, tokens):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == getattr(self.tokenizer, "unk_token_id", None):
                raise InputError(f"the tokenizer has no {token} token")
            ids.append((len(ids) + 1, token_id))
        return ids

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


FEATURE_EXTRACTORS = {"WhisperFeatureExtractor": WhisperFeatureExtractor}
