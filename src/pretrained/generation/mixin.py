"""GenerationMixin.generate: a thin Transformers-compatible front over `decoding`.

It resolves the GenerationConfig (model's generation_config, then kwargs), checks the request,
builds the logits processors and stopping criteria, picks the cache, and hands the loop to
`decoding.sample` or `decoding.beam_search`.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Mapping

import torch

from ..errors import InputError, UnsupportedOptionError
from ..hub import HubOptions, resolve_file
from ..outputs import BaseModelOutput
from ..cache import Cache, DynamicCache, EncoderDecoderCache, StaticCache
from .config import GENERATION_CONFIG_NAME, CompileConfig, GenerationConfig
from .decoding import Stepper, beam_search, sample, transition_scores
from .processors import (
    EpsilonLogitsWarper, EtaLogitsWarper, ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor,
    InfNanRemoveLogitsProcessor, LogitNormalization, LogitsProcessorList, MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor, MinPLogitsWarper, NoBadWordsLogitsProcessor, NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor, SuppressTokensAtBeginLogitsProcessor, SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper,
)
from .stopping import MaxTimeCriteria, StoppingCriteriaList, StopStringCriteria

# Transformers' generate() arguments for decoding modes pretrained does not implement; None (False for
# synced_gpus) asks for nothing and is accepted
_UNSUPPORTED_ARGUMENTS = ("assistant_model", "assistant_tokenizer", "prefix_allowed_tokens_fn", "negative_prompt_ids",
                          "negative_prompt_attention_mask", "custom_generate", "synced_gpus")


class GenerationMixin:
    """Adds `generate()` to a model whose forward takes past_key_values / use_cache and returns logits."""

    # learned position embeddings end at max_position_embeddings; rotary ones extrapolate
    learned_positions: bool = False

    def init_generation_config(self) -> None:
        self.generation_config = GenerationConfig.from_model_config(self.config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        hub = HubOptions.pop_from(dict(kwargs))
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        name = pretrained_model_name_or_path
        if name is None or os.path.isfile(name):  # a single-file checkpoint (GGUF) has none beside it
            return loaded
        # no generation_config.json: keep the one derived from config.json; a broken one is an error
        path = resolve_file(name, GENERATION_CONFIG_NAME, hub, required=False)
        if path is not None:
            model.generation_config = GenerationConfig.from_json_file(path)
        return loaded

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                                      cache_position=None, **kwargs) -> dict:
        """Forward kwargs for one step; encoder-decoder models override this (encoder outputs, decoder ids)."""
        return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=past_key_values, use_cache=past_key_values is not None,
                    cache_position=cache_position, logits_to_keep=1, **kwargs)

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor | None = None, generation_config: GenerationConfig | None = None,
                 logits_processor: LogitsProcessorList | None = None,
                 stopping_criteria: StoppingCriteriaList | None = None, streamer=None, tokenizer=None, **kwargs):
        if isinstance(inputs, Mapping):  # a BatchEncoding, e.g. apply_chat_template(..., return_dict=True)
            clash = sorted(set(inputs) & set(kwargs))
            if clash:
                raise InputError(f"generate(inputs) got a mapping whose keys {clash} are also passed as arguments; "
                                 "pass generate(**inputs) or one of them")
            kwargs = {**inputs, **kwargs}
            inputs = None
        config = (generation_config or getattr(self, "generation_config", None) or GenerationConfig()).copy()
        model_kwargs = config.update(**kwargs)
        input_ids = inputs if inputs is not None else model_kwargs.pop("input_ids", None)
        attention_mask = model_kwargs.pop("attention_mask", None)
        past_key_values = model_kwargs.pop("past_key_values", None)
        self._check_supported(config, model_kwargs)
        self._check_model_kwargs(model_kwargs)
        device = self.device

        # special tokens
        eos = config.eos_token_id
        eos_ids = None if eos is None else torch.as_tensor([eos] if isinstance(eos, int) else list(eos), device=device)
        pad = config.pad_token_id
        if pad is None and eos_ids is not None:
            pad = int(eos_ids[0])  # Transformers' convention: finished rows are filled with eos
        if getattr(self.config, "is_encoder_decoder", False):  # the prompt feeds the encoder, the loop the decoder
            input_ids, attention_mask = self._start_decoder(config, input_ids, attention_mask, model_kwargs, eos_ids)
        if input_ids is None:
            if config.bos_token_id is None:
                raise InputError("generate() needs input_ids, or a bos_token_id to start from")
            input_ids = torch.full((1, 1), config.bos_token_id, dtype=torch.long, device=device)
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        B, L = input_ids.shape
        if attention_mask is None:
            attention_mask = _default_attention_mask(input_ids, config, eos_ids)

        max_length = L + config.max_new_tokens if config.max_new_tokens is not None else config.max_length
        self._check_request(config, L, max_length, B, streamer, eos_ids, tokenizer)

        processors = self._logits_processors(config, L, eos_ids, attention_mask, max_length, logits_processor)
        stopping = StoppingCriteriaList()
        if config.max_time is not None:
            stopping.append(MaxTimeCriteria(config.max_time))
        if config.stop_strings is not None:
            stopping.append(StopStringCriteria(tokenizer, config.stop_strings))
        stopping.extend(stopping_criteria or [])

        expand = config.num_beams if config.num_beams > 1 else config.num_return_sequences
        if expand > 1:
            input_ids = input_ids.repeat_interleave(expand, dim=0)
            attention_mask = attention_mask.repeat_interleave(expand, dim=0)
        cache = past_key_values
        if cache is None and config.use_cache:
            if config.cache_implementation == "static":
                cache = StaticCache(self.config, max_cache_len=config.max_cache_len or max_length)
            elif config.cache_implementation in (None, "dynamic", "hybrid"):  # Transformers 5 reads "hybrid" as unset
                cache = DynamicCache()
            else:
                raise UnsupportedOptionError(f"cache_implementation={config.cache_implementation!r} is not "
                                             "implemented: expected 'dynamic' or 'static'")
            if getattr(self.config, "is_encoder_decoder", False):
                cache = EncoderDecoderCache(cache, DynamicCache())
        elif cache is not None and not isinstance(cache, Cache):
            raise InputError(f"past_key_values must be a DynamicCache or StaticCache, got {type(cache).__name__}")
        stepper = Stepper(self, attention_mask, cache, max_length, model_kwargs,
                          config.return_dict_in_generate and config.output_attentions,
                          config.return_dict_in_generate and config.output_hidden_states,
                          self._decode_call(config, cache))

        if streamer is not None:
            streamer.put(input_ids.cpu())
        if config.num_beams > 1:
            return beam_search(stepper, input_ids, max_length, processors, stopping, eos_ids, pad, config)
        return sample(stepper, input_ids, max_length, processors, stopping, config.do_sample, eos_ids, pad,
                      streamer, config)

    def compute_transition_scores(self, sequences: torch.Tensor, scores: tuple, beam_indices: torch.Tensor | None = None,
                                  normalize_logits: bool = False) -> torch.Tensor:
        """The score of each generated token at the step that chose it, (rows, generated length), from
        generate(..., output_scores=True, return_dict_in_generate=True)'s sequences, scores and beam_indices."""
        return transition_scores(sequences, scores, beam_indices, normalize_logits)

    def get_compiled_call(self, compile_config: CompileConfig | None = None):
        """`torch.compile(self.__call__)` with `compile_config`'s arguments, built once per config and kept."""
        compile_config = compile_config or CompileConfig()
        if getattr(self, "_compiled_call", None) is None or self._compiled_call_config != compile_config:
            from ..optimize import unfuse_projections

            unfuse_projections(self)  # aliased parameters would make every step recompile
            self._compiled_call = torch.compile(self.__call__, **compile_config.to_dict())
            self._compiled_call_config = copy.deepcopy(compile_config)  # the user may change theirs later
        return self._compiled_call

    # --- pieces ---

    def _decode_call(self, config, cache):
        """What runs the decode steps: the compiled call when a CompileConfig asks for it and the cache is
        static (fixed shapes: one graph for every step). Transformers also compiles unasked on a GPU; here
        it always takes the CompileConfig, since compiling costs seconds that only long or repeated
        generation wins back (and no GPU has checked that path yet)."""
        decoder_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        if (config.disable_compile or config.compile_config is None or decoder_cache is None
                or not decoder_cache.is_static):
            return self
        return self.get_compiled_call(config.compile_config)

    def _start_decoder(self, config, input_ids, attention_mask, model_kwargs: dict, eos_ids):
        """Encoder-decoders: run the encoder once on the prompt, put its output and mask in `model_kwargs`,
        and return the decoder's first ids and mask."""
        encoder_outputs = model_kwargs.get("encoder_outputs")
        if encoder_outputs is None:
            if input_ids is None and model_kwargs.get("inputs_embeds") is None:
                raise InputError(f"{type(self).__name__}.generate() needs input_ids (the encoder's input) or encoder_outputs")
            if attention_mask is None and input_ids is not None:
                attention_mask = _default_attention_mask(input_ids, config, eos_ids)
            record = config.return_dict_in_generate  # the encoder's attentions/hidden states go in the output
            encoder_outputs = self.get_encoder()(input_ids=input_ids, attention_mask=attention_mask,
                                                 inputs_embeds=model_kwargs.pop("inputs_embeds", None),
                                                 output_attentions=record and config.output_attentions,
                                                 output_hidden_states=record and config.output_hidden_states,
                                                 return_dict=True)
        elif isinstance(encoder_outputs, (tuple, list)):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        hidden = encoder_outputs.last_hidden_state  # (B, S, C)
        B = hidden.shape[0]
        # not repeated per beam or returned sequence: cross-attention lets the decoder's B * beams rows
        # share their prompt's keys (attention.attend), projected and read once per prompt
        model_kwargs["encoder_outputs"] = encoder_outputs
        model_kwargs["encoder_attention_mask"] = attention_mask

        start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
        decoder_ids = model_kwargs.pop("decoder_input_ids", None)
        decoder_mask = model_kwargs.pop("decoder_attention_mask", None)
        if start is None and (decoder_ids is None or decoder_ids.shape[1] == 0):
            raise InputError(f"{type(self).__name__}.generate() needs decoder_start_token_id (or bos_token_id) in the "
                             "generation config or the model config to start the decoder; pass decoder_start_token_id=...")
        first = torch.full((B, 1), start if start is not None else 0, dtype=torch.long, device=hidden.device)
        if decoder_ids is None:
            return first, torch.ones_like(first)
        if start is not None and not bool((decoder_ids[:, :1] == start).all()):  # the decoder always starts with it
            decoder_ids = torch.cat([first, decoder_ids], dim=1)
            if decoder_mask is not None:
                decoder_mask = torch.cat([torch.ones_like(decoder_mask[:, :1]), decoder_mask], dim=1)
        return decoder_ids, torch.ones_like(decoder_ids) if decoder_mask is None else decoder_mask

    def _check_supported(self, config, model_kwargs: dict) -> None:
        """Refuse, by name, Transformers' options that would change decoding and that pretrained lacks."""
        asked = [f"{k}={v!r}" for k, v in config.unsupported().items()]
        for name in _UNSUPPORTED_ARGUMENTS:
            value = model_kwargs.pop(name, None)
            if value is not None and value is not False:
                asked.append(name)  # a model or a function: its repr would bury the message
        if asked:
            raise UnsupportedOptionError(f"generate() does not implement {', '.join(asked)}: pretrained has no "
                                         "such decoding mode; leave these unset")

    def _check_model_kwargs(self, model_kwargs: dict) -> None:
        accepted = set()
        for fn in {self.forward, getattr(self.base_model, "forward", self.forward)}:
            accepted |= {name for name, p in inspect.signature(fn).parameters.items() if p.kind != p.VAR_KEYWORD}
        unknown = [k for k in model_kwargs if k not in accepted or k in ("labels", "return_dict")]
        if unknown:
            raise InputError(f"generate() got arguments that are neither generation settings nor inputs of "
                             f"{type(self).__name__}.forward: {sorted(unknown)}")

    def _check_request(self, config, prompt_length, max_length, batch_size, streamer, eos_ids, tokenizer) -> None:
        positions = getattr(self.config, "max_position_embeddings", None)
        if self.learned_positions and positions is not None and prompt_length > positions:
            raise InputError(f"the prompt has {prompt_length} tokens but {type(self).__name__} has "
                             f"max_position_embeddings={positions}; truncate the prompt")
        if self.learned_positions and positions is not None and max_length > positions:
            raise InputError(f"max_length={max_length} exceeds max_position_embeddings={positions} of "
                             f"{type(self).__name__}; lower max_new_tokens")
        if max_length <= prompt_length:
            raise InputError(f"max_length={max_length} leaves no room after a {prompt_length}-token prompt; "
                             "set max_new_tokens instead")
        if streamer is not None and config.num_beams > 1:
            raise InputError("streamer cannot be used with beam search (num_beams > 1): beams change their past tokens")
        if streamer is not None and batch_size * config.num_return_sequences > 1:
            raise InputError(f"a streamer follows one sequence; got {batch_size} prompts x "
                             f"{config.num_return_sequences} return sequences")
        if eos_ids is None and ((config.min_new_tokens or 0) > 0 or (config.min_length or 0) > 0):
            raise InputError("min_new_tokens / min_length need an eos_token_id (none in the generation config "
                             "or the model config); pass eos_token_id=...")
        if config.stop_strings is not None and tokenizer is None:
            raise InputError("stop_strings needs the tokenizer: call generate(..., stop_strings=..., tokenizer=tokenizer)")
        if config.num_return_sequences > 1 and config.num_beams == 1 and not config.do_sample:
            raise InputError(f"greedy search returns one sequence per prompt; num_return_sequences="
                             f"{config.num_return_sequences} needs do_sample=True or num_beams >= that")
        if config.cache_implementation == "static" and config.max_cache_len and config.max_cache_len < max_length:
            raise InputError(f"max_cache_len={config.max_cache_len} is smaller than max_length={max_length}")
        self._check_forced_ids(config)

    def _check_forced_ids(self, config) -> None:
        """Ids that a processor writes into the score row must be rows of the LM head (suppressed ids outside it
        are never produced anyway, and are ignored as Transformers ignores them)."""
        head = self.get_output_embeddings()
        if head is None:
            return
        size = head.weight.shape[0]
        fields = {"forced_bos_token_id": config.forced_bos_token_id, "forced_eos_token_id": config.forced_eos_token_id,
                  "bad_words_ids": config.bad_words_ids}
        for field, value in fields.items():
            ids = [] if value is None else value if isinstance(value, list) else [value]
            ids = [i for item in ids for i in (item if isinstance(item, list) else [item])]  # bad_words_ids nests
            wrong = [i for i in ids if isinstance(i, int) and not 0 <= i < size]
            if wrong:
                raise InputError(f"{field}={value!r} names token ids {wrong} outside the model's vocabulary of "
                                 f"{size} tokens ({type(self).__name__}'s LM head)")

    def _logits_processors(self, config, prompt_length, eos_ids, attention_mask, max_length, user) -> LogitsProcessorList:
        """Transformers' order: penalties and constraints, then the user's, then the sampling warpers, then
        the renormalisation."""
        out = LogitsProcessorList()
        if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
            padding = (attention_mask != 0).int().argmax(dim=1) if not bool(attention_mask.all()) else None
            if padding is not None and config.num_beams > 1:
                padding = padding.repeat_interleave(config.num_beams)
            elif padding is not None and config.num_return_sequences > 1:
                padding = padding.repeat_interleave(config.num_return_sequences)
            out.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty, padding))
        if config.no_repeat_ngram_size:
            out.append(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size))
        if config.bad_words_ids is not None:
            out.append(NoBadWordsLogitsProcessor(config.bad_words_ids, eos_ids))
        if eos_ids is not None and config.min_length:
            out.append(MinLengthLogitsProcessor(config.min_length, eos_ids))
        if eos_ids is not None and config.min_new_tokens:
            out.append(MinNewTokensLengthLogitsProcessor(prompt_length, config.min_new_tokens, eos_ids))
        if config.forced_bos_token_id is not None:
            out.append(ForcedBOSTokenLogitsProcessor(config.forced_bos_token_id))
        if config.forced_eos_token_id is not None:
            out.append(ForcedEOSTokenLogitsProcessor(max_length, config.forced_eos_token_id))
        if config.remove_invalid_values:
            out.append(InfNanRemoveLogitsProcessor())
        if config.suppress_tokens is not None:
            out.append(SuppressTokensLogitsProcessor(config.suppress_tokens))
        if config.begin_suppress_tokens is not None:
            # the first generated token; after a forced BOS (a decoder started from one token) the next one
            forced_first = prompt_length == 1 and config.forced_bos_token_id is not None
            begin = prompt_length + 1 if forced_first else prompt_length
            out.append(SuppressTokensAtBeginLogitsProcessor(config.begin_suppress_tokens, begin))
        for processor in user or []:
            clash = next((p for p in out if type(p) is type(processor)), None)
            if clash is not None:
                raise InputError(f"a {type(processor).__name__} is built from the generation config already; "
                                 "set it there or in logits_processor, not both")
            out.append(processor)
        if config.do_sample:
            keep = (eos_ids.numel() + 1 if eos_ids is not None else 2) if config.num_beams > 1 else 1
            if config.temperature is not None and config.temperature != 1.0:
                out.append(TemperatureLogitsWarper(config.temperature))
            if config.top_k:
                out.append(TopKLogitsWarper(config.top_k, min_tokens_to_keep=keep))
            if config.top_p is not None and config.top_p < 1.0:
                out.append(TopPLogitsWarper(config.top_p, min_tokens_to_keep=keep))
            if config.min_p is not None:
                out.append(MinPLogitsWarper(config.min_p, min_tokens_to_keep=keep))
            if config.typical_p is not None and config.typical_p < 1.0:
                out.append(TypicalLogitsWarper(config.typical_p, min_tokens_to_keep=keep))
            if config.epsilon_cutoff:
                out.append(EpsilonLogitsWarper(config.epsilon_cutoff, min_tokens_to_keep=keep))
            if config.eta_cutoff:
                out.append(EtaLogitsWarper(config.eta_cutoff, min_tokens_to_keep=keep))
        if config.renormalize_logits:  # last, so the scores are log-probabilities whatever came before
            out.append(LogitNormalization())
        return out


def _default_attention_mask(input_ids: torch.Tensor, config, eos_ids) -> torch.Tensor:
    """Mask out pad tokens when the prompt holds some and pad is not also eos; else attend to everything."""
    pad = config.pad_token_id
    if pad is not None and (input_ids == pad).any() and (eos_ids is None or pad not in eos_ids.tolist()):
        return (input_ids != pad).long()
    return torch.ones_like(input_ids)
