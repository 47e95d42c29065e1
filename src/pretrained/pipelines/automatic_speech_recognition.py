"""automatic-speech-recognition: text from speech with Whisper.

Inputs: a WAV file path or WAV bytes (8/16/24/32-bit PCM through the standard library; other formats with
soundfile installed), a 1-D float array at the feature extractor's rate, or {"raw" (or "array"): samples,
"sampling_rate": rate}, which is resampled (Hann-windowed sinc). Several channels are averaged. URLs are
refused. Output: {"text": ...}, with "chunks" when timestamps or languages are asked for.

Long audio: Whisper reads 30 s at a time. With `chunk_length_s` the audio is cut into windows of that length
that overlap by `stride_length_s` (default chunk_length_s / 6) on each side; the windows are transcribed (in
batches of `batch_size`, windows of several inputs sharing a batch) and their tokens merged where the
overlaps agree, as Transformers' pipeline does. Audio longer than 30 s without `chunk_length_s` is decoded
sequentially as Transformers 5 does for Whisper: all its frames, one 30 s window after another, each window
starting where the last closed segment of the previous one ended (timestamps are generated for that even
when not returned). The same sequential rule applies inside one window: text after the last closed segment
is decoded again from that segment's end.

`return_timestamps=True`: segments {"timestamp": (start, end), "text"} from Whisper's timestamp tokens, times
in seconds from the start of the audio (across windows too). `return_timestamps="word"`: words with their times, from
the cross-attention of the generation config's `alignment_heads` aligned to the audio by dynamic time warping
(refused for checkpoints without alignment_heads). `return_language=True`: each chunk's language ("language":
None for English-only checkpoints, which have no language token, as Transformers); multilingual checkpoints
given no `language=` detect it from each input's first 30 s (each chunk's, with `chunk_length_s`).

Decoding defaults, as Transformers' pipeline (after OpenAI's Whisper): beam search with 5 beams and at most 256
new tokens, unless the call or the model's generation_config.json sets them (num_beams=1 for greedy).
"""

from __future__ import annotations

import numpy as np
import torch

from ..generation.whisper_timestamps import decode_chunks, group_words, sequential_generate
from ..tokenization.whisper import LANGUAGES
from ..processing.audio import load_audio, resample
from .base import Pipeline, PipelineError


