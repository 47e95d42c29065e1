"""Whisper: a log-mel encoder (two convolutions, fixed positions) and a BART-style pre-norm decoder.

The blocks are BART's (`models/bart.py`, pre-norm, a final LayerNorm per stack) with Whisper's bias-free key
projections; the decoder's positions are learned without BART's offset. Module paths equal the checkpoint
keys (`model.encoder.conv1`, `model.encoder.layers.0.self_attn.k_proj`, `model.decoder.embed_positions`,
`proj_out`, tied to `model.decoder.embed_tokens`).

generate() writes Whisper's decoder prompt (start of transcript, language and task for multilingual
checkpoints, no-timestamps) from the generation config and decodes greedily or with beams; a multilingual
checkpoint given no language detects it per row (`detect_language`: one decoder step, the likeliest language
token); with
`return_timestamps=True` the prompt has no <|notimestamps|> and `generation/whisper_timestamps.py`'s logits
rules make the model emit segment times.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError, UnsupportedOptionError
from ..heads import Seq2SeqLMHead, shift_tokens_right, token_loss
from ..layers import get_activation
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput, finish
from ..stack import run_layers
from .bart import BartLayer, BartStack, LearnedPositions


class WhisperConfig(PretrainedConfig):
    model_type = "whisper"
    attribute_map = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model",
                     "num_hidden_layers": "encoder_layers", "num_key_value_heads": "encoder_attention_heads"}
    positive_fields = ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                       "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "num_mel_bins",
                       "max_source_positions", "max_target_positions")

    vocab_size: int = 51865
    num_mel_bins: int = 80
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    decoder_layers: int = 4
    decoder_attention_heads: int = 6
    decoder_ffn_dim: int = 1536
    encoder_ffn_dim: int = 1536
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    decoder_start_token_id: int | None = 50257
    use_cache: bool = True
    is_encoder_decoder: bool = True
    activation_function: str = "gelu"
    d_model: int = 384
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    scale_embedding: bool = False
    max_source_positions: int = 1500
    max_target_positions: int = 448
    pad_token_id: int | None = 50256
    bos_token_id: int | None = 50256
    eos_token_id: int | list | None = 50256
    suppress_tokens: list | None = None
    begin_suppress_tokens: list | tuple | None = (220, 50256)
    apply_spec_augment: bool = False
    tie_word_embeddings: bool = True

    # BART's layout switches, fixed for Whisper (class constants, not config.json fields)
    normalize_before = True
    add_final_layer_norm = True
    normalize_embedding = False
    static_position_embeddings = False

    @property
    def max_position_embeddings(self) -> int:
        return self.max_target_positions

    def validate(self) -> None:
        super().validate()
        if self.apply_spec_augment:
            raise ConfigError("WhisperConfig.apply_spec_augment=True (SpecAugment during training) is not supported")
        for heads in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, heads):
                raise ConfigError(f"WhisperConfig.d_model ({self.d_model}) must be divisible by {heads}")
        get_activation(self.activation_function, "activation_function")


class WhisperPositions(LearnedPositions):
    offset = 0  # position p is row p


class WhisperLayer(BartLayer):
    """BART's pre-norm block; Whisper's key projections have no bias."""

    def __init__(self, config, layer_idx: int, is_decoder: bool):
        super().__init__(config, layer_idx, is_decoder)
        for attn in (self.self_attn, getattr(self, "encoder_attn", None)):
            if attn is not None:
                attn.k_proj = nn.Linear(config.d_model, config.d_model, bias=False)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's encoder positions (length, channels): sines in the first half of the features, cosines in the second."""
    increment = torch.log(torch.tensor(max_timescale)) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2))
    scaled = torch.arange(length).view(-1, 1) * inv_timescales.view(1, -1)
    return torch.cat([scaled.sin(), scaled.cos()], dim=1)


class WhisperEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv1d(config.num_mel_bins, config.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, config.d_model)
        self.embed_positions.requires_grad_(False)
        self.layers = nn.ModuleList(WhisperLayer(config, i, False) for i in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.gradient_checkpointing = False

    def forward(self, input_features=None, attention_mask=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        """`attention_mask` is accepted and unused, as in Whisper: the encoder always reads all 30 s."""
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        frames = config.max_source_positions * 2  # conv2 halves the frames
        shape = None if input_features is None else tuple(input_features.shape)
        if shape is None or shape[1:] != (config.num_mel_bins, frames):
            raise InputError(f"Whisper's encoder needs input_features of shape (batch, {config.num_mel_bins}, {frames}) "
                             f"(30 s of log-mel frames, padded by WhisperFeatureExtractor), got {shape}")
        x = input_features.to(self.conv1.weight.dtype)
        x = F.gelu(self.conv2(F.gelu(self.conv1(x)))).transpose(1, 2)  # (B, 1500, C)
        x = self.dropout(x + self.embed_positions.weight)
        out = run_layers(self, self.layers, x, None, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, layerdrop=config.encoder_layerdrop)
        x = self.layer_norm(out.last_hidden_state)
        hidden_states = out.hidden_states + (x,) if output_hidden_states else None
        return finish(BaseModelOutput(x, hidden_states, out.attentions),
                      config.return_dict if return_dict is None else return_dict)


class WhisperDecoder(BartStack):
    def __init__(self, config):
        super().__init__(config, nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id),
                         is_decoder=True)
        self.embed_positions = WhisperPositions(config.max_target_positions, config.d_model)
        self.layers = nn.ModuleList(WhisperLayer(config, i, True) for i in range(config.decoder_layers))


class WhisperPreTrainedModel(PreTrainedModel):
    config_class = WhisperConfig
    base_model_prefix = "model"
    main_input_name = "input_features"
    init_std_field = "init_std"
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv1d):
            module.weight.data.normal_(0.0, self.config.init_std)
            module.bias.data.zero_()
        elif isinstance(module, WhisperEncoder):
            module.embed_positions.weight.data.copy_(sinusoids(*module.embed_positions.weight.shape))


class WhisperModel(WhisperPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.decoder = WhisperDecoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value):
        self.decoder.embed_tokens = value

    def get_encoder(self):
        return self.encoder

    def forward(self, input_features=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, decoder_inputs_embeds=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, cache_position=None):
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise InputError(f"{type(self).__name__} needs decoder_input_ids, decoder_inputs_embeds or labels")
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_features, return_dict=True, **flags)
        elif isinstance(encoder_outputs, (tuple, list)):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        dec = self.decoder(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                           inputs_embeds=decoder_inputs_embeds, encoder_hidden_states=encoder_outputs.last_hidden_state,
                           past_key_values=past_key_values, cache_position=cache_position,
                           use_cache=self.config.use_cache if use_cache is None else use_cache, **flags)
        out = Seq2SeqModelOutput(dec.last_hidden_state, dec.past_key_values, dec.hidden_states, dec.attentions,
                                 dec.cross_attentions, encoder_outputs.last_hidden_state,
                                 encoder_outputs.hidden_states, encoder_outputs.attentions)
        return finish(out, self.config.return_dict if return_dict is None else return_dict)


