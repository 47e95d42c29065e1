"""BART and Marian: config, blocks, encoder and decoder stacks, heads.

Both are a Transformer encoder-decoder with LayerNorm blocks; they differ in configuration only:
positions learned (BART, two leading reserved slots) or sinusoidal (Marian, not stored in checkpoints),
`scale_embedding` (multiply token embeddings by sqrt(d_model)), a LayerNorm after the embeddings
(BART), post-norm blocks unless `normalize_before`, a final LayerNorm per stack with
`add_final_layer_norm`, and one `shared` embedding for both stacks and the LM head (Marian may keep
separate source and target vocabularies). Logits get `final_logits_bias`. Module paths equal the
checkpoint keys (`model.encoder.layers.0.self_attn.q_proj`, `model.shared`, `lm_head`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attend, attention_function
from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError
from ..heads import (Seq2SeqLMHead, encode_decode, seq2seq_output, sequence_classification_loss, shift_tokens_right,
                     span_loss, token_loss)
from ..layers import clamp_fp16, get_activation, projections, sinusoidal_table
from ..masks import causal_mask, padding_mask
from ..cache import attention_kv, encoder_decoder_cache
from ..modeling import PreTrainedModel, output_flags
from ..stack import recomputes, run_layers
from ..outputs import (BaseModelOutputWithPastAndCrossAttentions, Seq2SeqLMOutput, Seq2SeqModelOutput,
                       Seq2SeqQuestionAnsweringModelOutput, Seq2SeqSequenceClassifierOutput, finish)


class BartConfig(PretrainedConfig):
    model_type = "bart"
    attribute_map = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model",
                     "num_hidden_layers": "encoder_layers"}
    positive_fields = ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                       "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings")

    vocab_size: int = 50265
    max_position_embeddings: int = 1024
    encoder_layers: int = 12
    encoder_ffn_dim: int = 4096
    encoder_attention_heads: int = 16
    decoder_layers: int = 12
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    activation_function: str = "gelu"
    d_model: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    classifier_dropout: float = 0.0
    scale_embedding: bool = False
    use_cache: bool = True
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list | None = 2
    is_encoder_decoder: bool = True
    decoder_start_token_id: int | None = 2
    forced_eos_token_id: int | list | None = 2
    tie_word_embeddings: bool = True
    # layout switches of the family (fairseq-era config.json files carry them too)
    normalize_before: bool = False  # pre-norm blocks (post-norm by default)
    add_final_layer_norm: bool = False  # a LayerNorm after the last block of each stack
    normalize_embedding: bool = True  # `layernorm_embedding` after token + position embeddings
    static_position_embeddings: bool = False  # sinusoidal positions instead of learned ones
    default_num_labels = 3  # Transformers' BART: the three MNLI classes

    def __init__(self, **kwargs):
        if kwargs.get("id2label") is None and kwargs.get("num_labels") is None:
            kwargs["num_labels"] = self.default_num_labels
        super().__init__(**kwargs)

    def validate(self) -> None:
        super().validate()
        if self.d_model % self.decoder_attention_heads:
            raise ConfigError(f"{type(self).__name__}.d_model ({self.d_model}) must be divisible by "
                              f"decoder_attention_heads ({self.decoder_attention_heads})")
        get_activation(self.activation_function, "activation_function")


class MarianConfig(BartConfig):
    model_type = "marian"

    vocab_size: int = 58101
    decoder_vocab_size: int | None = None  # None: vocab_size (one vocabulary for both sides)
    pad_token_id: int | None = 58100
    bos_token_id: int | None = None
    eos_token_id: int | list | None = 0
    decoder_start_token_id: int | None = 58100
    forced_eos_token_id: int | list | None = 0
    share_encoder_decoder_embeddings: bool = True
    normalize_embedding: bool = False
    static_position_embeddings: bool = True
    default_num_labels = 2

    def validate(self) -> None:
        super().validate()
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size


class LearnedPositions(nn.Embedding):
    """BART's learned positions: position p is row p + 2 (two rows reserved by fairseq)."""

    offset = 2

    def __init__(self, num_positions: int, dim: int):
        super().__init__(num_positions + self.offset, dim)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return super().forward(positions + self.offset)


