"""Text generation: GenerationConfig, logits processors, stopping criteria, streamers,
the decoding loop and the `generate()` front that models with an LM head inherit. The KV caches
live in `pretrained.cache` (models own them)."""

from .config import CompileConfig, GenerationConfig
from .mixin import GenerationMixin
from .processors import (
    EpsilonLogitsWarper, EtaLogitsWarper, ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor,
    InfNanRemoveLogitsProcessor, LogitNormalization, LogitsProcessor, LogitsProcessorList, LogitsWarper,
    MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor, MinPLogitsWarper, NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor, SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper,
)
from .stopping import (
    EosTokenCriteria, MaxLengthCriteria, MaxTimeCriteria, StoppingCriteria, StoppingCriteriaList, StopStringCriteria,
)
from .streamers import BaseStreamer, TextIteratorStreamer, TextStreamer