class WhisperGenerationMixin:
    """Whisper's generate() front: the decoder prompt (start, language, task, timestamps), language detection
    and the timestamp rules, over any model with Whisper's config, get_encoder() and a seq2seq generate()
    after this class in its MRO: the PyTorch model, and the exported graphs run by ONNX Runtime or OpenVINO."""

    def decoder_prompt(self, language: str | None = None, task: str | None = None, return_timestamps: bool = False,
                       detected_language: int | None = None, generation_config=None) -> list[int]:
        """Whisper's forced start: <|startoftranscript|>, then for multilingual checkpoints the language (given,
        else `detected_language`, the id detect_language() found) and the task, then <|notimestamps|> unless
        timestamps are asked for. Token ids come from the generation config; with neither language nor task its
        forced_decoder_ids give the positions after the start, as Transformers reads them."""
        g = generation_config or self.generation_config
        multilingual = getattr(g, "is_multilingual", False)
        if not multilingual and (language is not None or task is not None):
            raise InputError("language= and task= need a multilingual Whisper checkpoint; this one is English-only")
        prompt = [self.config.decoder_start_token_id if g.decoder_start_token_id is None else g.decoder_start_token_id]
        if language is None and task is None:
            prompt += _forced_tokens(g)
        if language is not None:
            language_id = self._language_id(language, g)
        elif self.needs_language_detection(language, task, g):
            if detected_language is None:
                raise InputError("this multilingual checkpoint needs the audio's language: pass language= or the "
                                 "id detect_language() returns (detected_language=)")
            language_id = detected_language
        else:
            language_id = None
        if language_id is not None:
            prompt[1:2] = [language_id]
        task_to_id = getattr(g, "task_to_id", None) or {}
        if task is not None:
            if task not in task_to_id:
                raise InputError(f"task={task!r}; expected one of {sorted(task_to_id) or ['transcribe', 'translate']}")
            prompt.append(task_to_id[task])
        elif language is not None and task_to_id and not set(task_to_id.values()) & set(prompt):
            prompt.append(task_to_id["transcribe"])
        no_timestamps = getattr(g, "no_timestamps_token_id", None)
        if not return_timestamps and no_timestamps is not None and prompt[-1] != no_timestamps:
            prompt.append(no_timestamps)
        elif return_timestamps and prompt[-1] == no_timestamps:
            prompt.pop()
        return [t for t in prompt if t is not None]

    @staticmethod
    def _language_id(language: str, g) -> int:
        from ..tokenization.whisper import language_code

        lang_to_id = getattr(g, "lang_to_id", None) or {}
        key = language.lower() if language.lower() in lang_to_id else f"<|{language_code(language)}|>"
        if key not in lang_to_id:
            raise InputError(f"language={language!r} is not one of this checkpoint's languages (generation config "
                             f"lang_to_id: {', '.join(sorted(k.strip('<|>') for k in lang_to_id)) or 'none listed'})")
        return lang_to_id[key]

    @staticmethod
    def needs_language_detection(language, task, generation_config) -> bool:
        """A multilingual checkpoint given no language, whose forced_decoder_ids do not fix one either."""
        g = generation_config
        if language is not None or not getattr(g, "is_multilingual", False) or not getattr(g, "lang_to_id", None):
            return False
        forced = _forced_tokens(g) if task is None else []
        return not forced or forced[0] is None

    @torch.no_grad()
    def detect_language(self, input_features=None, encoder_outputs=None, generation_config=None,
                        num_segment_frames: int = 3000) -> torch.Tensor:
        """The language token id (B,) each row's audio most likely speaks: one decoder step after
        <|startoftranscript|>, argmax over the generation config's lang_to_id tokens (first 30 s only)."""
        if (input_features is None) == (encoder_outputs is None):
            raise InputError("detect_language() needs exactly one of input_features or encoder_outputs")
        g = generation_config or self.generation_config
        lang_to_id = getattr(g, "lang_to_id", None)
        if not lang_to_id:
            raise ConfigError("detect_language() needs the language token ids: this checkpoint's generation config "
                              "(generation_config.json) has no lang_to_id")
        if encoder_outputs is None:
            encoder_outputs = self.get_encoder()(input_features=input_features[:, :, :num_segment_frames], return_dict=True)
        elif isinstance(encoder_outputs, (tuple, list)):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        hidden = encoder_outputs.last_hidden_state
        start = self.config.decoder_start_token_id if g.decoder_start_token_id is None else g.decoder_start_token_id
        start = torch.full((hidden.shape[0], 1), start, dtype=torch.long, device=hidden.device)
        logits = self(encoder_outputs=encoder_outputs, decoder_input_ids=start, use_cache=False).logits[:, -1]
        languages = torch.tensor(sorted(set(lang_to_id.values())), device=logits.device)
        # in id order, so that a tie goes to the lowest id, as an argmax over the whole vocabulary would
        return languages[logits[:, languages].argmax(-1)]

    def generate(self, input_features=None, generation_config=None, language=None, task: str | None = None,
                 return_timestamps: bool | None = None, **kwargs):
        """Transcribe (or translate) up to 30 s of log-mel features; returns the token ids including the prompt.
        `language`: one for all rows or one per row; multilingual checkpoints detect it per row when not given.
        `return_timestamps=True` (default: the generation config's) interleaves segment times."""
        g = generation_config or self.generation_config
        if return_timestamps is None:
            return_timestamps = getattr(g, "return_timestamps", None)
        for name in ("forced_decoder_ids", "prompt_ids", "condition_on_prev_tokens", "temperature_fallback"):
            if kwargs.get(name) is not None:
                raise UnsupportedOptionError(f"Whisper generate({name}=...) is not implemented; use language= and task=")
        if kwargs.get("encoder_outputs") is None:
            if input_features is None:
                raise InputError("Whisper generate() needs input_features (from WhisperFeatureExtractor) or encoder_outputs")
            kwargs["encoder_outputs"] = self.get_encoder()(input_features=input_features, return_dict=True)
        kwargs.pop("attention_mask", None)  # the encoder reads all 30 s; the decoder prompt needs no mask
        B = kwargs["encoder_outputs"].last_hidden_state.shape[0]
        if kwargs.get("decoder_input_ids") is None:
            languages = list(language) if isinstance(language, (list, tuple)) else [language] * B
            if len(languages) != B or (isinstance(language, (list, tuple)) and None in languages):
                raise InputError(f"language= as a list needs one language per row ({B}), got {language!r}")
            detected = [None] * B
            if self.needs_language_detection(language, task, g):
                detected = self.detect_language(encoder_outputs=kwargs["encoder_outputs"], generation_config=g).tolist()
            rows = [self.decoder_prompt(lang, task, bool(return_timestamps), found, g)
                    for lang, found in zip(languages, detected)]
            kwargs["decoder_input_ids"] = torch.tensor(rows, dtype=torch.long, device=self.device)
        if return_timestamps:
            kwargs["logits_processor"] = [*(kwargs.get("logits_processor") or []),
                                          self._timestamp_rules(g, kwargs["decoder_input_ids"].shape[-1])]
        return super().generate(generation_config=generation_config, **kwargs)

    def _timestamp_rules(self, g, begin_index: int):
        from ..generation.whisper_timestamps import WhisperTimeStampLogitsProcessor

        no_timestamps = getattr(g, "no_timestamps_token_id", None)
        if no_timestamps is None:
            raise ConfigError("generate(return_timestamps=True) needs no_timestamps_token_id in the generation config "
                              "(generation_config.json); timestamp ids start right after it")
        eos = g.eos_token_id if g.eos_token_id is not None else g.bos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        return WhisperTimeStampLogitsProcessor(no_timestamps, eos, begin_index,
                                               getattr(g, "max_initial_timestamp_index", None))