class SinusoidalPositions(nn.Module):
    """Marian's fixed positions: sin in the first half of the features, cos in the second. A buffer,
    not a checkpoint tensor."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        self.num_positions, self.dim = num_positions, dim
        self.register_buffer("weight", sinusoidal_table(num_positions, dim, interleaved=False), persistent=False)

    def reset_buffers(self) -> None:
        """Recompute the table (a model built on the meta device has none)."""
        self.weight = sinusoidal_table(self.num_positions, self.dim, interleaved=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return F.embedding(positions, self.weight)


class BartAttention(nn.Module):
    """Self-attention: queries, keys and values from the same states, the keys cached as they grow."""

    def __init__(self, config, num_heads: int, layer_idx: int):
        super().__init__()
        self.config, self.layer_idx, self.num_heads = config, layer_idx, num_heads
        self.head_dim = config.d_model // num_heads
        self.k_proj = nn.Linear(config.d_model, config.d_model)
        self.v_proj = nn.Linear(config.d_model, config.d_model)
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.out_proj = nn.Linear(config.d_model, config.d_model)

    # pretrained.optimize may run these as one matmul at inference (see layers.projections)
    fusable_projections = (("q_proj", "k_proj", "v_proj"),)

    def split(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, H, T, D)."""
        return t.view(t.shape[0], -1, self.num_heads, self.head_dim).transpose(1, 2)

    def qkv(self, x, encoder_states, cache, cache_position):
        q, k, v = (self.split(t) for t in projections(x, self.q_proj, self.k_proj, self.v_proj))
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, cache_position)  # (B, H, S, D)
        return q, k, v

    def forward(self, x, mask, encoder_states=None, cache=None, cache_position=None, output_attentions=False,
                is_causal=False):
        B, T, _ = x.shape
        q, k, v = self.qkv(x, encoder_states, cache, cache_position)
        backend = attention_function(self.config.attn_implementation, output_attentions)
        dropout = self.config.attention_dropout if self.training else 0.0
        y, weights = attend(backend, q, k, v, mask, scale=self.head_dim**-0.5, dropout=dropout, is_causal=is_causal)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1)), weights


class BartCrossAttention(BartAttention):
    """Attention to the encoder states: their keys and values are projected once per cache (once per
    generation). The encoder states may have fewer rows than x (see attention.attend)."""

    fusable_projections = (("k_proj", "v_proj"),)

    def qkv(self, x, encoder_states, cache, cache_position):
        project = lambda s: tuple(self.split(t) for t in projections(s, self.k_proj, self.v_proj))  # noqa: E731
        k, v = attention_kv(x, encoder_states, project, cache, self.layer_idx)
        return self.split(self.q_proj(x)), k, v


class BartLayer(nn.Module):
    """Encoder layer (self-attention, feed-forward) or decoder layer (+ causal mask, cache, cross-attention)."""

    def __init__(self, config, layer_idx: int, is_decoder: bool):
        super().__init__()
        heads = config.decoder_attention_heads if is_decoder else config.encoder_attention_heads
        ffn = config.decoder_ffn_dim if is_decoder else config.encoder_ffn_dim
        self.is_decoder, self.pre_norm = is_decoder, config.normalize_before
        self.self_attn = BartAttention(config, heads, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        if is_decoder:
            self.encoder_attn = BartCrossAttention(config, heads, layer_idx)
            self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.fc1 = nn.Linear(config.d_model, ffn)
        self.fc2 = nn.Linear(ffn, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)
        self.act = get_activation(config.activation_function, "activation_function")
        self.dropout = nn.Dropout(config.dropout)
        self.activation_dropout = nn.Dropout(config.activation_dropout)

    def _residual(self, x, norm, fn):
        """x + dropout(fn(x)), with `norm` before fn (pre-norm) or after the sum (post-norm)."""
        y, weights = fn(norm(x) if self.pre_norm else x)
        x = x + self.dropout(y)
        return (x if self.pre_norm else norm(x)), weights

    def _feed_forward(self, x):
        return self.fc2(self.activation_dropout(self.act(self.fc1(x)))), None

    def forward(self, x, mask, encoder_states=None, cross_mask=None, cache=None, cache_position=None,
                output_attentions=False):
        x, weights = self._residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(
            h, mask, None, cache, cache_position, output_attentions, is_causal=self.is_decoder and mask is None))
        cross_weights = None
        if self.is_decoder and encoder_states is not None:
            x, cross_weights = self._residual(x, self.encoder_attn_layer_norm, lambda h: self.encoder_attn(
                h, cross_mask, encoder_states, cache, None, output_attentions))
        x, _ = self._residual(x, self.final_layer_norm, self._feed_forward)
        return (x if self.is_decoder else clamp_fp16(x)), weights, cross_weights


