"""Logits processors: `(input_ids, scores) -> scores`, applied in order before a token is picked.

The math lives in small pure functions over a (B, V) float tensor; the classes are thin,
Transformers-shaped wrappers (same names and constructor arguments) so user code that builds a
`LogitsProcessorList` keeps working. Filters write -inf (a warper's filter_value) where a token is removed.
"""

from __future__ import annotations

import math
import numbers

import torch
from ..errors import ConfigError

NEG_INF = -float("inf")


# --- pure functions ---

def apply_temperature(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    return scores / temperature


def top_k_filter(scores: torch.Tensor, k: int, min_keep: int = 1, filter_value: float = NEG_INF) -> torch.Tensor:
    """Keep the k highest scores (ties with the k-th kept too)."""
    k = min(max(k, min_keep), scores.shape[-1])
    kth = torch.topk(scores, k)[0][..., -1, None]
    return scores.masked_fill(scores < kth, filter_value)


def top_p_filter(scores: torch.Tensor, p: float, min_keep: int = 1, filter_value: float = NEG_INF) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely tokens whose probability reaches p."""
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - p)
    remove[..., -min_keep:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), filter_value)


def min_p_filter(scores: torch.Tensor, min_p: float, min_keep: int = 1, filter_value: float = NEG_INF) -> torch.Tensor:
    """Remove tokens whose probability is below min_p times the top token's."""
    probs = scores.softmax(dim=-1)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    order = torch.argsort(scores, descending=True, dim=-1)
    sorted_remove = remove.gather(1, order)
    sorted_remove[..., :min_keep] = False
    return scores.masked_fill(sorted_remove.scatter(1, order, sorted_remove), filter_value)


def typical_filter(scores: torch.Tensor, mass: float, min_keep: int = 1, filter_value: float = NEG_INF) -> torch.Tensor:
    """Locally typical sampling: keep tokens whose surprisal is closest to the entropy, up to `mass`."""
    log_probs = scores.log_softmax(dim=-1)
    entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)
    sorted_shift, order = torch.sort((-log_probs - entropy).abs())
    cumulative = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=1).clamp_(max=scores.shape[-1] - 1)
    sorted_remove = sorted_shift > sorted_shift.gather(1, last.view(-1, 1))
    sorted_remove[..., :min_keep] = False
    return scores.masked_fill(sorted_remove.scatter(1, order, sorted_remove), filter_value)


def epsilon_filter(scores: torch.Tensor, epsilon: float, min_keep: int = 1,
                   filter_value: float = NEG_INF) -> torch.Tensor:
    """Epsilon sampling: remove tokens whose probability is below `epsilon`, keeping the `min_keep` best."""
    return _filter_below(scores, scores.softmax(dim=-1) < epsilon, min_keep, filter_value)


def eta_filter(scores: torch.Tensor, epsilon: float, min_keep: int = 1, filter_value: float = NEG_INF) -> torch.Tensor:
    """Eta sampling: epsilon sampling whose cutoff min(epsilon, sqrt(epsilon) * exp(-entropy)) falls as
    the distribution flattens."""
    probs = scores.softmax(dim=-1)
    # a removed token (-inf) contributes 0 * -inf: clamp its log-probability to a finite value first
    log_probs = scores.log_softmax(dim=-1).clamp(min=torch.finfo(scores.dtype).min)
    entropy = -(log_probs * probs).sum(dim=-1, keepdim=True)  # (B, 1)
    eta = torch.clamp(math.sqrt(epsilon) * torch.exp(-entropy), max=epsilon)
    return _filter_below(scores, probs < eta, min_keep, filter_value)


def _filter_below(scores: torch.Tensor, remove: torch.Tensor, min_keep: int, filter_value: float) -> torch.Tensor:
    """Apply `remove`, sparing every token that scores at least the `min_keep`-th best."""
    kth = torch.topk(scores, min(min_keep, scores.shape[-1]))[0][..., -1, None]
    return scores.masked_fill(remove & (scores < kth), filter_value)


def remove_inf_nan(scores: torch.Tensor) -> torch.Tensor:
    """nan -> 0, +inf -> the dtype's largest finite value, -inf -> its smallest."""
    finfo = torch.finfo(scores.dtype)
    return torch.nan_to_num(scores, nan=0.0, posinf=finfo.max, neginf=finfo.min)


