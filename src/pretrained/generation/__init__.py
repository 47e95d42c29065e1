"""Text generation: GenerationConfig, KV caches, logits processors, stopping criteria, streamers,
the decoding loop and the `generate()` front that models with an LM head inherit."""

from .cache import Cache, DynamicCache, EncoderDecoderCache, StaticCache
from .config import CompileConfig, GenerationConfig
from .mixin import GenerationMixin
from .processors import (
    ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor, LogitsProcessor, LogitsProcessorList, LogitsWarper,
    MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper, NoBadWordsLogitsProcessor, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper,
)
from .stopping import (
    EosTokenCriteria, MaxLengthCriteria, MaxTimeCriteria, StoppingCriteria, StoppingCriteriaList, StopStringCriteria,
)
from .streamers import BaseStreamer, TextIteratorStreamer, TextStreamer
