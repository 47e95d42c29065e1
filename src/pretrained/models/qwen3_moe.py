"""Qwen3-MoE: Qwen3's attention (per-head q/k norms) with Mixtral-style sparse MoE layers.

Differences from Mixtral: experts have their own width (`moe_intermediate_size`); the kept top-k
probabilities are renormalised only when `norm_topk_prob`; layers listed in `mlp_only_layers`, or not
on the `decoder_sparse_step` grid, keep a dense SwiGLU MLP. Checkpoints store each expert as
`mlp.experts.{i}.{gate,up,down}_proj.weight`, stacked here by `moe.stack_rules`.
"""

from __future__ import annotations

from ..heads import DecoderSequenceClassificationHead, DecoderTokenClassificationHead, QuestionAnsweringHead
from ..moe import MoeCausalLMHead, SparseMoeBlock, stack_rules
from .llama import LlamaMLP, Qwen3Attention, Qwen3Config
from .mixtral import MixtralDecoderLayer, MixtralModel, MixtralPreTrainedModel


class Qwen3MoeConfig(Qwen3Config):
    model_type = "qwen3_moe"
    attribute_map = {"num_experts": "num_local_experts"}  # config.json on the Hub says num_experts

    vocab_size: int = 151936
    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_hidden_layers: int = 24
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 4
    head_dim: int | None = None  # hidden_size // num_attention_heads unless given
    max_position_embeddings: int = 32768
    sliding_window: int | None = 4096
    decoder_sparse_step: int = 1
    moe_intermediate_size: int = 768
    num_experts_per_tok: int = 8
    num_local_experts: int = 128
    norm_topk_prob: bool = False
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
    mlp_only_layers: list | None = None

    def validate(self) -> None:
        if self.mlp_only_layers is None:
            self.mlp_only_layers = []
        super().validate()

    def validate_layer_types(self) -> None:
        if self.layer_types is None:  # every layer slides when use_sliding_window (no max_window_layers here)
            kind = "sliding_attention" if self.use_sliding_window and self.sliding_window else "full_attention"
            self.layer_types = [kind] * self.num_hidden_layers
        super().validate_layer_types()

    def is_sparse(self, layer_idx: int) -> bool:
        return (layer_idx not in self.mlp_only_layers and self.num_local_experts > 0
                and (layer_idx + 1) % self.decoder_sparse_step == 0)


class Qwen3MoeSparseMoeBlock(SparseMoeBlock):
    def __init__(self, config):
        super().__init__(config.hidden_size, config.moe_intermediate_size, config.num_local_experts,
                         config.num_experts_per_tok, config.hidden_act, norm_topk_prob=config.norm_topk_prob)


class Qwen3MoeDecoderLayer(MixtralDecoderLayer):
    attention_class = Qwen3Attention
    mlp_class = LlamaMLP  # dense; sparse layers swap in the expert block below

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        if config.is_sparse(layer_idx):
            self.mlp = Qwen3MoeSparseMoeBlock(config)


class Qwen3MoePreTrainedModel(MixtralPreTrainedModel):
    config_class = Qwen3MoeConfig
    checkpoint_rules = stack_rules("experts", {name: name for name in ("gate_proj", "up_proj", "down_proj")})


class Qwen3MoeModel(Qwen3MoePreTrainedModel, MixtralModel):
    layer_class = Qwen3MoeDecoderLayer


class Qwen3MoeForCausalLM(MoeCausalLMHead, Qwen3MoePreTrainedModel):
    base_model_class = Qwen3MoeModel
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


class Qwen3MoeForSequenceClassification(DecoderSequenceClassificationHead, Qwen3MoePreTrainedModel):
    base_model_class = Qwen3MoeModel


class Qwen3MoeForTokenClassification(DecoderTokenClassificationHead, Qwen3MoePreTrainedModel):
    base_model_class = Qwen3MoeModel


class Qwen3MoeForQuestionAnswering(QuestionAnsweringHead, Qwen3MoePreTrainedModel):
    base_model_class = Qwen3MoeModel
    base_model_prefix = "transformer"  # Transformers' name for this head's base model