class BartStack(nn.Module):
    """The encoder (bidirectional) or the decoder (causal, cross-attending, cached): token and position
    embeddings, optional embedding LayerNorm, layers, optional final LayerNorm."""

    def __init__(self, config, embed_tokens: nn.Embedding, is_decoder: bool):
        super().__init__()
        self.config, self.is_decoder = config, is_decoder
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        positions = SinusoidalPositions if config.static_position_embeddings else LearnedPositions
        self.embed_positions = positions(config.max_position_embeddings, config.d_model)
        n_layers = config.decoder_layers if is_decoder else config.encoder_layers
        self.layers = nn.ModuleList(BartLayer(config, i, is_decoder) for i in range(n_layers))
        if config.normalize_embedding:
            self.layernorm_embedding = nn.LayerNorm(config.d_model)
        if config.add_final_layer_norm:
            self.layer_norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.layerdrop = config.decoder_layerdrop if is_decoder else config.encoder_layerdrop
        self.gradient_checkpointing = False

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, encoder_hidden_states=None,
                encoder_attention_mask=None, past_key_values=None, use_cache=None, cache_position=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, **_):
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        side = "decoder" if self.is_decoder else "encoder"
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError(f"the {type(config).__name__[:-6]} {side} needs exactly one of input_ids or inputs_embeds")
        x = self.embed_tokens(input_ids) * self.embed_scale if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T = x.shape[:2]
        cache = None if recomputes(self) else encoder_decoder_cache(past_key_values, use_cache and self.is_decoder)
        # with cache_position (a static cache) no count is read: one compiled step fits every position;
        # generate() checked the positions then
        past = cache.get_seq_length() if cache is not None and cache_position is None else 0
        if cache_position is None and past + T > config.max_position_embeddings:
            raise InputError(f"{side} positions {past}..{past + T - 1} exceed max_position_embeddings="
                             f"{config.max_position_embeddings} of {type(config).__name__}; truncate the input")
        positions = torch.arange(past, past + T, device=x.device) if cache_position is None else cache_position
        x = x + self.embed_positions(positions).to(x.dtype)
        if config.normalize_embedding:
            x = self.layernorm_embedding(x)
        x = self.dropout(x)
        if self.is_decoder:
            S = cache.key_length(T) if cache is not None else T
            mask = causal_mask(attention_mask, T, S, x.dtype, x.device, past_length=past,
                               cache_position=cache_position)  # None: is_causal
            cross_mask = padding_mask(encoder_attention_mask, x.dtype)
        else:
            mask, cross_mask = padding_mask(attention_mask, x.dtype), None

        out = run_layers(self, self.layers, x, mask, encoder_hidden_states, cross_mask, cache, cache_position,
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                         layerdrop=self.layerdrop)
        x = out.last_hidden_state
        if config.add_final_layer_norm:
            x = self.layer_norm(x)
        hidden_states = out.hidden_states + (x,) if output_hidden_states else None
        cross_attentions = out.cross_attentions if output_attentions and self.is_decoder else None
        return BaseModelOutputWithPastAndCrossAttentions(x, cache, hidden_states, out.attentions, cross_attentions)


class BartPreTrainedModel(PreTrainedModel):
    config_class = BartConfig
    base_model_prefix = "model"
    init_std_field = "init_std"
    supports_gradient_checkpointing = True
    _keys_to_ignore_on_load_missing = (r"final_logits_bias$",)

    def tied_weights(self) -> dict[str, str]:
        """Both stacks read `shared` when there is one; the LM head reads the decoder's embeddings when tied."""
        base, prefix = (self.model, "model.") if isinstance(getattr(self, "model", None), nn.Module) else (self, "")
        ties = {}
        source = f"{prefix}decoder.embed_tokens.weight"
        if hasattr(base, "shared"):
            source = f"{prefix}shared.weight"
            ties = {f"{prefix}{stack}.embed_tokens.weight": source for stack in ("encoder", "decoder")}
        if hasattr(self, "lm_head") and self.config.tie_word_embeddings:
            ties["lm_head.weight"] = source
        return ties


