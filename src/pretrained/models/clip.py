"""CLIP: a causal text transformer and a ViT-style image transformer, each projected into one space.

Module paths equal the checkpoint keys (`text_model.encoder.layers.0.self_attn.q_proj`,
`vision_model.pre_layrnorm`, `visual_projection`, `logit_scale`). CLIPTextModel and CLIPVisionModel keep
their modules at the top, as Transformers 5 saves them; their `base_model_prefix` (`text_model`,
`vision_model`) lets them load a whole CLIPModel checkpoint or a Transformers 4 one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import InputError
from ..heads import sequence_classification_loss
from ..layers import get_activation, projections
from ..masks import causal_mask
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutputWithPooling, ImageClassifierOutput, ModelOutput, Tensor, Tensors, finish
from ..stack import run_layers
from .vit import interpolate_positions


class _CLIPTowerConfig(PretrainedConfig):
    """Fields shared by the text and vision configs; `from_dict` of a whole CLIPConfig takes the tower's part."""

    tower_key = ""
    hidden_size: int = 512
    intermediate_size: int = 2048
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    initializer_factor: float = 1.0

    @classmethod
    def from_dict(cls, config_dict, return_unused_kwargs: bool = False, **kwargs):
        if config_dict.get("model_type") == "clip":
            config_dict = {**(config_dict.get(cls.tower_key) or {}), "_name_or_path": config_dict.get("_name_or_path", "")}
        return super().from_dict(config_dict, return_unused_kwargs, **kwargs)


class CLIPTextConfig(_CLIPTowerConfig):
    model_type = "clip_text_model"
    tower_key = "text_config"
    vocab_size: int = 49408
    max_position_embeddings: int = 77
    pad_token_id: int | None = 1
    bos_token_id: int | None = 49406
    eos_token_id: int | list | None = 49407


class CLIPVisionConfig(_CLIPTowerConfig):
    model_type = "clip_vision_model"
    tower_key = "vision_config"
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32


class CLIPConfig(PretrainedConfig):
    """`text_config` and `vision_config` are config objects here and plain dicts in config.json."""

    model_type = "clip"
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    initializer_factor: float = 1.0

    def __init__(self, text_config=None, vision_config=None, **kwargs):
        super().__init__(**kwargs)
        self.text_config = _tower(CLIPTextConfig, text_config)
        self.vision_config = _tower(CLIPVisionConfig, vision_config)

    def to_dict(self):
        out = super().to_dict()
        out["text_config"] = self.text_config.to_dict()
        out["vision_config"] = self.vision_config.to_dict()
        return out


def _tower(cls, value):
    if value is None or isinstance(value, dict):
        return cls(**(value or {}))
    if isinstance(value, cls):
        return value
    raise InputError(f"CLIPConfig: {cls.tower_key} must be a dict or a {cls.__name__}, got {type(value).__name__}")


@dataclass
class CLIPOutput(ModelOutput):
    loss: Tensor = None
    logits_per_image: Tensor = None  # (images, texts)
    logits_per_text: Tensor = None  # (texts, images)
    text_embeds: Tensor = None  # (texts, projection_dim), unit length
    image_embeds: Tensor = None
    text_model_output: BaseModelOutputWithPooling = None
    vision_model_output: BaseModelOutputWithPooling = None

    def to_tuple(self) -> tuple:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in (self[k] for k in self.keys()))


@dataclass
class CLIPTextModelOutput(ModelOutput):
    text_embeds: Tensor = None
    last_hidden_state: Tensor = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@dataclass
class CLIPVisionModelOutput(ModelOutput):
    image_embeds: Tensor = None
    last_hidden_state: Tensor = None
    hidden_states: Tensors = None
    attentions: Tensors = None


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids, position_ids=None):
        T = input_ids.shape[-1]
        if T > self.position_embedding.num_embeddings:
            raise InputError(f"sequence length {T} exceeds max_position_embeddings="
                             f"{self.position_embedding.num_embeddings}; truncate the input")
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)[None]
        return self.token_embedding(input_ids) + self.position_embedding(position_ids)


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.image_size, self.patch_size = config.image_size, config.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.patch_embedding = nn.Conv2d(config.num_channels, config.hidden_size, self.patch_size,
                                         stride=self.patch_size, bias=False)
        self.num_positions = (self.image_size // self.patch_size) ** 2 + 1
        self.position_embedding = nn.Embedding(self.num_positions, config.hidden_size)

    def forward(self, pixel_values, interpolate_pos_encoding: bool = False):
        B, _, H, W = pixel_values.shape
        if not interpolate_pos_encoding and (H, W) != (self.image_size, self.image_size):
            raise InputError(f"input image size ({H}*{W}) doesn't match the model's config.image_size "
                             f"({self.image_size}*{self.image_size}); resize it or pass interpolate_pos_encoding=True")
        weight = self.patch_embedding.weight
        patches = self.patch_embedding(pixel_values.to(weight.dtype)).flatten(2).transpose(1, 2)  # (B, N, C)
        x = torch.cat([self.class_embedding.expand(B, 1, -1), patches], dim=1)
        table = self.position_embedding.weight[None]  # (1, 1 + N, C)
        if interpolate_pos_encoding and not (x.shape[1] == self.num_positions and H == W):
            table = interpolate_positions(table, H, W, self.patch_size)
        return x + table


class CLIPAttention(nn.Module):
    fusable_projections = (("q_proj", "k_proj", "v_proj"),)

    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_dropout
        self.config = config

    def forward(self, x, mask, is_causal, output_attentions=False):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
                   for t in projections(x, self.q_proj, self.k_proj, self.v_proj))
        attend = attention_function(self.config.attn_implementation, output_attentions)
        y, weights = attend(q, k, v, mask, scale=self.head_dim**-0.5, dropout=self.dropout if self.training else 0.0,
                            is_causal=is_causal)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C)), weights


class CLIPMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, mask, is_causal, output_attentions=False):
        y, weights = self.self_attn(self.layer_norm1(x), mask, is_causal, output_attentions)
        x = x + y
        return x + self.mlp(self.layer_norm2(x)), weights


class CLIPEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, x, mask=None, is_causal=False, output_attentions=False, output_hidden_states=False):
        """(last hidden state, hidden states: the embeddings and every layer's output, attentions)."""
        out = run_layers(self, self.layers, x, mask, is_causal, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        hidden_states = out.hidden_states + (out.last_hidden_state,) if output_hidden_states else None
        return out.last_hidden_state, hidden_states, out.attentions


class CLIPPreTrainedModel(PreTrainedModel):
    config_class = CLIPConfig
    base_model_prefix = "clip"
    supports_gradient_checkpointing = True
    _keys_to_ignore_on_load_unexpected = (r"position_ids$",)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        config = self.config
        factor = config.initializer_factor
        if isinstance(module, CLIPVisionEmbeddings):
            nn.init.normal_(module.class_embedding, std=module.class_embedding.shape[0] ** -0.5 * factor)
            nn.init.normal_(module.patch_embedding.weight, std=getattr(config, "initializer_range", 0.02) * factor)
        elif isinstance(module, CLIPModel):
            module.logit_scale.data.fill_(config.logit_scale_init_value)

    def _return_dict(self, return_dict):
        return self.config.return_dict if return_dict is None else return_dict


class CLIPTextModel(CLIPPreTrainedModel):
    config_class = CLIPTextConfig
    base_model_prefix = "text_model"

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.token_embedding

    def set_input_embeddings(self, value):
        self.embeddings.token_embedding = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        if input_ids is None:
            raise InputError("CLIPTextModel needs input_ids")
        output_attentions, output_hidden_states = output_flags(self.config, output_attentions, output_hidden_states)
        input_ids = input_ids.view(-1, input_ids.shape[-1])
        x = self.embeddings(input_ids, position_ids)  # (B, T, C)
        T = x.shape[1]
        mask = causal_mask(attention_mask, T, T, x.dtype, x.device)  # None: plain causal
        x, hidden_states, attentions = self.encoder(x, mask, mask is None, output_attentions, output_hidden_states)
        x = self.final_layer_norm(x)
        rows = torch.arange(x.shape[0], device=x.device)
        if self.config.eos_token_id == 2:  # checkpoints from before eos was fixed: the highest id is end-of-text
            pooled = x[rows, input_ids.to(torch.int).argmax(-1)]
        else:  # the first end-of-text token (padding may use the same id)
            pooled = x[rows, (input_ids == self.config.eos_token_id).int().argmax(-1)]
        return finish(BaseModelOutputWithPooling(x, pooled, hidden_states, attentions), self._return_dict(return_dict))


class CLIPVisionModel(CLIPPreTrainedModel):
    config_class = CLIPVisionConfig
    base_model_prefix = "vision_model"
    main_input_name = "pixel_values"

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # sic: the checkpoint's name
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.patch_embedding

    def forward(self, pixel_values=None, interpolate_pos_encoding: bool = False, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        if pixel_values is None:
            raise InputError("CLIPVisionModel needs pixel_values (batch, channels, height, width)")
        output_attentions, output_hidden_states = output_flags(self.config, output_attentions, output_hidden_states)
        x = self.pre_layrnorm(self.embeddings(pixel_values, interpolate_pos_encoding))  # (B, 1 + N, C)
        x, hidden_states, attentions = self.encoder(x, None, False, output_attentions, output_hidden_states)
        pooled = self.post_layernorm(x[:, 0])
        return finish(BaseModelOutputWithPooling(x, pooled, hidden_states, attentions), self._return_dict(return_dict))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.pow(2).sum(-1, keepdim=True).pow(0.5)


class CLIPModel(CLIPPreTrainedModel):
    """Both towers and their projections; `logits_per_image[i, j]` scores image i against text j.

    `get_text_features` / `get_image_features` return the projected (batch, projection_dim) tensor, as
    Transformers 4.x and its docs do; pass `return_dict=True` for Transformers 5's form, the tower's
    BaseModelOutputWithPooling whose `pooler_output` is that projection.
    """

    def __init__(self, config):
        super().__init__(config)
        for tower in (config.text_config, config.vision_config):  # one attention backend for the whole model
            tower.attn_implementation = config.attn_implementation
        self.text_model = CLIPTextModel(config.text_config)
        self.vision_model = CLIPVisionModel(config.vision_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()

    def get_input_embeddings(self):
        return self.text_model.get_input_embeddings()

    def get_text_features(self, input_ids=None, attention_mask=None, position_ids=None, return_dict: bool = False,
                          **kwargs):
        out = self.text_model(input_ids, attention_mask, position_ids, return_dict=True, **kwargs)
        out.pooler_output = self.text_projection(out.pooler_output)
        return out if return_dict else out.pooler_output

    def get_image_features(self, pixel_values=None, interpolate_pos_encoding: bool = False, return_dict: bool = False,
                           **kwargs):
        out = self.vision_model(pixel_values, interpolate_pos_encoding, return_dict=True, **kwargs)
        out.pooler_output = self.visual_projection(out.pooler_output)
        return out if return_dict else out.pooler_output

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None, return_loss=None,
                interpolate_pos_encoding: bool = False, output_attentions=None, output_hidden_states=None,
                return_dict=None):
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        vision = self.get_image_features(pixel_values, interpolate_pos_encoding, return_dict=True, **flags)
        text = self.get_text_features(input_ids, attention_mask, position_ids, return_dict=True, **flags)
        image_embeds, text_embeds = _unit(vision.pooler_output), _unit(text.pooler_output)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()  # (texts, images)
        loss = None
        if return_loss:  # symmetric contrastive loss: text i belongs with image i
            targets = torch.arange(len(logits_per_text), device=logits_per_text.device)
            loss = (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.t(), targets)) / 2
        return finish(CLIPOutput(loss, logits_per_text.t(), logits_per_text, text_embeds, image_embeds, text, vision),
                      self._return_dict(return_dict))


class CLIPTextModelWithProjection(CLIPPreTrainedModel):
    config_class = CLIPTextConfig
    base_model_prefix = "text_model"

    def __init__(self, config):
        super().__init__(config)
        self.text_model = CLIPTextModel(config)
        self.text_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.text_model(input_ids, attention_mask, position_ids, output_attentions, output_hidden_states, True)
        return finish(CLIPTextModelOutput(self.text_projection(out.pooler_output), out.last_hidden_state,
                                          out.hidden_states, out.attentions), self._return_dict(return_dict))


class CLIPVisionModelWithProjection(CLIPPreTrainedModel):
    config_class = CLIPVisionConfig
    base_model_prefix = "vision_model"
    main_input_name = "pixel_values"

    def __init__(self, config):
        super().__init__(config)
        self.vision_model = CLIPVisionModel(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.vision_model.get_input_embeddings()

    def forward(self, pixel_values=None, interpolate_pos_encoding: bool = False, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.vision_model(pixel_values, interpolate_pos_encoding, output_attentions, output_hidden_states, True)
        return finish(CLIPVisionModelOutput(self.visual_projection(out.pooler_output), out.last_hidden_state,
                                            out.hidden_states, out.attentions), self._return_dict(return_dict))


class CLIPForImageClassification(CLIPPreTrainedModel):
    """A linear classifier over the mean of the vision tower's patch states (the class state left out)."""

    main_input_name = "pixel_values"

    def __init__(self, config):
        super().__init__(config)
        config.vision_config.attn_implementation = config.attn_implementation
        self.num_labels = config.num_labels
        self.vision_model = CLIPVisionModel(config.vision_config)
        hidden = config.vision_config.hidden_size
        self.classifier = nn.Linear(hidden, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(self, pixel_values=None, labels=None, interpolate_pos_encoding: bool = False, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.vision_model(pixel_values, interpolate_pos_encoding, output_attentions, output_hidden_states, True)
        logits = self.classifier(out.last_hidden_state[:, 1:].mean(dim=1))  # (B, num_labels)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return finish(ImageClassifierOutput(loss, logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))
