"""T5 (v1.0 with ReLU, v1.1 / Flan-T5 with gated GELU) and mT5: config, blocks, stacks, heads.

Pre-norm blocks with T5's layer norm (RMS, no bias, no mean), unscaled attention whose scores get a
learned relative-position bias (log-spaced distance buckets, held by the first block of each stack
and shared by the others), a ReLU or gated feed-forward. One embedding `shared` feeds encoder and
decoder; with a tied LM head the decoder output is rescaled by d_model**-0.5 first. Module paths
equal the checkpoint keys (`shared`, `encoder.block.0.layer.0.SelfAttention.q`, `lm_head`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import attend, attention_function
from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError
from ..cache import attention_kv, encoder_decoder_cache
from ..heads import (Seq2SeqLMHead, encode_decode, seq2seq_output, sequence_classification_loss, shift_tokens_right,
                     span_loss, token_loss)
from ..layers import RMSNorm, clamp_fp16, get_activation
from ..masks import causal_mask, padding_mask
from ..modeling import PreTrainedModel, output_flags
from ..stack import recomputes, run_layers
from ..outputs import (BaseModelOutput, BaseModelOutputWithPastAndCrossAttentions, Seq2SeqLMOutput, Seq2SeqModelOutput,
                       Seq2SeqQuestionAnsweringModelOutput, Seq2SeqSequenceClassifierOutput, finish)
from .bart import ClassificationHead, last_eos_state, seq2seq_fields, span_logits


class T5Config(PretrainedConfig):
    model_type = "t5"
    attribute_map = {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
                     "head_dim": "d_kv"}
    positive_fields = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                       "relative_attention_num_buckets", "relative_attention_max_distance")

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None  # None: as many as the encoder
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"  # "ACT" or "gated-ACT"
    is_encoder_decoder: bool = True
    use_cache: bool = True
    pad_token_id: int | None = 0
    eos_token_id: int | list | None = 1
    classifier_dropout: float = 0.0
    tie_word_embeddings: bool = True  # the LM head is `shared`, unless the checkpoint has its own (see _load_checkpoint)
    # rescale the decoder output before the LM head; None: as tie_word_embeddings (Transformers 5 writes both,
    # with tie_word_embeddings always true, so this is what tells an untied Flan-T5 apart)
    scale_decoder_outputs: bool | None = None

    def validate(self) -> None:
        super().validate()
        if self.num_decoder_layers is None:  # derived defaults, filled once
            self.num_decoder_layers = self.num_layers
        if self.scale_decoder_outputs is None:
            self.scale_decoder_outputs = self.tie_word_embeddings
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ConfigError(f"{type(self).__name__}.feed_forward_proj={self.feed_forward_proj!r}: expected "
                              "'ACT' or 'gated-ACT', e.g. 'relu' or 'gated-gelu'")
        self.is_gated_act = len(parts) == 2
        self.dense_act_fn = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]
        get_activation(self.dense_act_fn, "feed_forward_proj")


class MT5Config(T5Config):
    model_type = "mt5"

    vocab_size: int = 250112
    d_ff: int = 1024
    num_heads: int = 6
    num_layers: int = 8
    feed_forward_proj: str = "gated-gelu"
    scale_decoder_outputs: bool | None = False  # mT5 never rescales
    decoder_start_token_id: int | None = 0
    tokenizer_class: str | None = "T5Tokenizer"


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """key - query distances -> bucket ids: exact below num_buckets/2 (per direction), log-spaced up to
    max_distance, everything further in the last bucket. A decoder (not bidirectional) sees no future."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class T5LayerNorm(RMSNorm):
    """RMSNorm whose half-precision weight sets the output dtype. Loaded in float16, `wo` stays float32 and
    turns the residual stream float32; each sublayer's norm brings its input back to float16."""

    def output_dtype(self, x: torch.Tensor) -> torch.dtype:
        return self.weight.dtype if self.weight.dtype in (torch.float16, torch.bfloat16) else x.dtype