class BartModel(BartPreTrainedModel):
    # BART denoises: without decoder inputs, the decoder reads input_ids shifted right
    decoder_inputs_from_input_ids = True

    def __init__(self, config):
        super().__init__(config)
        make = lambda n: nn.Embedding(n, config.d_model, padding_idx=config.pad_token_id)  # noqa: E731
        if getattr(config, "share_encoder_decoder_embeddings", True):
            self.shared = make(config.vocab_size)
            source = target = self.shared
        else:  # Marian with separate source and target vocabularies
            source, target = make(config.vocab_size), make(config.decoder_vocab_size)
        self.encoder = BartStack(config, source, is_decoder=False)
        self.decoder = BartStack(config, target, is_decoder=True)
        self.post_init()

    def get_input_embeddings(self):
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value):
        if hasattr(self, "shared"):
            self.shared = self.decoder.embed_tokens = value
        self.encoder.embed_tokens = value

    def get_encoder(self):
        return self.encoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None, **_):
        if decoder_input_ids is None and decoder_inputs_embeds is None and self.decoder_inputs_from_input_ids:
            if input_ids is None:
                raise InputError(f"{type(self).__name__} needs input_ids to build decoder_input_ids from them; "
                                 "pass decoder_input_ids or decoder_inputs_embeds")
            decoder_input_ids = shift_tokens_right(input_ids, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id, type(self).__name__)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        enc, dec = encode_decode(self, input_ids, attention_mask, inputs_embeds, encoder_outputs, decoder_input_ids,
                                 decoder_attention_mask, decoder_inputs_embeds, past_key_values, use_cache,
                                 cache_position, output_attentions, output_hidden_states)
        out = seq2seq_output(Seq2SeqModelOutput, enc, dec, last_hidden_state=dec.last_hidden_state)
        return finish(out, self.config.return_dict if return_dict is None else return_dict)


class BartForConditionalGeneration(Seq2SeqLMHead, BartPreTrainedModel):
    base_model_class = BartModel
    learned_positions = True  # positions end at max_position_embeddings

    def __init__(self, config):
        super().__init__(config)
        self.model = self.base_model_class(config)
        vocab = getattr(config, "decoder_vocab_size", None) or config.vocab_size
        self.register_buffer("final_logits_bias", torch.zeros(1, vocab))
        self.lm_head = nn.Linear(config.d_model, vocab, bias=False)
        self.post_init()
        self.init_generation_config()

    def get_encoder(self):
        return self.model.encoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None, **_):
        if labels is not None:
            use_cache = False  # training: nothing to continue from
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                         decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache,
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                         return_dict=True, cache_position=cache_position)
        logits = self.lm_head(out.last_hidden_state) + self.final_logits_bias  # (B, T, V)
        loss = token_loss(logits, labels) if labels is not None else None
        fields = {k: getattr(out, k) for k in ("past_key_values", "decoder_hidden_states", "decoder_attentions",
                                                "cross_attentions", "encoder_last_hidden_state",
                                                "encoder_hidden_states", "encoder_attentions")}
        return finish(Seq2SeqLMOutput(loss=loss, logits=logits, **fields),
                      self.config.return_dict if return_dict is None else return_dict)


class MarianPreTrainedModel(BartPreTrainedModel):
    config_class = MarianConfig
    # older checkpoints store the sinusoidal tables; they are recomputed
    _keys_to_ignore_on_load_unexpected = (r"embed_positions\.weight$",)


class MarianModel(MarianPreTrainedModel, BartModel):
    decoder_inputs_from_input_ids = False


class MarianMTModel(MarianPreTrainedModel, BartForConditionalGeneration):
    base_model_class = MarianModel


MarianForConditionalGeneration = MarianMTModel  # the registry's name for AutoModelForSeq2SeqLM


