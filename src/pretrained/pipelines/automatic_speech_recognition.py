"""automatic-speech-recognition: text from up to 30 s of speech with Whisper.

Inputs: a WAV file path or WAV bytes (8/16/24/32-bit PCM through the standard library; other formats with
soundfile installed), a 1-D float array at the feature extractor's rate, or {"raw" (or "array"): samples,
"sampling_rate": rate}, which is resampled (Hann-windowed sinc). Several channels are averaged. URLs are
refused. Output: {"text": ...}. Longer audio needs chunking (`chunk_length_s`), which is not implemented
yet: such input is refused with the length it has, as are `return_timestamps`.
"""

from __future__ import annotations

import numpy as np

from ..processing.audio import load_audio, resample
from .base import Pipeline, PipelineError


class AutomaticSpeechRecognitionPipeline(Pipeline):
    task = "automatic-speech-recognition"

    def __call__(self, inputs=None, *args, **kwargs):
        if isinstance(inputs, np.ndarray):  # one clip, not a stream of samples
            return super().__call__([inputs], *args, **kwargs)[0]
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, return_timestamps=None, chunk_length_s=None, stride_length_s=None,
                             generate_kwargs=None, max_new_tokens=None, return_language=None):
        for name, value in (("return_timestamps", return_timestamps), ("chunk_length_s", chunk_length_s),
                            ("stride_length_s", stride_length_s), ("return_language", return_language)):
            if value:
                raise PipelineError(f"automatic-speech-recognition: {name} is not implemented yet; pass clips of at "
                                    "most 30 s without it")
        forward = dict(generate_kwargs or {})
        if max_new_tokens is not None:
            forward["max_new_tokens"] = max_new_tokens
        return {}, forward, {}

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def samples(self, inputs) -> np.ndarray:
        """Mono float32 samples at the feature extractor's rate."""
        if isinstance(inputs, (str, bytes, bytearray)) or hasattr(inputs, "__fspath__"):
            audio, rate = load_audio(inputs)
        elif isinstance(inputs, dict):
            unknown = set(inputs) - {"raw", "array", "sampling_rate", "path"}
            if unknown or "sampling_rate" not in inputs or not ({"raw", "array"} & set(inputs)):
                raise PipelineError("an audio dict holds 'raw' (or 'array') samples and their 'sampling_rate'; "
                                    f"got keys {sorted(inputs)}")
            audio, rate = np.asarray(inputs.get("raw", inputs.get("array"))), int(inputs["sampling_rate"])
        elif isinstance(inputs, np.ndarray):
            audio, rate = inputs, self.sampling_rate
        else:
            raise PipelineError(f"automatic-speech-recognition takes a WAV path, WAV bytes, a float array or "
                                f"{{'raw', 'sampling_rate'}}; got {type(inputs).__name__}")
        if audio.ndim == 2:  # (samples, channels) or (channels, samples): average the channels
            audio = audio.mean(axis=1 if audio.shape[1] < audio.shape[0] else 0)
        if audio.ndim != 1 or audio.size == 0:
            raise PipelineError(f"the audio has no samples to transcribe (shape {audio.shape})")
        if not np.issubdtype(audio.dtype, np.floating):
            raise PipelineError(f"audio samples must be floats in [-1, 1], got dtype {audio.dtype}; scale integer "
                                "PCM (int16: divide by 32768) or pass the file")
        audio = resample(audio.astype(np.float32), rate, self.sampling_rate)
        limit = self.feature_extractor.n_samples
        if len(audio) > limit:
            raise PipelineError(f"the audio lasts {len(audio) / self.sampling_rate:.1f} s; Whisper reads at most "
                                f"{limit / self.sampling_rate:.0f} s at a time and chunking is not implemented yet")
        return audio

    def preprocess(self, inputs) -> dict:
        features = self.feature_extractor(self.samples(inputs), sampling_rate=self.sampling_rate,
                                          return_tensors="pt")["input_features"]
        return {"input_features": features.to(self.model.dtype)}

    def _forward(self, model_inputs: dict, **generate_kwargs) -> dict:
        return {"tokens": self.model.generate(model_inputs["input_features"], **generate_kwargs)}

    def postprocess(self, model_outputs: dict) -> dict:
        return {"text": self.tokenizer.decode(model_outputs["tokens"][0], skip_special_tokens=True)}
