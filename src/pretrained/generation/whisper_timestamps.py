"""Whisper's timestamps: the logits rules that make generate() emit them, sequential (long-form) decoding,
the decoding of timestamped token ids (one 30 s window or overlapping windows of long audio) into text and
timed chunks, and word times from cross-attention (median filter + dynamic time warping, as Whisper does).

Token ids at and above `timestamp_begin` (<|notimestamps|> + 1) are times: id `timestamp_begin + k` is
`k * time_precision` seconds into the window (0.02 s for real checkpoints: 30 s over 1500 encoder frames).
A segment is a start time, text tokens, an end time; two times in a row close one segment and open the next.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..tokenization.whisper import window_ended_alone
from .processors import LogitsProcessor

NEG_INF = float("-inf")


class WhisperTimeStampLogitsProcessor(LogitsProcessor):
    """Whisper's timestamp grammar over the generated part of each row (from `begin_index`):
    - <|notimestamps|> is never generated; the first token is a time (at most `max_initial_timestamp_index`);
    - times come in pairs: after one time that follows text, only another time or eos/special tokens; after a
      pair, text (a new segment starts with the second time of the pair);
    - times never go back: a time below the last one (or, after a pair, at it) is banned;
    - when the times together are more probable than the best text token, a time is forced."""

    def __init__(self, no_timestamps_token_id: int, eos_token_id: int, begin_index: int,
                 max_initial_timestamp_index: int | None = None, detect_timestamp_from_logprob: bool = True):
        self.no_timestamps = no_timestamps_token_id
        self.timestamp_begin = no_timestamps_token_id + 1
        self.eos = eos_token_id
        self.begin_index = begin_index
        self.max_initial = max_initial_timestamp_index
        self.from_logprob = detect_timestamp_from_logprob

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        tb = self.timestamp_begin
        scores[:, self.no_timestamps] = NEG_INF
        lowest = []  # per row: the smallest time it may still emit
        for k, row in enumerate(input_ids[:, self.begin_index:].tolist()):
            last_time = len(row) >= 1 and row[-1] >= tb
            before_last_time = len(row) < 2 or row[-2] >= tb
            if last_time:
                if before_last_time:  # a pair just closed: text next
                    scores[k, tb:] = NEG_INF
                else:  # a lone time ends a segment: its partner (or the end) next
                    scores[k, :self.eos] = NEG_INF
            times = [t for t in row if t >= tb]
            if not times:
                lowest.append(tb)
            else:  # the partner of a lone time may repeat it; otherwise strictly later
                lowest.append(times[-1] if last_time and not before_last_time else times[-1] + 1)
        vocab = torch.arange(scores.shape[-1], device=scores.device)
        floor = torch.tensor(lowest, device=scores.device).unsqueeze(-1)
        scores.masked_fill_((vocab >= tb) & (vocab < floor), NEG_INF)
        if input_ids.shape[1] == self.begin_index:  # the first generated token is a time
            scores[:, :tb] = NEG_INF
            if self.max_initial is not None:
                scores[:, tb + self.max_initial + 1:] = NEG_INF
        if self.from_logprob:
            logprobs = torch.log_softmax(scores.float(), dim=-1)
            time_mass = logprobs[:, tb:].logsumexp(dim=-1)
            best_text = logprobs[:, :tb].max(dim=-1).values
            scores[:, :tb].masked_fill_((time_mass > best_text).unsqueeze(-1), NEG_INF)
        return scores


def merge_overlaps(sequences: list[list[int]], times: list[list] | None = None):
    """Join token lists of overlapping windows: each next list is slid along the end of what is joined so far,
    the alignment with the largest share of equal tokens (ties to the longer overlap; at least two equal
    tokens) wins, and the overlap is split in its middle: its first half from the left list, the rest from
    the right one. `times` (per token (start, end)) are cut the same way, and a token only matches when its
    time on the left is not after its time on the right. Returns the tokens, or (tokens, times)."""
    left = list(sequences[0])
    left_times = list(times[0]) if times else None
    out, out_times = [], []
    for n, right in enumerate(sequences[1:], start=1):
        right_times = times[n] if times else None
        nl, nr = len(left), len(right)
        best, span = 0.0, (nl, nl, 0, 0)
        for i in range(1, nl + nr):  # i: how far the right list is shifted into the left one
            l0, l1 = max(0, nl - i), min(nl, nl + nr - i)
            r0, r1 = max(0, i - nl), min(nr, i)
            if times:
                matches = sum(1 for a in range(l1 - l0) if left[l0 + a] == right[r0 + a]
                              and left_times[l0 + a] <= right_times[r0 + a])
            else:
                matches = int(np.sum(np.array(left[l0:l1]) == np.array(right[r0:r1])))
            score = matches / i + i / 10000.0  # the small bonus favours longer perfect overlaps
            if matches > 1 and score > best:
                best, span = score, (l0, l1, r0, r1)
        l0, l1, r0, r1 = span
        cut_left, cut_right = (l0 + l1) // 2, (r0 + r1) // 2
        out.extend(left[:cut_left])
        left = list(right[cut_right:])
        if times:
            out_times.extend(left_times[:cut_left])
            left_times = list(right_times[cut_right:])
    out.extend(left)
    if times is None:
        return out
    return out, out_times + (left_times if times else [])


def decode_chunks(outputs: list[dict], decode, *, timestamp_begin: int, special_ids, time_precision: float,
                  return_timestamps=False, return_language: bool = False, language_of=lambda token_id: None,
                  words_of=None, segment_size: int = 1500) -> tuple[str, dict]:
    """Text (and chunks) of the generated ids of one input, given window by window.

    Each output holds `tokens` (generated ids, prompt removed), and for windows of long audio `stride`
    = (window, left overlap, right overlap) in seconds; with return_timestamps="word", `token_timestamps`
    (the end time of each token in the window). Times inside the overlaps are not trusted: a segment that
    starts in a left overlap or ends in a right one is carried on and its tokens merged across windows
    (`merge_overlaps`). Times are rounded to 0.01 s. `decode(ids)` is the tokenizer's, `language_of(id)` names
    a language token's language (None for other special ids), `words_of(tokens, times, language)` groups
    timed tokens into words. Returns (text, {"chunks": [...]}) when timestamps or languages are asked for."""
    word_level = return_timestamps == "word"
    last_language = None

    def new_chunk():
        return {"language": last_language, "timestamp": [None, None], "text": ""}

    def close(chunk, pending, pending_times):
        tokens, times = merge_overlaps(pending, pending_times) if word_level else (merge_overlaps(pending), None)
        chunk["text"] = decode(tokens)
        if word_level:
            chunk["words"] = words_of(tokens, times, last_language)
        chunks.append(chunk)

    chunks, chunk = [], new_chunk()
    offset = 0.0  # seconds from the start of the audio to the start of this window's trusted part
    pending, pending_times = [], []  # token lists (per window) of the open chunk
    skip = False
    for out in outputs:
        ids = list(out["tokens"])
        token_times = list(out["token_timestamps"]) if word_level else None
        last_trusted = None  # the first time id in the right overlap (and all after it) is not trusted
        first_trusted = timestamp_begin
        seg_max = seg_before = segments_len = 0.0  # long-form output: times restarting at 0 go on from the last
        stride = out.get("stride")
        if stride is not None:
            window, stride_left, stride_right = stride
            offset -= stride_left
            right_start = window - stride_right
            if stride_left:
                first_trusted = stride_left / time_precision + timestamp_begin
            if stride_right:
                for token in reversed(ids):
                    if token >= timestamp_begin:
                        if last_trusted is not None and (token - timestamp_begin) * time_precision < right_start:
                            break
                        last_trusted = token
        current, current_times = [], []
        for i, token in enumerate(ids):
            if token in special_ids:
                language = language_of(token)
                if language is not None:
                    if last_language and language != last_language and not return_timestamps:
                        pending.append(current)  # another language: the text so far is one chunk
                        close(chunk, pending, None)
                        pending, current = [], []
                        chunk = new_chunk()
                    chunk["language"] = language
                    last_language = language
            elif token >= timestamp_begin:
                t = (token - timestamp_begin) * time_precision
                if t < seg_max:  # a new segment of a long-form output
                    if window_ended_alone(ids, i, timestamp_begin):
                        segments_len += time_precision * segment_size
                    else:
                        seg_max = seg_before
                        segments_len += seg_before
                seg_before, seg_max = seg_max, t
                time = round((token - timestamp_begin) * time_precision + offset + segments_len, 2)
                if last_trusted and token >= last_trusted:
                    skip = True  # in the right overlap: so is its partner; the next window has the segment
                elif skip or (pending and token < first_trusted):
                    skip = False
                elif chunk["timestamp"][0] is None:
                    chunk["timestamp"][0] = time
                elif time != chunk["timestamp"][0]:  # an end (an end equal to the start is read as a start)
                    chunk["timestamp"][1] = time
                    pending.append(current)
                    if word_level:
                        pending_times.append(current_times)
                    close(chunk, pending, pending_times)
                    pending, current, pending_times, current_times = [], [], [], []
                    chunk = new_chunk()
            else:
                current.append(token)
                if word_level:
                    start = round((token_times[i - 1] if i else 0.0) + offset, 2)
                    current_times.append((start, round(token_times[i] + offset, 2)))
        if stride is not None:
            offset += window - stride_right
        if current:
            pending.append(current)
            if word_level:
                pending_times.append(current_times)
        elif not any(pending):
            chunk, pending, pending_times = new_chunk(), [], []
    if pending:  # no closing time (or no timestamps at all)
        close(chunk, pending, pending_times)
    text = "".join(c["text"] for c in chunks)
    if not (return_timestamps or return_language):
        return text, {}
    for c in chunks:
        if return_timestamps:
            c["timestamp"] = tuple(c["timestamp"])
        else:
            del c["timestamp"]
        if not return_language:
            del c["language"]
    if word_level:
        return text, {"chunks": [w for c in chunks for w in c["words"]]}
    return text, {"chunks": chunks}


def sequential_generate(model, input_features: torch.Tensor, num_frames: list[int] | None = None,
                        return_timestamps: bool = False, audio_frames: list[int] | None = None,
                        time_precision: float | None = None, **generate_kwargs):
    """Whisper's sequential decoding, window after window, as Transformers 5's Whisper generate() does.

    Each row's features are read from a seek position: 30 s (the encoder's window) from there, padded with
    zeros, are transcribed; the text up to the last closed segment (two times in a row) is kept and the seek
    moves to that segment's end, or past the window when the output ends with one time or has no segment
    pair. Until every row's `num_frames` (default: all its frames) is read. Returns, per row, the decoder prompt
    of its first window and the kept generated ids of all windows (times restart at 0 in each window; no
    end-of-sequence tokens); and with `audio_frames` (frames holding audio, per row) the time in seconds of
    each kept token from the start of the audio (`token_times`), else None."""
    frames_per_position = 2  # feature frames per encoder position: Whisper's second convolution has stride 2
    window = frames_per_position * model.config.max_source_positions
    B, _, total = input_features.shape
    max_frames = [total] * B if num_frames is None else [int(n) for n in num_frames]
    g = generate_kwargs.get("generation_config") or model.generation_config
    no_timestamps = getattr(g, "no_timestamps_token_id", None)
    timestamp_begin = no_timestamps + 1 if no_timestamps is not None else model.config.vocab_size
    eos = g.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
    if generate_kwargs.get("decoder_input_ids") is not None:
        prompt_length = generate_kwargs["decoder_input_ids"].shape[-1]
    else:
        prompt_length = len(model.decoder_prompt(generate_kwargs.get("language"), generate_kwargs.get("task"),
                                                 return_timestamps))
    seek = [0] * B
    prompts: list = [None] * B
    kept: list[list[int]] = [[] for _ in range(B)]
    kept_times: list | None = [[] for _ in range(B)] if audio_frames is not None else None
    while True:
        active = [i for i in range(B) if seek[i] < max_frames[i]]
        if not active:
            return prompts, kept, kept_times
        pieces, spans = [], []
        for i in active:
            span = min(max_frames[i] - seek[i], window)
            piece = input_features[i:i + 1, :, seek[i]:seek[i] + span]
            pieces.append(torch.nn.functional.pad(piece, (0, window - piece.shape[-1])))
            spans.append(span)
        kwargs = dict(generate_kwargs)
        if kwargs.get("decoder_input_ids") is not None:
            kwargs["decoder_input_ids"] = kwargs["decoder_input_ids"][active]
        out = model.generate(torch.cat(pieces), return_timestamps=return_timestamps, **kwargs)
        if kept_times is not None:
            times = token_times(model, torch.cat(pieces), out, prompt_length,
                                [audio_frames[i] - seek[i] for i in active], time_precision)
        for r, (row, i, span) in enumerate(zip(out.tolist(), active, spans)):
            if prompts[i] is None:
                prompts[i] = row[:prompt_length]
            generated = row[prompt_length:]
            generated = generated[:next((k for k, t in enumerate(generated) if t in eos), len(generated))]
            tokens, advance = _closed_segments(generated, timestamp_begin, frames_per_position)
            kept[i].extend(tokens)
            if kept_times is not None:  # float32, as the times of one window plus the window's start
                start = torch.tensor(seek[i] * time_precision / frames_per_position, dtype=torch.float64)
                kept_times[i].extend((times[r, prompt_length:prompt_length + len(tokens)] + start).tolist())
            seek[i] += advance if advance is not None and advance > 0 else span


def _closed_segments(ids: list[int], timestamp_begin: int, frames_per_position: int) -> tuple[list[int], int | None]:
    """(the ids up to the last closed segment, frames to advance; None: the whole window was read)."""
    is_time = [t >= timestamp_begin for t in ids]
    pairs = [k + 1 for k in range(len(ids) - 1) if is_time[k] and is_time[k + 1]]
    single_ending = is_time[-2:] == [False, True]
    if not pairs or single_ending:  # no pair: one segment; a lone final time: nothing said after it
        return ids, None
    end = pairs[-1] + 1  # the pair's second time stays with the segment
    return ids[:end], (ids[end - 2] - timestamp_begin) * frames_per_position


# --- word timestamps: cross-attention of the alignment heads, aligned to the audio by dynamic time warping ---

def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of odd `width` along the last axis, edges mirrored (3-D input)."""
    if width <= 0 or width % 2 != 1:
        raise ConfigError(f"median_filter_width={width}; expected a positive odd number")
    half = width // 2
    if x.shape[-1] <= half:
        return x
    x = torch.nn.functional.pad(x, (half, half, 0, 0), mode="reflect")
    return x.unfold(-1, width, 1).median(dim=-1).values


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through a (tokens, frames) cost matrix: (token indices, frame indices).
    Steps are diagonal, down (next token, same frame) or right (same token, next frame); a tie goes right,
    then down. Totals are kept in float32, as Whisper does (the ties depend on it)."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    step = np.full((n + 1, m + 1), -1, dtype=np.int8)
    total[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            diag, down, right = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
            if diag < down and diag < right:
                best, step[i, j] = diag, 0
            elif down < diag and down < right:
                best, step[i, j] = down, 1
            else:
                best, step[i, j] = right, 2
            total[i, j] = cost[i - 1, j - 1] + best
    step[0, :], step[:, 0] = 2, 1  # along the edges the path can only go one way
    i, j, tokens, frames = n, m, [], []
    while i > 0 or j > 0:
        tokens.append(i - 1)
        frames.append(j - 1)
        if step[i, j] == 0:
            i, j = i - 1, j - 1
        elif step[i, j] == 1:
            i -= 1
        else:
            j -= 1
    return np.array(tokens[::-1]), np.array(frames[::-1])


@torch.no_grad()
def token_times(model, input_features: torch.Tensor, sequences: torch.Tensor, prompt_length: int,
                audio_frames: list[int], time_precision: float) -> torch.Tensor:
    """(B, T) float32 seconds at which each token of `sequences` (prompt + generated, as generate() returned
    them) is said, inside its 30 s window: the cross-attention of the generation config's `alignment_heads`,
    over the frames that hold audio, normalised per frame, median-filtered, averaged over heads and aligned by
    `dtw`; a token's time is where the path first reaches it. Prompt tokens are at 0, the last token (which
    feeds no step) repeats the time before it."""
    heads = model.generation_config.alignment_heads
    out = model(input_features, decoder_input_ids=sequences[:, :-1], output_attentions=True, return_dict=True)
    weights = torch.stack([out.cross_attentions[layer][:, head] for layer, head in heads], dim=1)  # (B, h, T-1, S)
    weights = weights[:, :, prompt_length:].float()
    times = torch.zeros(sequences.shape, dtype=torch.float32)
    if weights.shape[2] == 0:
        return times
    width = getattr(model.config, "median_filter_width", 7)
    if len(set(audio_frames)) == 1:  # Transformers crops the whole batch first when the counts agree
        weights = weights[..., :audio_frames[0] // 2]
    for b in range(sequences.shape[0]):
        w = weights[b, ..., :audio_frames[b] // 2]  # two feature frames per encoder position
        w = (w - w.mean(dim=-2, keepdim=True)) / w.std(dim=-2, keepdim=True, unbiased=False)
        w = median_filter(w, width).mean(dim=0)
        token_idx, frame_idx = dtw(-w.double().cpu().numpy())
        first = np.concatenate([[True], np.diff(token_idx) > 0])
        jumps = torch.tensor(frame_idx[first] * time_precision)
        times[b] = torch.cat([torch.zeros(prompt_length), jumps, jumps[-1:]])
    return times


PREPENDED = "\"'“¡¿([{-"
APPENDED = "\"'.。,，!！?？:：”)]}、"
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
UNSPACED_LANGUAGES = {"chinese", "japanese", "thai", "lao", "myanmar", "cantonese"}


def group_words(decode, tokens: list[int], times: list[tuple], language: str | None, eos_token_id: int,
                return_language: bool, default_language: str | None = None) -> list[dict]:
    """Words of timed tokens: tokens joined until they decode to whole characters; then, except for languages
    written without spaces, a piece that starts without a space (and is no punctuation or special token)
    joins the word before it; opening punctuation joins the next word, closing punctuation the previous one.
    Each word spans its first token's start to its last token's end."""
    pieces = _whole_characters(decode, tokens)
    if (language or default_language or "english") not in UNSPACED_LANGUAGES:
        words: list = []
        for text, idx in pieces:
            starts_word = (tokens[idx[0]] >= eos_token_id or text.startswith(" ")
                           or text.strip() in PUNCTUATION or not words)
            if starts_word:
                words.append([text, list(idx)])
            else:
                words[-1][0] += text
                words[-1][1].extend(idx)
        pieces = words
    pieces = _attach_punctuation([[t, list(i)] for t, i in pieces])
    extra = {"language": language} if return_language else {}
    return [{"text": text, "timestamp": (times[idx[0]][0], times[idx[-1]][1]), **extra} for text, idx in pieces]


def _whole_characters(decode, tokens: list[int]) -> list[tuple[str, list[int]]]:
    full = decode(tokens)
    out, ids, offset = [], [], 0
    for k in range(len(tokens)):
        ids.append(k)
        text = decode([tokens[i] for i in ids])
        bad = text.find("\ufffd")
        # a replacement character ends a piece only where the whole text has one too (a real invalid byte)
        if bad < 0 or offset + bad >= len(full) or full[offset + bad] == "\ufffd":
            out.append((text, ids))
            offset += len(text)
            ids = []
    return out


def _attach_punctuation(words: list[list]) -> list[list]:
    i = len(words) - 2
    j = len(words) - 1
    while i >= 0:  # opening marks go to the word after them
        if words[i][0].startswith(" ") and words[i][0].strip() in PREPENDED:
            words[j] = [words[i][0] + words[j][0], words[i][1] + words[j][1]]
            words[i] = ["", []]
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(words):  # closing marks go to the word before them
        if not words[i][0].endswith(" ") and words[j][0] in APPENDED:
            words[i] = [words[i][0] + words[j][0], words[i][1] + words[j][1]]
            words[j] = ["", []]
        else:
            i = j
        j += 1
    return [w for w in words if w[0] and w[1]]