# --- task heads over the decoder output (T5's heads reuse the classifier and the pooling) ---

class ClassificationHead(nn.Module):
    """dense -> tanh -> out_proj over one state per row, with dropout before each projection."""

    def __init__(self, d_model: int, num_labels: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, num_labels)

    def forward(self, x):  # (B, C) -> (B, num_labels)
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))


def last_eos_state(hidden: torch.Tensor, input_ids: torch.Tensor | None, config, owner: str) -> torch.Tensor:
    """(B, C): each row's decoder state at the last eos token of its input_ids. The decoder reads input_ids
    shifted right, so that state has seen the whole sentence. As in Transformers, every row must hold the
    same number of eos tokens (at least one)."""
    if input_ids is None:
        raise InputError(f"{owner} pools the decoder state at the eos tokens of input_ids: pass input_ids "
                         "(inputs_embeds alone do not say where eos is)")
    if config.eos_token_id is None:
        raise ConfigError(f"{owner} pools the decoder state at eos tokens: config.eos_token_id must be set, got None")
    if input_ids.shape[1] != hidden.shape[1]:
        raise InputError(f"{owner}: the decoder input must be as long as input_ids ({input_ids.shape[1]}) to pool "
                         f"at its eos tokens, got {hidden.shape[1]}; leave decoder_input_ids out to decode "
                         "input_ids shifted right")
    eos = torch.isin(input_ids, torch.tensor(config.eos_token_id, device=input_ids.device)).to(hidden.device)
    counts = eos.sum(1)
    if counts[0] == 0 or (counts != counts[0]).any():
        raise InputError(f"{owner}: every row of input_ids must hold the same number (at least one) of eos tokens "
                         f"(id {config.eos_token_id}); got {counts.tolist()} per row")
    return hidden[eos].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1]


def span_logits(qa_outputs: nn.Linear, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, C) -> start and end logits, (B, T) each."""
    start, end = qa_outputs(hidden).split(1, dim=-1)
    return start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()


def seq2seq_fields(out: Seq2SeqModelOutput) -> dict:
    """What a head's output passes on from its base model's output."""
    return {k: getattr(out, k) for k in ("past_key_values", "decoder_hidden_states", "decoder_attentions",
                                         "cross_attentions", "encoder_last_hidden_state", "encoder_hidden_states",
                                         "encoder_attentions")}


class BartForSequenceClassification(BartPreTrainedModel):
    """Classifies the decoder's state at the last eos token (facebook/bart-large-mnli, zero-shot's default)."""

    base_model_class = BartModel

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = self.base_model_class(config)
        self.classification_head = ClassificationHead(config.d_model, config.num_labels, config.classifier_dropout)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        if labels is not None:
            use_cache = False  # training: nothing to continue from
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                         inputs_embeds=inputs_embeds, decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache,
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                         return_dict=True)
        pooled = last_eos_state(out.last_hidden_state, input_ids, self.config, type(self).__name__)  # (B, C)
        logits = self.classification_head(pooled)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return finish(Seq2SeqSequenceClassifierOutput(loss, logits, **seq2seq_fields(out)),
                      self.config.return_dict if return_dict is None else return_dict)


class BartForQuestionAnswering(BartPreTrainedModel):
    """Start and end logits per decoder position."""

    base_model_class = BartModel

    def __init__(self, config):
        super().__init__(config)
        config.num_labels = 2  # one start and one end logit; BART configs default to 3 labels (Transformers sets 2 too)
        self.num_labels = 2
        self.model = self.base_model_class(config)
        self.qa_outputs = nn.Linear(config.d_model, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, start_positions=None, end_positions=None, inputs_embeds=None,
                decoder_inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        training = start_positions is not None and end_positions is not None
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                         inputs_embeds=inputs_embeds, decoder_inputs_embeds=decoder_inputs_embeds,
                         use_cache=False if training else use_cache, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=True)
        start_logits, end_logits = span_logits(self.qa_outputs, out.last_hidden_state)
        loss = span_loss(start_logits, end_logits, start_positions, end_positions) if training else None
        return finish(Seq2SeqQuestionAnsweringModelOutput(loss, start_logits, end_logits, **seq2seq_fields(out)),
                      self.config.return_dict if return_dict is None else return_dict)
