"""Mixtral: Mistral with a sparse mixture-of-experts feed-forward in every layer (moe.SparseMoeBlock),
and the MoE decoder pieces Qwen3-MoE builds on.

The router sends each token to its top `num_experts_per_tok` of `num_local_experts` SwiGLU experts
(softmax over all experts, top-k, renormalised). Checkpoints name the block `block_sparse_moe` and
store each expert's `w1` (gate), `w3` (up), `w2` (down) apart; a Rename and `moe.stack_rules` map
them onto `mlp.experts.{gate,up,down}_proj` stacked (E, ...) and back on save. With
`output_router_logits` the model returns every sparse layer's router logits and the LM head the
auxiliary load-balancing loss.
"""

from __future__ import annotations

import torch

from ..conversion import Rename
from ..heads import DecoderSequenceClassificationHead, DecoderTokenClassificationHead, QuestionAnsweringHead
from ..moe import Experts, MoeCausalLMHead, MoeModelOutputWithPast, SparseMoeBlock, stack_rules
from .llama import LlamaDecoderLayer, LlamaModel, LlamaPreTrainedModel, MistralConfig


class MixtralConfig(MistralConfig):
    model_type = "mixtral"

    max_position_embeddings: int = 4096 * 32
    rms_norm_eps: float = 1e-5
    rope_theta: float = 1e6
    sliding_window: int | None = None
    num_experts_per_tok: int = 2
    num_local_experts: int = 8
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
    router_jitter_noise: float = 0.0


class MixtralSparseMoeBlock(SparseMoeBlock):
    """Softmax, top-k, renormalise; in training the input may be scaled by uniform noise in
    [1 - router_jitter_noise, 1 + router_jitter_noise] (it reaches the experts too, as in the reference)."""

    def __init__(self, config):
        super().__init__(config.hidden_size, config.intermediate_size, config.num_local_experts,
                         config.num_experts_per_tok, config.hidden_act, norm_topk_prob=True)
        self.jitter_noise = config.router_jitter_noise

    def forward(self, x):
        if self.training and self.jitter_noise > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.jitter_noise, 1.0 + self.jitter_noise)
        return super().forward(x)


class MixtralDecoderLayer(LlamaDecoderLayer):
    """Llama's block with a sparse MLP; its router logits go to `router_logits` (a list) when given."""

    mlp_class = MixtralSparseMoeBlock

    def forward(self, x, rope: dict, masks: dict, cache=None, cache_position=None, output_attentions=False,
                router_logits: list | None = None):
        cos, sin = rope[self.attention_type]
        y, weights = self.self_attn(self.input_layernorm(x), cos, sin, masks[self.attention_type], cache,
                                    cache_position, output_attentions)
        x = x + y
        y = self.mlp(self.post_attention_layernorm(x))
        if isinstance(y, tuple):  # a sparse block (Qwen3-MoE also has dense layers)
            y, logits = y
            if router_logits is not None:
                router_logits.append(logits)
        return x + y, weights


class MixtralPreTrainedModel(LlamaPreTrainedModel):
    config_class = MixtralConfig
    checkpoint_rules = (Rename(r"\.block_sparse_moe\.", ".mlp.", save_old=r"\.mlp\.", save_new=".block_sparse_moe."),
                        *stack_rules("experts", {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}))

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, Experts):
            for p in module.parameters(recurse=False):
                p.data.normal_(0.0, self.config.initializer_range)


class MixtralModel(MixtralPreTrainedModel, LlamaModel):
    layer_class = MixtralDecoderLayer

    output_class = MoeModelOutputWithPast
    routes = True


class MixtralForCausalLM(MoeCausalLMHead, MixtralPreTrainedModel):
    base_model_class = MixtralModel
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


class MixtralForSequenceClassification(DecoderSequenceClassificationHead, MixtralPreTrainedModel):
    base_model_class = MixtralModel


class MixtralForTokenClassification(DecoderTokenClassificationHead, MixtralPreTrainedModel):
    base_model_class = MixtralModel


class MixtralForQuestionAnswering(QuestionAnsweringHead, MixtralPreTrainedModel):
    base_model_class = MixtralModel
