"""Sparse mixture-of-experts feed-forward blocks (Mixtral, Qwen3-MoE, ...): a router picks `top_k` experts
per token; the experts are SwiGLU MLPs whose weights are stacked into (num_experts, ...) parameters.

Checkpoints store one tensor per expert (`experts.3.w1.weight`); a family maps them onto the stacked
parameters with `conversion.Stack` rules, which also split them back on save (`stack_rules`). Each
expert runs as one matmul over all the tokens routed to it: a loop over the experts that received
tokens, never over tokens; a decode step whose few tokens hit most of the (small) experts runs them all
as three batched matmuls instead.

A MoE decoder's base model returns `MoeModelOutputWithPast` (every sparse layer's router logits when
asked); `MoeCausalLMHead` adds the auxiliary loss to the LM loss as Transformers does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import conversion
from .heads import CausalLMHead, causal_lm_loss
from .layers import act_and_mul, get_activation
from .outputs import ModelOutput, finish


# The dense path (every expert on every token) when the weights of the experts no token chose cost less to
# read than dispatching the chosen ones one by one: DISPATCH_BYTES is about what one expert's dispatch in the
# loop costs (indexing, three small matmuls, index_add), in bytes of weights read in the same time on the
# CPUs we measured (bench/generate.py's Mixtral-small case). Up to DENSE_MAX_TOKENS tokens the extra
# products stay cheaper than the weight reads (decode batches, not prompts).
DISPATCH_BYTES = 3 * 2**20
DENSE_MAX_TOKENS = 16


class Experts(nn.Module):
    """E SwiGLU experts: down(act(gate(x)) * up(x)) with gate_proj, up_proj (E, F, C), down_proj (E, C, F)."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, hidden_act: str = "silu"):
        super().__init__()
        self.num_experts = num_experts
        self.gate_proj = nn.Parameter(torch.empty(num_experts, intermediate_size, hidden_size))
        self.up_proj = nn.Parameter(torch.empty(num_experts, intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        self.act = get_activation(hidden_act)

    def forward(self, x: torch.Tensor, expert_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x (N, C); expert_ids, weights (N, k) -> (N, C): each token's experts' outputs, weighted and summed."""
        if torch.compiler.is_compiling():  # the loop below reads counts: a traced step takes the gathered form
            return self.gathered(x, expert_ids, weights)
        N, k = expert_ids.shape
        if N == 1:  # one token (batch-1 decoding): no grouping to do
            return self.single(x, expert_ids, weights)
        flat_ids = expert_ids.reshape(-1)  # (N k,) token-choice pairs
        counts = torch.bincount(flat_ids, minlength=self.num_experts).tolist()
        hit = sum(n > 0 for n in counts)
        if N <= DENSE_MAX_TOKENS and (self.num_experts - hit) * self.expert_bytes() < hit * DISPATCH_BYTES:
            return self.dense(x, expert_ids, weights)
        order = flat_ids.argsort(stable=True)  # grouped by expert
        out = torch.zeros_like(x)
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            pairs = order[start:start + n]
            tokens = pairs // k
            y = self.expert(x[tokens], e)  # (n, C)
            out.index_add_(0, tokens, y * weights.reshape(-1)[pairs, None].to(y.dtype))
            start += n
        return out

    def expert(self, h: torch.Tensor, e: int) -> torch.Tensor:
        """Expert e on h (n, C) -> (n, C)."""
        return F.linear(act_and_mul(self.act, F.linear(h, self.gate_proj[e]), F.linear(h, self.up_proj[e])),
                        self.down_proj[e])

    def single(self, x: torch.Tensor, expert_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """One token, x (1, C): its k experts one after another, summed in expert order as the loop adds them
        (the same float sums), without the loop's counting, sorting and scattering."""
        out = None
        for j, e in sorted(enumerate(expert_ids[0].tolist()), key=lambda pair: pair[1]):
            y = self.expert(x, e) * weights[0, j]
            out = y if out is None else out + y
        return out

    def expert_bytes(self) -> int:
        return 3 * self.down_proj[0].numel() * self.down_proj.element_size()

    def dense(self, x: torch.Tensor, expert_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The same sum with every expert run on every token, (E, N, F), in three batched matmuls; the
        routing weights are zero for the experts a token did not choose (their outputs are dropped, not
        multiplied, so an overflow there cannot leak in). For a few tokens that hit most experts."""
        h = self.act(torch.matmul(x, self.gate_proj.transpose(1, 2))) * torch.matmul(x, self.up_proj.transpose(1, 2))
        y = torch.matmul(h, self.down_proj.transpose(1, 2))  # (E, N, C)
        routing = torch.zeros(x.shape[0], self.num_experts, dtype=y.dtype, device=y.device)
        routing = routing.scatter_(1, expert_ids, weights.to(y.dtype)).T[..., None]  # (E, N, 1)
        return torch.where(routing != 0, y * routing, 0).sum(0)

    def gathered(self, x: torch.Tensor, expert_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The same sum with each token's k experts' weights gathered, (N, k, F, C): fixed shapes and no
        count read back, for a compiled decode step (N is the batch there; a long prompt runs the loop)."""
        h = torch.einsum("nc,nkfc->nkf", x, self.gate_proj[expert_ids])
        h = self.act(h) * torch.einsum("nc,nkfc->nkf", x, self.up_proj[expert_ids])
        y = torch.einsum("nkf,nkcf->nkc", h, self.down_proj[expert_ids])  # (N, k, C)
        return (y * weights[..., None].to(y.dtype)).sum(1)


class SparseMoeBlock(nn.Module):
    """Router (`gate`, no bias) + `experts`. Routing as each family's config says: softmax over all
    experts then top-k (Mixtral, Qwen3-MoE), or top-k of the logits then softmax over those;
    `norm_topk_prob` renormalises the kept probabilities to sum to 1."""

    def __init__(self, hidden_size: int, intermediate_size: int, num_experts: int, top_k: int,
                 hidden_act: str = "silu", norm_topk_prob: bool = True, softmax_before_topk: bool = True):
        super().__init__()
        self.top_k, self.norm_topk_prob, self.softmax_before_topk = top_k, norm_topk_prob, softmax_before_topk
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.experts = Experts(num_experts, hidden_size, intermediate_size, hidden_act)

    def route(self, router_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, E) logits -> expert ids (N, k) and their weights (N, k), float32."""
        if self.softmax_before_topk:
            weights, ids = torch.topk(router_logits.softmax(dim=-1, dtype=torch.float32), self.top_k, dim=-1)
        else:
            weights, ids = torch.topk(router_logits, self.top_k, dim=-1)
            weights = weights.softmax(dim=-1, dtype=torch.float32)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return ids, weights

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> (output (B, T, C), router logits (B*T, E))."""
        B, T, C = x.shape
        flat = x.reshape(-1, C)
        router_logits = self.gate(flat)  # (N, E)
        ids, weights = self.route(router_logits)
        return self.experts(flat, ids, weights.to(x.dtype)).view(B, T, C), router_logits


def stack_rules(container: str, names: dict[str, str]) -> tuple:
    """`conversion.Stack` rules for per-expert checkpoint tensors: `names` maps each checkpoint leaf
    module (Mixtral: w1, w3, w2) to the stacked parameter (gate_proj, up_proj, down_proj)."""
    return tuple(conversion.Stack(container, f"{leaf}.weight", stacked) for leaf, stacked in names.items())


def load_balancing_loss(router_logits: tuple[torch.Tensor, ...] | torch.Tensor, num_experts: int, top_k: int,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Switch Transformer's auxiliary loss: num_experts * sum over experts of (fraction of token choices
    routed to it) * (mean router probability it gets), over every layer's router logits (N, E) each;
    padded tokens (attention_mask (B, T) == 0) are left out. 1.0 when routing is perfectly even."""
    logits = torch.cat(router_logits) if isinstance(router_logits, (tuple, list)) else router_logits  # (L*N, E)
    probs = logits.float().softmax(dim=-1)
    chosen = F.one_hot(probs.topk(top_k, dim=-1).indices, num_experts).float()  # (L*N, k, E)
    if attention_mask is None:
        tokens_per_expert = chosen.mean(dim=0)  # (k, E)
        prob_per_expert = probs.mean(dim=0)  # (E,)
    else:
        keep = attention_mask.reshape(-1).to(probs.dtype)  # (N,), one per token of every layer's logits
        keep = keep.repeat(logits.shape[0] // keep.shape[0])  # (L*N,)
        tokens_per_expert = (chosen * keep[:, None, None]).sum(0) / keep.sum()
        prob_per_expert = (probs * keep[:, None]).sum(0) / keep.sum()
    return (tokens_per_expert * prob_per_expert[None]).sum() * num_experts


@dataclass
class MoeModelOutputWithPast(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    router_logits: tuple | None = None  # one (B*T, E) per sparse layer


@dataclass
class MoeCausalLMOutputWithPast(ModelOutput):
    loss: Any = None
    aux_loss: Any = None
    logits: Any = None
    past_key_values: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    router_logits: tuple | None = None


class MoeCausalLMHead(CausalLMHead):
    """CausalLMHead over a base model that can return router logits (`output_router_logits`, default
    config.output_router_logits): then `aux_loss` is the load-balancing loss over them (padding left out
    by `attention_mask`), and with labels the loss adds config.router_aux_loss_coef * aux_loss."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                output_router_logits=None, return_dict=None, cache_position=None,
                logits_to_keep: int | torch.Tensor = 0, **inputs):
        config = self.config
        routed = config.output_router_logits if output_router_logits is None else output_router_logits
        out = self.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                              output_router_logits=routed, return_dict=True, cache_position=cache_position, **inputs)
        hidden = out.last_hidden_state  # (B, T, C)
        if isinstance(logits_to_keep, int):
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
        else:
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)  # (B, T', V)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        aux_loss = None
        if routed:
            T = out.last_hidden_state.shape[1]  # a cached step routes only its new tokens: their mask columns
            mask = attention_mask[:, -T:] if attention_mask is not None else None
            aux_loss = load_balancing_loss(out.router_logits, config.num_local_experts, config.num_experts_per_tok,
                                           mask)
            if loss is not None:
                loss = loss + config.router_aux_loss_coef * aux_loss.to(loss.device)
        return finish(MoeCausalLMOutputWithPast(loss, aux_loss, logits, out.past_key_values, out.hidden_states,
                                                out.attentions, out.router_logits), self._return_dict(return_dict))