class WhisperForConditionalGeneration(WhisperGenerationMixin, Seq2SeqLMHead, WhisperPreTrainedModel):
    _tied_weights_keys = {"proj_out.weight": "model.decoder.embed_tokens.weight"}
    learned_positions = True  # decoder positions end at max_target_positions

    def __init__(self, config):
        super().__init__(config)
        self.model = WhisperModel(config)
        self.proj_out = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()
        self.init_generation_config()

    def get_encoder(self):
        return self.model.encoder

    def get_output_embeddings(self):
        return self.proj_out

    def set_output_embeddings(self, value):
        self.proj_out = value

    def forward(self, input_features=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, decoder_inputs_embeds=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, cache_position=None):
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                       self.config.decoder_start_token_id, type(self).__name__)
        out = self.model(input_features, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                         past_key_values, decoder_inputs_embeds, use_cache, output_attentions, output_hidden_states,
                         True, cache_position)
        logits = self.proj_out(out.last_hidden_state)  # (B, T, V)
        loss = token_loss(logits, labels) if labels is not None else None
        return finish(Seq2SeqLMOutput(loss, logits, out.past_key_values, out.decoder_hidden_states,
                                      out.decoder_attentions, out.cross_attentions, out.encoder_last_hidden_state,
                                      out.encoder_hidden_states, out.encoder_attentions),
                      self.config.return_dict if return_dict is None else return_dict)


def _forced_tokens(g) -> list:
    """The ids the generation config's forced_decoder_ids put at positions 1, 2, ... (None: to be detected)."""
    tokens = []
    for position, token in getattr(g, "forced_decoder_ids", None) or []:
        if position != len(tokens) + 1:
            break
        tokens.append(token)
    return tokens
