"""ViT: config, patch embeddings, pre-norm encoder blocks, base model with pooler, image classifier.

Module paths equal the checkpoint keys Transformers writes (`embeddings.patch_embeddings.projection`,
`encoder.layer.0.attention.attention.query`, `encoder.layer.0.intermediate.dense`, ...). The layout is
BERT's, but each block normalises before attention and MLP (`layernorm_before`, `layernorm_after`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError
from ..heads import sequence_classification_loss
from ..layers import get_activation
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutputWithPooling, ImageClassifierOutput, finish
from ..stack import run_layers
from .bert import BertIntermediate, BertSelfAttention


def pair(value) -> tuple[int, int]:
    """An image or patch size given as an int or as (height, width)."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def interpolate_positions(table: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """Position table (1, 1 + N, C) of a square N-patch grid resized (bicubic) to the grid of an image of
    `height` x `width` pixels; the class position is kept as it is."""
    cls_pos, patch_pos = table[:, :1], table[:, 1:]
    side, dim = int(patch_pos.shape[1] ** 0.5), table.shape[-1]
    grid = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # (1, C, side, side)
    grid = F.interpolate(grid, size=(height // patch, width // patch), mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


class ViTConfig(PretrainedConfig):
    model_type = "vit"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | list = 224
    patch_size: int | list = 16
    num_channels: int = 3
    qkv_bias: bool = True
    encoder_stride: int = 16
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.pooler_output_size is None:
            self.pooler_output_size = self.hidden_size

    def validate(self) -> None:
        super().validate()
        for name in ("image_size", "patch_size"):
            value = getattr(self, name)
            if len(pair(value)) != 2 or any(not isinstance(v, int) or v <= 0 for v in pair(value)):
                raise ConfigError(f"{type(self).__name__}.{name} must be a positive int or [height, width], got {value!r}")


class ViTPatchEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.image_size, self.patch_size = pair(config.image_size), pair(config.patch_size)
        self.num_patches = (self.image_size[0] // self.patch_size[0]) * (self.image_size[1] // self.patch_size[1])
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, self.patch_size, stride=self.patch_size)

    def forward(self, pixel_values):
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.num_channels:
            raise InputError(f"pixel_values must be (batch, {self.num_channels}, height, width) as config.num_channels "
                             f"says, got shape {tuple(pixel_values.shape)}")
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (B, N, C)


class ViTEmbeddings(nn.Module):
    def __init__(self, config, use_mask_token: bool = False):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.patch_embeddings = ViTPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.patch_embeddings.num_patches + 1, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = pair(config.patch_size)[0]
        self.image_size = self.patch_embeddings.image_size

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The position table for an image of height x width pixels (the trained one when it fits)."""
        if embeddings.shape[1] == self.position_embeddings.shape[1] and height == width:
            return self.position_embeddings
        return interpolate_positions(self.position_embeddings, height, width, self.patch_size)

    def forward(self, pixel_values, bool_masked_pos=None, interpolate_pos_encoding: bool = False):
        B, _, H, W = pixel_values.shape
        if not interpolate_pos_encoding and (H, W) != self.image_size:
            raise InputError(f"input image size ({H}*{W}) doesn't match the model's config.image_size "
                             f"({self.image_size[0]}*{self.image_size[1]}); resize it or pass interpolate_pos_encoding=True")
        x = self.patch_embeddings(pixel_values)  # (B, N, C)
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise InputError("bool_masked_pos needs a model built with use_mask_token=True")
            masked = bool_masked_pos.unsqueeze(-1).type_as(x)
            x = x * (1.0 - masked) + self.mask_token.expand(B, x.shape[1], -1) * masked
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        positions = self.interpolate_pos_encoding(x, H, W) if interpolate_pos_encoding else self.position_embeddings
        return self.dropout(x + positions)


class ViTSelfAttention(BertSelfAttention):
    """BERT's self-attention (the same `query`/`key`/`value` names) with config.qkv_bias and no mask."""

    def __init__(self, config):
        super().__init__(config, qkv_bias=config.qkv_bias)

    def forward(self, x, output_attentions=False):
        return super().forward(x, None, output_attentions)


class ViTOutput(nn.Module):
    """Projection + dropout (+ the residual when given): `attention.output` and, after the MLP, `output`."""

    def __init__(self, config, in_features):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual=None):
        x = self.dropout(self.dense(x))
        return x if residual is None else x + residual


class ViTAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = ViTSelfAttention(config)
        self.output = ViTOutput(config, config.hidden_size)

    def forward(self, x, output_attentions=False):
        y, weights = self.attention(x, output_attentions)
        return self.output(y), weights


class ViTLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = ViTAttention(config)
        self.intermediate = BertIntermediate(config)  # dense + activation, as in BERT
        self.output = ViTOutput(config, config.intermediate_size)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, output_attentions=False):
        y, weights = self.attention(self.layernorm_before(x), output_attentions)
        x = x + y
        return self.output(self.intermediate(self.layernorm_after(x)), x), weights


class ViTEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(ViTLayer(config) for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False


class ViTPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_output_size)
        self.activation = get_activation(config.pooler_act, "pooler_act")

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


class ViTPreTrainedModel(PreTrainedModel):
    config_class = ViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, ViTEmbeddings):
            nn.init.trunc_normal_(module.position_embeddings, std=std)
            nn.init.trunc_normal_(module.cls_token, std=std)
            if module.mask_token is not None:
                module.mask_token.data.zero_()


class ViTModel(ViTPreTrainedModel):
    def __init__(self, config, add_pooling_layer: bool = True, use_mask_token: bool = False):
        super().__init__(config)
        self.embeddings = ViTEmbeddings(config, use_mask_token=use_mask_token)
        self.encoder = ViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.patch_embeddings

    def forward(self, pixel_values=None, bool_masked_pos=None, interpolate_pos_encoding=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        if pixel_values is None:
            raise InputError("ViTModel needs pixel_values (batch, channels, height, width)")
        output_attentions, output_hidden_states = output_flags(self.config, output_attentions, output_hidden_states)
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        x = self.embeddings(pixel_values, bool_masked_pos, bool(interpolate_pos_encoding))  # (B, 1 + N, C)
        out = run_layers(self.encoder, self.encoder.layer, x, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        hidden_states = out.hidden_states + (out.last_hidden_state,) if output_hidden_states else None
        x = self.layernorm(out.last_hidden_state)
        pooled = self.pooler(x) if self.pooler is not None else None
        return finish(BaseModelOutputWithPooling(x, pooled, hidden_states, out.attentions),
                      self.config.return_dict if return_dict is None else return_dict)


class ViTForImageClassification(ViTPreTrainedModel):
    """A linear classifier over the final [CLS] state (no pooler)."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(self, pixel_values=None, labels=None, interpolate_pos_encoding=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        out = self.vit(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True,
                       output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.classifier(out.last_hidden_state[:, 0])  # (B, num_labels)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return finish(ImageClassifierOutput(loss, logits, out.hidden_states, out.attentions),
                      self.config.return_dict if return_dict is None else return_dict)