class T5Attention(nn.Module):
    """Self-attention (keys from x, cached as they grow) or cross-attention (keys from the encoder output,
    projected once per generation). Scores are not scaled: `bias` carries positions and masking."""

    def __init__(self, config, layer_idx: int, has_relative_attention_bias: bool = False):
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        self.n_heads, self.d_kv = config.num_heads, config.d_kv
        inner = self.n_heads * self.d_kv
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets, self.n_heads)

    def forward(self, x, mask, encoder_states=None, cache=None, cache_position=None, output_attentions=False,
                bias=None):
        """bias: the relative-position score bias (self-attention); mask: additive or None."""
        B, T, _ = x.shape
        split = lambda t: t.view(t.shape[0], -1, self.n_heads, self.d_kv).transpose(1, 2)  # noqa: E731  (B, H, T, D)
        q = split(self.q(x))
        project = lambda s: (split(self.k(s)), split(self.v(s)))  # noqa: E731
        k, v = attention_kv(x, encoder_states, project, cache, self.layer_idx, cache_position)  # (B, H, S, D)
        backend = attention_function(self.config.attn_implementation, output_attentions)
        dropout = self.config.dropout_rate if self.training else 0.0
        y, weights = attend(backend, q, k, v, mask, scale=1.0, dropout=dropout, bias=bias)
        return self.o(y.transpose(1, 2).reshape(B, T, -1)), weights


class T5DenseActDense(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = get_activation(config.dense_act_fn, "feed_forward_proj")

    def forward(self, x):
        return self.wo(self.dropout(self.act(self.wi(x))).to(self.wo.weight.dtype))


class T5DenseGatedActDense(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = get_activation(config.dense_act_fn, "feed_forward_proj")

    def forward(self, x):
        return self.wo(self.dropout(self.act(self.wi_0(x)) * self.wi_1(x)).to(self.wo.weight.dtype))


class T5LayerFF(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.DenseReluDense = (T5DenseGatedActDense if config.is_gated_act else T5DenseActDense)(config)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x):
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x)))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, config, layer_idx: int, has_relative_attention_bias: bool):
        super().__init__()
        self.SelfAttention = T5Attention(config, layer_idx, has_relative_attention_bias)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x, bias, cache=None, cache_position=None, output_attentions=False):
        y, weights = self.SelfAttention(self.layer_norm(x), None, None, cache, cache_position, output_attentions,
                                        bias=bias)
        return x + self.dropout(y), weights


class T5LayerCrossAttention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.EncDecAttention = T5Attention(config, layer_idx)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, x, mask, encoder_states, cache=None, output_attentions=False):
        y, weights = self.EncDecAttention(self.layer_norm(x), mask, encoder_states, cache, None, output_attentions)
        return x + self.dropout(y), weights


class T5Block(nn.Module):
    """layer[0] self-attention, (decoder) layer[1] cross-attention, layer[-1] feed-forward."""

    def __init__(self, config, layer_idx: int, is_decoder: bool):
        super().__init__()
        layers = [T5LayerSelfAttention(config, layer_idx, has_relative_attention_bias=layer_idx == 0)]
        if is_decoder:
            layers.append(T5LayerCrossAttention(config, layer_idx))
        layers.append(T5LayerFF(config))
        self.layer = nn.ModuleList(layers)

    def forward(self, x, bias, encoder_states=None, cross_mask=None, cache=None, cache_position=None,
                output_attentions=False):
        x, weights = self.layer[0](x, bias, cache, cache_position, output_attentions)
        x, cross_weights = clamp_fp16(x), None
        if len(self.layer) == 3 and encoder_states is not None:
            x, cross_weights = self.layer[1](x, cross_mask, encoder_states, cache, output_attentions)
            x = clamp_fp16(x)
        return clamp_fp16(self.layer[-1](x)), weights, cross_weights