class AutomaticSpeechRecognitionPipeline(Pipeline):
    task = "automatic-speech-recognition"
    chunked = True  # preprocess gives the windows of one input; postprocess merges their outputs
    generation_defaults = {"max_new_tokens": 256, "num_beams": 5}

    def __call__(self, inputs=None, *args, **kwargs):
        if isinstance(inputs, np.ndarray):  # one clip, not a stream of samples
            return super().__call__([inputs], *args, **kwargs)[0]
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, return_timestamps=None, chunk_length_s=None, stride_length_s=None,
                             generate_kwargs=None, max_new_tokens=None, return_language=None, **generate_options):
        pre, forward, post = {}, {**(generate_kwargs or {}), **generate_options}, {}
        if chunk_length_s is not None:
            pre["chunk_length_s"] = chunk_length_s
        if stride_length_s is not None:
            if chunk_length_s is None:
                raise PipelineError("stride_length_s is the overlap of chunks: pass chunk_length_s with it")
            pre["stride_length_s"] = stride_length_s
        if max_new_tokens is not None:
            forward["max_new_tokens"] = max_new_tokens
        if return_timestamps is None:
            return_timestamps = getattr(getattr(self.model, "generation_config", None), "return_timestamps", None)
        if return_timestamps is not None:
            if return_timestamps not in (True, False, "word"):
                raise PipelineError(f"return_timestamps={return_timestamps!r}; Whisper gives segment (True) or word "
                                    "('word') timestamps")
            if return_timestamps == "word" and not getattr(self.model.generation_config, "alignment_heads", None):
                raise PipelineError("return_timestamps='word' needs the cross-attention heads that follow the audio: "
                                    "this checkpoint's generation_config.json has no alignment_heads")
            forward["return_timestamps"] = post["return_timestamps"] = return_timestamps
        if return_language is not None:
            forward["return_language"] = post["return_language"] = bool(return_language)
        return pre, forward, post

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
        return resample(audio.astype(np.float32), rate, self.sampling_rate)

    def preprocess(self, inputs, chunk_length_s: float | None = None, stride_length_s=None) -> list[dict]:
        audio = self.samples(inputs)
        limit = self.feature_extractor.n_samples
        if not chunk_length_s:
            if len(audio) <= limit:
                return [self._features(audio)]
            # long-form: all the frames, read window after window by sequential decoding
            features = self._features(audio, truncation=False, padding="longest")
            return [{**features, "num_frames": features["input_features"].shape[-1]}]
        return [{**self._features(window), "stride": stride}
                for window, stride in self.windows(audio, chunk_length_s, stride_length_s)]

    def windows(self, audio: np.ndarray, chunk_length_s: float, stride_length_s=None):
        """(samples, (window, left overlap, right overlap) in samples) of windows `chunk_length_s` long, each
        overlapping the previous one by left + right; the first has no left overlap, the last no right one."""
        sr, limit = self.sampling_rate, self.feature_extractor.n_samples
        if not isinstance(chunk_length_s, (int, float)) or chunk_length_s <= 0:
            raise PipelineError(f"chunk_length_s={chunk_length_s!r}; expected a positive number of seconds")
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        left_s, right_s = ((stride_length_s, stride_length_s) if isinstance(stride_length_s, (int, float))
                           else tuple(stride_length_s))
        window, left, right = (int(round(s * sr)) for s in (chunk_length_s, left_s, right_s))
        if window > limit:
            raise PipelineError(f"chunk_length_s={chunk_length_s} is longer than the {limit / sr:.0f} s Whisper reads")
        if min(left, right) < 0 or window <= left + right:
            raise PipelineError(f"stride_length_s={stride_length_s!r}: the overlaps ({left_s} s + {right_s} s) must be "
                                f"non-negative and shorter than chunk_length_s={chunk_length_s}")
        step = window - left - right
        for start in range(0, len(audio), step):
            piece = audio[start:start + window]
            last = start + window >= len(audio)
            overlap_left = 0 if start == 0 else left
            if len(piece) > overlap_left:  # a last window inside the previous one's overlap adds nothing
                yield piece, (len(piece), overlap_left, 0 if last else right)
            if last:
                break

    def _features(self, audio: np.ndarray, **options) -> dict:
        """input_features, and the number of feature frames that hold audio (word timestamps read only those)."""
        features = self.feature_extractor(audio, sampling_rate=self.sampling_rate, return_tensors="pt",
                                          return_attention_mask=True, **options)
        return {"input_features": features["input_features"].to(self.model.dtype),
                "audio_frames": int(features["attention_mask"].sum())}

    def _forward(self, model_inputs: dict, return_timestamps=False, return_language: bool = False,
                 **generate_kwargs) -> dict:
        generate_kwargs = self.generate_kwargs(generate_kwargs)
        features = model_inputs["input_features"]
        num_frames = model_inputs.get("num_frames")
        # long-form decoding needs times to know where each window's text ends
        timestamps = bool(return_timestamps) or num_frames is not None
        g = generate_kwargs.get("generation_config") or self.model.generation_config
        task = generate_kwargs.get("task")
        if generate_kwargs.get("decoder_input_ids") is None and self.model.needs_language_detection(
                generate_kwargs.get("language"), task, g):
            # each input's language from its first 30 s, kept for all its windows (as Transformers' long-form)
            window = 2 * self.model.config.max_source_positions
            detected = self.model.detect_language(features[:, :, :window], generation_config=g).tolist()
            prompts = [self.model.decoder_prompt(None, task, timestamps, found, g) for found in detected]
            generate_kwargs["decoder_input_ids"] = torch.tensor(prompts, device=self.model.device)
            generate_kwargs.pop("task", None)  # written into the prompts
        words = return_timestamps == "word"
        prompts, generated, times = sequential_generate(
            self.model, features, num_frames, timestamps, audio_frames=model_inputs["audio_frames"] if words else None,
            time_precision=self._time_precision(), **generate_kwargs)
        languages = set((getattr(self.model.generation_config, "lang_to_id", None) or {}).values())
        rows = []
        for prompt, ids in zip(prompts, generated):
            # the prompt's language token goes first: the chunks report it (not timed, as in Transformers)
            language = [t for t in prompt if t in languages][:1] if return_language else []
            rows.append(language + ids)
        out = {"tokens": rows, **({"token_timestamps": times} if words else {})}
        if "stride" in model_inputs:
            out["stride"] = model_inputs["stride"]
        return out

    def _collate(self, batch: list[dict], side: str) -> dict:
        """Long-form features of different lengths are padded with zeros along the frames."""
        frames = max(x["input_features"].shape[-1] for x in batch)
        padded = [{**x, "input_features": torch.nn.functional.pad(x["input_features"],
                                                                  (0, frames - x["input_features"].shape[-1]))}
                  for x in batch]
        return super()._collate(padded, side)

    def postprocess(self, model_outputs: list[dict], return_timestamps=None, return_language=None) -> dict:
        sr = self.sampling_rate
        outputs = []
        for out in model_outputs:
            item = {k: out[k] for k in ("tokens", "token_timestamps") if k in out}
            if "stride" in out:
                item["stride"] = tuple(n / sr for n in out["stride"])
            outputs.append(item)
        text, optional = decode_chunks(
            outputs, self._decode, timestamp_begin=self._timestamp_begin(),
            special_ids=set(self.tokenizer.all_special_ids), time_precision=self._time_precision(),
            return_timestamps=return_timestamps, return_language=bool(return_language),
            language_of=self._language_of, segment_size=self.model.config.max_source_positions,
            words_of=lambda tokens, times, language: self._words(tokens, times, language, bool(return_language)))
        return {"text": text, **optional}

    def _words(self, tokens: list[int], times: list, language: str | None, return_language: bool) -> list[dict]:
        eos = self.model.generation_config.eos_token_id
        return group_words(self.tokenizer.decode, tokens, times, language, eos[0] if isinstance(eos, (list, tuple))
                           else eos, return_language, getattr(self.tokenizer, "language", None))

    def _decode(self, ids: list[int]) -> str:
        # ids the tokenizer marks special without listing them in all_special_ids stay out of the text too
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _timestamp_begin(self) -> int:
        no_timestamps = getattr(self.model.generation_config, "no_timestamps_token_id", None)
        if no_timestamps is None:
            no_timestamps = self.tokenizer.convert_tokens_to_ids("<|notimestamps|>")
        if no_timestamps is None:
            raise PipelineError("the checkpoint names no <|notimestamps|> token (generation_config.json "
                                "no_timestamps_token_id or the tokenizer): Whisper's timestamp ids start after it")
        return no_timestamps + 1

    def _time_precision(self) -> float:
        """Seconds per timestamp step: the window over the encoder's positions (30 s / 1500 = 0.02 s)."""
        return self.feature_extractor.chunk_length / self.model.config.max_source_positions

    def _language_of(self, token_id: int) -> str | None:
        token = self.tokenizer.convert_ids_to_tokens(token_id)
        return LANGUAGES.get(token[2:-2]) if isinstance(token, str) else None