def repetition_penalty(input_ids: torch.Tensor, scores: torch.Tensor, penalty: float,
                       ignore_before: torch.Tensor | None = None) -> torch.Tensor:
    """Make every token already in a row less likely (CTRL): divide positive scores by `penalty`,
    multiply negative ones. Positions before `ignore_before[row]` (left padding) do not count."""
    if ignore_before is not None:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # padding becomes an out-of-vocabulary id that an extra column absorbs
        input_ids = input_ids.masked_fill(positions[None] < ignore_before[:, None].to(input_ids.device), scores.shape[-1])
        scores = torch.cat([scores, scores.new_zeros(scores.shape[0], 1)], dim=-1)
    picked = scores.gather(1, input_ids)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    scores = scores.scatter(1, input_ids, picked)
    return scores[:, :-1] if ignore_before is not None else scores


def banned_ngram_tokens(row: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in `row`."""
    if len(row) + 1 < n:
        return []
    prefix = tuple(row[len(row) - n + 1:])
    return [row[i + n - 1] for i in range(len(row) - n + 1) if tuple(row[i:i + n - 1]) == prefix]


def ban_tokens(scores: torch.Tensor, token_ids) -> torch.Tensor:
    ids = torch.as_tensor(token_ids, dtype=torch.long, device=scores.device).view(-1)
    ids = ids[(ids >= 0) & (ids < scores.shape[-1])]  # ids outside the LM head's vocabulary are never produced
    return scores.index_fill(-1, ids, NEG_INF)


# --- Transformers-shaped classes ---

class LogitsProcessor:
    """Base: `__call__(input_ids (B, L), scores (B, V)) -> scores (B, V)`."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(input_ids, scores)")


LogitsWarper = LogitsProcessor


class LogitsProcessorList(list):
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.FloatTensor:
        for processor in self:
            scores = processor(input_ids, scores, **kwargs) if kwargs else processor(input_ids, scores)
        return scores


class TemperatureLogitsWarper(LogitsProcessor):
    def __init__(self, temperature: float):
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ConfigError(f"temperature must be a float > 0, got {temperature!r}")
        self.temperature = temperature

    def __call__(self, input_ids, scores):
        return apply_temperature(scores, self.temperature)