class T5Stack(nn.Module):
    """The encoder (bidirectional) or the decoder (causal, cross-attending, cached): embeddings, blocks,
    final layer norm. The relative-position bias and the mask are built once and shared by every block."""

    def __init__(self, config, embed_tokens: nn.Embedding, is_decoder: bool):
        super().__init__()
        self.config, self.is_decoder = config, is_decoder
        self.embed_tokens = embed_tokens  # the model's `shared` module
        n_layers = config.num_decoder_layers if is_decoder else config.num_layers
        self.block = nn.ModuleList(T5Block(config, i, is_decoder) for i in range(n_layers))
        self.final_layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.gradient_checkpointing = False

    def position_bias(self, queries: torch.Tensor, key_length: int) -> torch.Tensor:
        """(1, H, T, S) learned bias of each key-query distance; `queries` (T,) are the queries' positions."""
        table = self.block[0].layer[0].SelfAttention.relative_attention_bias
        queries = queries[:, None]
        keys = torch.arange(key_length, device=queries.device)[None, :]
        buckets = relative_position_bucket(keys - queries, not self.is_decoder, self.config.relative_attention_num_buckets,
                                           self.config.relative_attention_max_distance)
        return table(buckets).permute(2, 0, 1)[None]

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, encoder_hidden_states=None,
                encoder_attention_mask=None, past_key_values=None, use_cache=None, cache_position=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, **_):
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError(f"the T5 {'decoder' if self.is_decoder else 'encoder'} needs exactly one of input_ids "
                             "or inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T = x.shape[:2]
        cache = None if recomputes(self) else encoder_decoder_cache(past_key_values, use_cache and self.is_decoder)
        S = cache.key_length(T) if cache is not None else T
        # with cache_position (a static cache) no count is read: one compiled step fits every position
        past = cache.get_seq_length() if cache is not None and cache_position is None else 0
        positions = torch.arange(past, past + T, device=x.device) if cache_position is None else cache_position
        bias = self.position_bias(positions, S)
        if self.is_decoder:
            mask = causal_mask(attention_mask, T, S, x.dtype, x.device, past_length=past, cache_position=cache_position)
            if mask is None and T > 1:  # the bias is a float mask already: causality must be in it
                mask = torch.full((T, S), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device).triu(S - T + 1)
            cross_mask = padding_mask(encoder_attention_mask, x.dtype)
        else:
            mask, cross_mask = padding_mask(attention_mask, x.dtype), None
        if mask is not None:
            bias = bias + mask  # (B, H, T, S): the mask folded into the score bias once for every block

        out = run_layers(self, self.block, self.dropout(x), bias, encoder_hidden_states, cross_mask, cache,
                         cache_position, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        x = self.dropout(self.final_layer_norm(out.last_hidden_state))
        hidden_states = out.hidden_states + (x,) if output_hidden_states else None
        cross_attentions = out.cross_attentions if output_attentions and self.is_decoder else None
        return BaseModelOutputWithPastAndCrossAttentions(x, cache, hidden_states, out.attentions, cross_attentions)


class T5PreTrainedModel(PreTrainedModel):
    config_class = T5Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    # the reference once created a bias table in the decoder's first cross-attention; it is never used
    _keys_to_ignore_on_load_unexpected = (r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias",)
    _keep_in_fp32_modules = ("wo",)  # its activations overflow float16; the feed-forward casts into it

    def tied_weights(self) -> dict[str, str]:
        """The stacks always read `shared`; the LM head reads it too when tied."""
        ties = {f"{stack}.embed_tokens.weight": "shared.weight" for stack in ("encoder", "decoder") if hasattr(self, stack)}
        if hasattr(self, "lm_head") and self.config.tie_word_embeddings and not getattr(self, "own_lm_head", False):
            ties["lm_head.weight"] = "shared.weight"
        return ties

    def _load_checkpoint(self, key_to_shard, dtype, ignore_mismatched_sizes, key_mapping=()):
        info = super()._load_checkpoint(key_to_shard, dtype, ignore_mismatched_sizes, key_mapping)
        # Transformers 5 writes tie_word_embeddings=true for Flan-T5 and mT5 too: as it does, a head that the
        # checkpoint holds and that differs from the embeddings stays untied
        if "lm_head.weight" in self.tied_weights() and "lm_head.weight" in key_to_shard \
                and not torch.equal(self.lm_head.weight, self.shared.weight):
            self.own_lm_head = True
        return info

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value
        for stack in (getattr(self, "encoder", None), getattr(self, "decoder", None)):
            if stack is not None:
                stack.embed_tokens = value

    def _init_weights(self, module):
        """T5's init: every std scales with initializer_factor and the fan-in of the layer."""
        f, c = self.config.initializer_factor, self.config
        if isinstance(module, RMSNorm):
            module.weight.data.fill_(f)
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, f * (1.0 if module.embedding_dim == c.d_model else c.d_model**-0.5))
        elif isinstance(module, (T5DenseActDense, T5DenseGatedActDense)):
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(module, name):
                    getattr(module, name).weight.data.normal_(0.0, f * c.d_model**-0.5)
            module.wo.weight.data.normal_(0.0, f * c.d_ff**-0.5)
        elif isinstance(module, T5Attention):
            module.q.weight.data.normal_(0.0, f * (c.d_model * c.d_kv) ** -0.5)
            module.k.weight.data.normal_(0.0, f * c.d_model**-0.5)
            module.v.weight.data.normal_(0.0, f * c.d_model**-0.5)
            module.o.weight.data.normal_(0.0, f * (c.num_heads * c.d_kv) ** -0.5)
        elif isinstance(module, nn.Linear) and module.out_features == c.vocab_size:  # an untied lm_head
            module.weight.data.normal_(0.0, f)


class T5Model(T5PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, is_decoder=False)
        self.decoder = T5Stack(config, self.shared, is_decoder=True)
        self.post_init()

    def get_encoder(self):
        return self.encoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None, **_):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        enc, dec = encode_decode(self, input_ids, attention_mask, inputs_embeds, encoder_outputs, decoder_input_ids,
                                 decoder_attention_mask, decoder_inputs_embeds, past_key_values, use_cache,
                                 cache_position, output_attentions, output_hidden_states)
        out = seq2seq_output(Seq2SeqModelOutput, enc, dec, last_hidden_state=dec.last_hidden_state)
        return finish(out, self.config.return_dict if return_dict is None else return_dict)


class T5ForConditionalGeneration(Seq2SeqLMHead, T5PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, is_decoder=False)
        self.decoder = T5Stack(config, self.shared, is_decoder=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()
        self.init_generation_config()

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None, **_):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        enc, dec = encode_decode(self, input_ids, attention_mask, inputs_embeds, encoder_outputs, decoder_input_ids,
                                 decoder_attention_mask, decoder_inputs_embeds, past_key_values, use_cache,
                                 cache_position, output_attentions, output_hidden_states)
        x = dec.last_hidden_state  # (B, T, C)
        if self.config.scale_decoder_outputs:  # the tied embedding's scale
            x = x * self.config.d_model**-0.5
        logits = self.lm_head(x)  # (B, T, V)
        loss = token_loss(logits, labels) if labels is not None else None
        out = seq2seq_output(Seq2SeqLMOutput, enc, dec, loss=loss, logits=logits)
        return finish(out, self.config.return_dict if return_dict is None else return_dict)


class T5EncoderModel(T5PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, is_decoder=False)
        self.post_init()

    _keys_to_ignore_on_load_unexpected = (r"^decoder\.", r"^lm_head\.")

    def get_encoder(self):
        return self.encoder

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **_):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        out = BaseModelOutput(out.last_hidden_state, out.hidden_states, out.attentions)
        return finish(out, self.config.return_dict if return_dict is None else return_dict)


class MT5Model(T5Model):
    config_class = MT5Config


class MT5ForConditionalGeneration(T5ForConditionalGeneration):
    config_class = MT5Config


class MT5EncoderModel(T5EncoderModel):
    config_class = MT5Config


# --- task heads over the decoder output (the classifier and the eos pooling are BART's) ---

def decoder_inputs_from_input_ids(model, input_ids):
    """Without decoder inputs, T5's heads decode input_ids shifted right, as BART does."""
    if input_ids is None:
        raise InputError(f"{type(model).__name__} needs input_ids to build decoder_input_ids from them; "
                         "pass decoder_input_ids or decoder_inputs_embeds")
    return shift_tokens_right(input_ids, model.config.pad_token_id, model.config.decoder_start_token_id,
                              type(model).__name__)


def init_head(linear: nn.Linear, config) -> None:
    """T5's head init: normal(0, initializer_factor / sqrt(d_model)), zero bias."""
    linear.weight.data.normal_(0.0, config.initializer_factor * config.d_model**-0.5)
    linear.bias.data.zero_()


class T5ForSequenceClassification(T5PreTrainedModel):
    """Classifies the decoder's state at the last eos token; the encoder-decoder sits under `transformer`."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = T5Model(config)
        self.classification_head = ClassificationHead(config.d_model, config.num_labels, config.classifier_dropout)
        self.post_init()

    def tied_weights(self) -> dict[str, str]:
        return {f"transformer.{k}": f"transformer.{v}" for k, v in self.transformer.tied_weights().items()}

    def get_input_embeddings(self):
        return self.transformer.shared

    def set_input_embeddings(self, value):
        self.transformer.set_input_embeddings(value)

    def _init_weights(self, module):
        if module is self.classification_head.dense or module is self.classification_head.out_proj:
            init_head(module, self.config)
        else:
            super()._init_weights(module)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        if labels is not None:
            use_cache = False  # training: nothing to continue from
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = decoder_inputs_from_input_ids(self, input_ids)
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                               decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                               inputs_embeds=inputs_embeds, decoder_inputs_embeds=decoder_inputs_embeds,
                               use_cache=use_cache, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=True)
        pooled = last_eos_state(out.last_hidden_state, input_ids, self.config, type(self).__name__)  # (B, C)
        logits = self.classification_head(pooled)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return finish(Seq2SeqSequenceClassifierOutput(loss, logits, **seq2seq_fields(out)),
                      self.config.return_dict if return_dict is None else return_dict)


class T5ForQuestionAnswering(T5PreTrainedModel):
    """Start and end logits per decoder position; the stacks sit at the top level, as in T5ForConditionalGeneration."""

    def __init__(self, config):
        super().__init__(config)
        if config.num_labels != 2:
            raise ConfigError(f"{type(self).__name__} predicts start and end logits: num_labels must be 2, "
                              f"got {config.num_labels}")
        self.num_labels = 2
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared, is_decoder=False)
        self.decoder = T5Stack(config, self.shared, is_decoder=True)
        self.qa_outputs = nn.Linear(config.d_model, 2)
        self.post_init()

    def get_encoder(self):
        return self.encoder

    def _init_weights(self, module):
        if module is self.qa_outputs:
            init_head(module, self.config)
        else:
            super()._init_weights(module)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, start_positions=None, end_positions=None, inputs_embeds=None,
                decoder_inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        training = start_positions is not None and end_positions is not None
        use_cache = (self.config.use_cache if use_cache is None else use_cache) and not training
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = decoder_inputs_from_input_ids(self, input_ids)
        enc, dec = encode_decode(self, input_ids, attention_mask, inputs_embeds, encoder_outputs, decoder_input_ids,
                                 decoder_attention_mask, decoder_inputs_embeds, use_cache=use_cache,
                                 output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        start_logits, end_logits = span_logits(self.qa_outputs, dec.last_hidden_state)
        loss = span_loss(start_logits, end_logits, start_positions, end_positions) if training else None
        out = seq2seq_output(Seq2SeqQuestionAnsweringModelOutput, enc, dec, loss=loss, start_logits=start_logits,
                             end_logits=end_logits)
        return finish(out, self.config.return_dict if return_dict is None else return_dict)


class MT5ForSequenceClassification(T5ForSequenceClassification):
    config_class = MT5Config


class MT5ForQuestionAnswering(T5ForQuestionAnswering):
    config_class = MT5Config