class TopKLogitsWarper(LogitsProcessor):
    def __init__(self, top_k: int, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or top_k <= 0:
            raise ConfigError(f"top_k must be an int > 0, got {top_k!r}")
        self.top_k, self.filter_value, self.min_tokens_to_keep = top_k, filter_value, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        return top_k_filter(scores, self.top_k, self.min_tokens_to_keep, self.filter_value)


class TopPLogitsWarper(LogitsProcessor):
    def __init__(self, top_p: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
        if not 0 <= float(top_p) <= 1:
            raise ConfigError(f"top_p must be in [0, 1], got {top_p!r}")
        self.top_p, self.filter_value, self.min_tokens_to_keep = float(top_p), filter_value, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        return top_p_filter(scores, self.top_p, self.min_tokens_to_keep, self.filter_value)


class MinPLogitsWarper(LogitsProcessor):
    def __init__(self, min_p: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
        if not 0 <= float(min_p) <= 1:
            raise ConfigError(f"min_p must be in [0, 1], got {min_p!r}")
        self.min_p, self.filter_value, self.min_tokens_to_keep = float(min_p), filter_value, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        return min_p_filter(scores, self.min_p, self.min_tokens_to_keep, self.filter_value)


class TypicalLogitsWarper(LogitsProcessor):
    def __init__(self, mass: float = 0.9, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
        if not 0 < float(mass) < 1:
            raise ConfigError(f"typical_p must be in (0, 1), got {mass!r}")
        self.mass, self.filter_value, self.min_tokens_to_keep = float(mass), filter_value, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        return typical_filter(scores, self.mass, self.min_tokens_to_keep, self.filter_value)


class EpsilonLogitsWarper(LogitsProcessor):
    def __init__(self, epsilon: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
        self.epsilon = _cutoff(epsilon, "epsilon_cutoff")
        self.filter_value, self.min_tokens_to_keep = filter_value, _min_tokens(min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        return epsilon_filter(scores, self.epsilon, self.min_tokens_to_keep, self.filter_value)


class EtaLogitsWarper(LogitsProcessor):
    def __init__(self, epsilon: float, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1, device=None):
        self.epsilon = _cutoff(epsilon, "eta_cutoff")
        self.filter_value, self.min_tokens_to_keep = filter_value, _min_tokens(min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        return eta_filter(scores, self.epsilon, self.min_tokens_to_keep, self.filter_value)


def _cutoff(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ConfigError(f"{name} must be a float in (0, 1), got {value!r}")
    return float(value)


def _min_tokens(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"min_tokens_to_keep must be an int >= 1, got {value!r}")
    return int(value)


class RepetitionPenaltyLogitsProcessor(LogitsProcessor):
    def __init__(self, penalty: float, prompt_ignore_length: torch.Tensor | None = None):
        if not isinstance(penalty, (int, float)) or penalty <= 0:
            raise ConfigError(f"repetition_penalty must be a float > 0, got {penalty!r}")
        self.penalty, self.prompt_ignore_length = float(penalty), prompt_ignore_length

    def __call__(self, input_ids, scores):
        return repetition_penalty(input_ids, scores, self.penalty, self.prompt_ignore_length)


class NoRepeatNGramLogitsProcessor(LogitsProcessor):
    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ConfigError(f"no_repeat_ngram_size must be an int > 0, got {ngram_size!r}")
        self.ngram_size = ngram_size

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        for b, row in enumerate(input_ids.tolist()):
            banned = banned_ngram_tokens(row, self.ngram_size)
            if banned:
                scores[b, banned] = NEG_INF
        return scores


class NoBadWordsLogitsProcessor(LogitsProcessor):
    """Ban single tokens always, and the last token of a multi-token sequence when the row ends with its prefix."""

    def __init__(self, bad_words_ids: list[list[int]], eos_token_id=None):
        if not isinstance(bad_words_ids, list) or not bad_words_ids or not all(
                isinstance(w, list) and w and all(isinstance(t, int) and t >= 0 for t in w) for w in bad_words_ids):
            raise ConfigError(f"bad_words_ids must be a non-empty list of non-empty lists of token ids, got {bad_words_ids!r}")
        eos = [] if eos_token_id is None else torch.as_tensor(eos_token_id).view(-1).tolist()
        words = [w for w in bad_words_ids if w not in ([e] for e in eos)]
        self.single = [w[0] for w in words if len(w) == 1]
        self.multi = [w for w in words if len(w) > 1]

    def __call__(self, input_ids, scores):
        if self.single:
            scores = ban_tokens(scores, self.single)
        if self.multi:
            scores = scores.clone()
            rows = input_ids.tolist()
            for b, row in enumerate(rows):
                for word in self.multi:
                    prefix = word[:-1]
                    if len(row) >= len(prefix) and row[len(row) - len(prefix):] == prefix:
                        scores[b, word[-1]] = NEG_INF
        return scores


class MinLengthLogitsProcessor(LogitsProcessor):
    def __init__(self, min_length: int, eos_token_id, device=None):
        self.min_length, self.eos = min_length, torch.as_tensor(eos_token_id).view(-1)

    def __call__(self, input_ids, scores):
        return ban_tokens(scores, self.eos) if input_ids.shape[-1] < self.min_length else scores


class MinNewTokensLengthLogitsProcessor(LogitsProcessor):
    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id, device=None):
        self.prompt_length, self.min_new_tokens = prompt_length_to_skip, min_new_tokens
        self.eos = torch.as_tensor(eos_token_id).view(-1)

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] - self.prompt_length < self.min_new_tokens:
            return ban_tokens(scores, self.eos)
        return scores


class SuppressTokensLogitsProcessor(LogitsProcessor):
    def __init__(self, suppress_tokens, device=None):
        self.tokens = list(suppress_tokens)

    def __call__(self, input_ids, scores):
        return ban_tokens(scores, self.tokens)


class SuppressTokensAtBeginLogitsProcessor(LogitsProcessor):
    """Ban tokens at one step only: when the rows are `begin_index` tokens long (the first generated token)."""

    def __init__(self, begin_suppress_tokens, begin_index: int, device=None):
        self.tokens, self.begin_index = list(begin_suppress_tokens), begin_index

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index

    def __call__(self, input_ids, scores):
        return ban_tokens(scores, self.tokens) if input_ids.shape[-1] == self.begin_index else scores


class ForcedBOSTokenLogitsProcessor(LogitsProcessor):
    """Encoder-decoders: the first token after the decoder start must be `bos_token_id` (e.g. a language code)."""

    def __init__(self, bos_token_id: int):
        self.bos = bos_token_id

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] == 1:
            forced = torch.full_like(scores, NEG_INF)
            forced[:, self.bos] = 0
            return forced
        return scores


class ForcedEOSTokenLogitsProcessor(LogitsProcessor):
    """At the last allowed position, only eos may be chosen."""

    def __init__(self, max_length: int, eos_token_id, device=None):
        self.max_length, self.eos = max_length, torch.as_tensor(eos_token_id).view(-1)

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] == self.max_length - 1:
            forced = torch.full_like(scores, NEG_INF)
            forced[:, self.eos.to(scores.device)] = 0
            return forced
        return scores


class InfNanRemoveLogitsProcessor(LogitsProcessor):
    def __call__(self, input_ids, scores):
        return remove_inf_nan(scores)


class LogitNormalization(LogitsProcessor):
    """Log-softmax: generate() applies it after every other processor (renormalize_logits=True)."""

    def __call__(self, input_ids, scores):
        return scores.log_softmax(dim=-1)
