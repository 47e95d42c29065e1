"""PreTrainedModel: from_pretrained / save_pretrained, weight init and tying, dtype and device.

Loading builds the model on the meta device (`init_empty_weights`: no memory, no random init, local
to the calling thread), then gives each parameter its checkpoint tensor: read from the memory-mapped
safetensors file into memory the model owns, chunk by chunk, releasing the mapped pages as it goes,
so peak memory stays near one copy of the weights. Only what the checkpoint lacks is materialised and
initialised; derived buffers (rotary, sinusoidal tables) are recomputed. A loaded model is in eval
mode, which runs the inference kernels of `pretrained.optimize`; `train()` puts the plain modules back.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import re
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from . import conversion
from .configuration import PretrainedConfig, get_config_dict
from .errors import CheckpointError, ConfigError, UnsupportedOptionError
from .hub import HubOptions, first_existing, resolve_file
from .weights import (
    SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME,
    BinShard, SafetensorsShard, TensorDict, confine, read_index, save_state_dict,
)

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
# from_pretrained keywords Transformers accepts whose effect is what loading here always does: low memory
# (meta-device build), no random init of loaded weights, code from the library's own registry
_NO_OP_KWARGS = ("low_cpu_mem_usage", "_fast_init", "trust_remote_code", "_from_auto", "_from_pipeline")
# keywords that would change what is loaded, refused unless they ask for the default
_REFUSED_KWARGS = {
    "from_tf": (False, "TensorFlow checkpoints are not read; convert them to safetensors"),
    "from_flax": (False, "Flax checkpoints are not read; convert them to safetensors"),
    "offload_folder": (None, "disk offload is not supported; load on fewer devices or in a smaller dtype"),
    "offload_state_dict": (None, "disk offload is not supported"),
    "use_flash_attention_2": (False, "pass attn_implementation='sdpa' (PyTorch's fused kernels) instead"),
}


_INIT_FUNCTIONS = frozenset(getattr(nn.init, name) for name in (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_"))
_IN_PLACE_FILLS = frozenset(getattr(torch.Tensor, name) for name in (
    "uniform_", "normal_", "fill_", "zero_", "random_", "exponential_", "bernoulli_"))


class _SkipInitOnMeta(TorchFunctionMode):
    """Random init and fills of meta tensors do nothing (the checkpoint fills them). Without this,
    torch runs them through its Python reference kernels, which import torch._dynamo (~1.5 s).
    A torch function mode is per thread, like `torch.device("meta")`: nothing global is patched."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _INIT_FUNCTIONS or func in _IN_PLACE_FILLS:
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


@contextlib.contextmanager
def init_empty_weights():
    """Build modules with every parameter and buffer on the meta device and no random init: no
    memory, no time. Local to the calling thread; afterwards `PreTrainedModel._materialize_missing`
    allocates what a checkpoint did not fill and recomputes derived buffers (`reset_buffers()`)."""
    with torch.device("meta"), _SkipInitOnMeta():
        yield


def resolve_dtype(dtype, config: PretrainedConfig, first_float_dtype=None) -> torch.dtype | None:
    """Map the dtype/torch_dtype argument to a torch dtype; 'auto' takes the checkpoint's."""
    if dtype is None or dtype == "auto":
        auto = config._dtype if config._dtype not in (None, "auto") else None
        if auto is not None:
            return _DTYPES.get(auto, torch.float32)
        return first_float_dtype
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise ConfigError(f"dtype={dtype!r} is not supported; expected 'auto', float32, float16, bfloat16 or a torch.dtype")


def output_flags(config: PretrainedConfig, output_attentions, output_hidden_states) -> tuple[bool, bool]:
    """This call's (output_attentions, output_hidden_states): the arguments, else the config's defaults."""
    return (config.output_attentions if output_attentions is None else output_attentions,
            config.output_hidden_states if output_hidden_states is None else output_hidden_states)


def own_class(model: nn.Module) -> type:
    """The model's class, past the subclass torch's wrappers swap in place (FSDP2's fully_shard makes
    `FSDPLlamaForCausalLM` of a LlamaForCausalLM): the name a checkpoint records and the class that reloads it."""
    return next(c for c in type(model).__mro__ if not c.__module__.startswith("torch."))


class PreTrainedModel(nn.Module):
    """Base of every model. Subclasses set `config_class` and `base_model_prefix` and call
    `self.post_init()` at the end of `__init__`."""

    config_class: type[PretrainedConfig] = PretrainedConfig
    base_model_prefix: str = ""
    main_input_name: str = "input_ids"
    # parameter -> parameter it shares when config.tie_word_embeddings (e.g. the LM decoder -> the embeddings)
    _tied_weights_keys: dict[str, str] = {}
    _keys_to_ignore_on_load_unexpected: tuple[str, ...] = ()  # regexes
    _keys_to_ignore_on_load_missing: tuple[str, ...] = ()
    # modules (a name anywhere in a parameter's path) kept in float32 when loading in float16 (T5's `wo`)
    _keep_in_fp32_modules: tuple[str, ...] = ()
    checkpoint_rules: tuple = ()  # conversion.Rename / Transpose / Fuse (a property when it depends on the config)
    supports_gradient_checkpointing: bool = False
    use_inference_optimizations: bool = True  # eval mode runs pretrained.optimize's kernels (set False to opt out)
    init_std_field: str = "initializer_range"  # config field holding the init std (BART calls it init_std)

    def __init__(self, config: PretrainedConfig, *args, **kwargs):
        super().__init__()
        if not isinstance(config, PretrainedConfig):
            raise ConfigError(f"{type(self).__name__} needs a PretrainedConfig, got {type(config).__name__}")
        if config.attn_implementation is None:
            config.attn_implementation = "sdpa"
        self.config = config
        self.name_or_path = config.name_or_path
        self.gradient_checkpointing = False

    def train(self, mode: bool = True):
        """Train mode runs the plain modules; eval mode swaps in the inference kernels of
        `pretrained.optimize` (reversibly, same parameters) unless `use_inference_optimizations` is False."""
        super().train(mode)
        from . import optimize

        if mode or not self.use_inference_optimizations:
            optimize.undo_inference_optimizations(self)
        else:
            optimize.optimize_for_inference(self)
        return self

    # --- init and tying ---

    def post_init(self) -> None:
        if not any(p.is_meta for p in self.parameters()):  # under init_empty_weights() the checkpoint fills them
            self.apply(self._init_weights)
        self.tie_weights()

    def _init_weights(self, module: nn.Module) -> None:
        """Transformers' default init: normal(0, initializer_range) for Linear and Embedding."""
        std = getattr(self.config, self.init_std_field, 0.02)
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                module.weight.data.fill_(1.0)
            if module.bias is not None:
                module.bias.data.zero_()

    def tied_weights(self) -> dict[str, str]:
        """The tying map in force for this config (empty when tie_word_embeddings is False)."""
        return dict(self._tied_weights_keys) if getattr(self.config, "tie_word_embeddings", True) else {}

    def tie_weights(self) -> None:
        for target, source in self.tied_weights().items():
            module_name, _, attr = target.rpartition(".")
            setattr(self.get_submodule(module_name), attr, self.get_parameter(source))

    def get_input_embeddings(self) -> nn.Module:
        base = getattr(self, self.base_model_prefix, self)
        if base is not self:
            return base.get_input_embeddings()
        raise NotImplementedError(f"{type(self).__name__} does not define get_input_embeddings")

    def get_output_embeddings(self) -> nn.Module | None:
        return None

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Grow or cut the vocabulary (input embeddings, an untied output projection, config.vocab_size)."""
        from .resizing import resize_token_embeddings

        return resize_token_embeddings(self, new_num_tokens, pad_to_multiple_of, mean_resizing)

    # --- properties ---

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        params = {id(p): p for p in self.parameters() if p.requires_grad or not only_trainable}
        if exclude_embeddings:
            for m in self.modules():
                if isinstance(m, nn.Embedding):
                    params.pop(id(m.weight), None)
        return sum(p.numel() for p in params.values())

    def can_generate(self) -> bool:
        return hasattr(self, "generate") and self.get_output_embeddings() is not None

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each layer's activations in the backward pass instead of storing them (training
        only); `gradient_checkpointing_kwargs` go to torch.utils.checkpoint.checkpoint."""
        if not self.supports_gradient_checkpointing:
            raise ConfigError(f"{type(self).__name__} does not support gradient checkpointing")
        stacks = [m for m in self.modules() if hasattr(m, "gradient_checkpointing") and m is not self]
        for m in stacks or [self]:
            m.gradient_checkpointing = True
            m.gradient_checkpointing_kwargs = dict(gradient_checkpointing_kwargs or {})
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for m in self.modules():
            if hasattr(m, "gradient_checkpointing"):
                m.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    # Transformers 5's names for the same switches
    activation_checkpointing_enable = gradient_checkpointing_enable
    activation_checkpointing_disable = gradient_checkpointing_disable
    is_activation_checkpointing = is_gradient_checkpointing

    @classmethod
    def from_config(cls, config: PretrainedConfig, dtype=None, torch_dtype=None, attn_implementation=None):
        """A freshly initialised model for `config` (Transformers' `_from_config`)."""
        config = copy.deepcopy(config)
        if attn_implementation is not None:
            config.attn_implementation = attn_implementation
        model = cls(config)
        dtype = dtype or torch_dtype
        return model.to(resolve_dtype(dtype, config)) if dtype not in (None, "auto") else model

    _from_config = from_config

    # --- loading ---

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args,
        config: PretrainedConfig | str | os.PathLike | None = None,
        dtype=None,
        torch_dtype=None,
        device_map=None,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        attn_implementation: str | None = None,
        use_safetensors: bool | None = None,
        state_dict: dict | None = None,
        strict: bool = False,
        **kwargs: Any,
    ):
        """Load config and weights from a folder or hub repo id, as Transformers' from_pretrained.
        `strict=True` turns the warning about missing, unused or re-initialised weights into an error."""
        name = pretrained_model_name_or_path
        options = HubOptions.pop_from(kwargs)
        for key in _NO_OP_KWARGS:
            kwargs.pop(key, None)
        for key, (default, advice) in _REFUSED_KWARGS.items():
            if key in kwargs and kwargs.pop(key) not in (default, None):
                raise UnsupportedOptionError(f"from_pretrained({key}=...) is not supported: {advice}")
        keep_float = None  # with an 8-bit request: modules left in floating point
        for key in ("quantization_config", "load_in_8bit", "load_in_4bit"):
            if key in kwargs:
                from .quantization import int8_request, refuse_quantization

                value, where = kwargs.pop(key), f"from_pretrained({key}=...)"
                if key == "load_in_4bit":
                    refuse_quantization({"load_in_4bit": True} if value else None, where)
                elif value:
                    keep_float = int8_request(value, where)
        key_mapping = kwargs.pop("key_mapping", None) or {}
        if not isinstance(key_mapping, dict):
            raise UnsupportedOptionError(f"key_mapping must be a dict of regex -> replacement, got {type(key_mapping).__name__}")
        if kwargs.pop("weights_only", True) is False:
            raise CheckpointError("weights_only=False is not supported: pretrained never unpickles arbitrary objects")
        gguf = _open_gguf(name, kwargs.pop("gguf_file", None), options) if state_dict is None else None

        if not isinstance(config, PretrainedConfig):
            if gguf is not None and config is None:
                config_dict = gguf.config_dict()
            else:
                config_dict, _ = get_config_dict(config or name, options)
            config_dict.setdefault("_name_or_path", os.fspath(name))
            config, kwargs = cls.config_class.from_dict(config_dict, return_unused_kwargs=True, **kwargs)
        else:
            config = copy.deepcopy(config)
            kwargs = config.update_from_kwargs(kwargs)
        config.name_or_path = os.fspath(name)  # as Transformers: where it was loaded from, not config.json's value
        if _is_int8_checkpoint(config):  # saved from an int8 model (save_pretrained / save_int8)
            return _load_int8(name, cls, state_dict, requested_dtype=dtype if dtype is not None else torch_dtype,
                              device_map=device_map, keep_float=keep_float, output_loading_info=output_loading_info)
        if getattr(config, "quantization_config", None):  # a pre-quantized checkpoint: its tensors are not ours
            from .quantization import refuse_quantization

            refuse_quantization(config.quantization_config, f"the config of {os.fspath(name)!r} (quantization_config)")
        if kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword arguments {sorted(kwargs)}")
        if attn_implementation is not None:
            config.attn_implementation = attn_implementation

        requested = dtype if dtype is not None else torch_dtype
        if gguf is not None:  # dequantized to the requested dtype, float32 by default as in Transformers
            target_dtype = resolve_dtype(requested, config, torch.float32)
            shards = gguf.shards(target_dtype)
        else:
            shards = [TensorDict(state_dict)] if state_dict is not None else _open_checkpoint(name, options, use_safetensors)
            first_float = next((t.dtype for s in shards for k in list(s.keys())[:8]
                                for t in [s.get(k)] if t.is_floating_point()), None)
            target_dtype = resolve_dtype(requested, config, first_float)
        key_to_shard = {}
        for shard in shards:
            for key in shard.keys():
                key_to_shard[key] = shard
        if target_dtype is not None:
            config.dtype = str(target_dtype).removeprefix("torch.")

        _check_sizes(config, key_to_shard, name)
        with init_empty_weights():
            model = cls(config, *model_args)
        extra_rules = tuple(conversion.Rename(old, new) for old, new in key_mapping.items())
        info = model._load_checkpoint(key_to_shard, target_dtype, ignore_mismatched_sizes, extra_rules)
        _report_keys(model, name, info, strict)
        model.tie_weights()
        if device_map is not None:
            dispatch(model, device_map)
        model.eval()
        if keep_float is not None:  # load_in_8bit: int8 weight-only layers, the LM head kept in floating point
            from .int8 import quantize_linear_int8

            head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
            head_name = [n for n, m in model.named_modules() if head is not None and m is head]
            quantize_linear_int8(model, skip_modules=keep_float or head_name)
        return (model, info) if output_loading_info else model

    def _load_checkpoint(self, key_to_shard: dict, dtype: torch.dtype | None, ignore_mismatched_sizes: bool,
                         key_mapping: tuple = ()) -> dict:
        """Assign checkpoint tensors to the model's parameters; `key_mapping`: load-only Rename rules
        (from_pretrained's key_mapping=), applied before the architecture's own."""
        rules = (*key_mapping, *self.checkpoint_rules)
        expected = self.state_dict(keep_vars=True)
        tied = self.tied_weights()
        prefix = self.base_model_prefix
        model_has_prefix = bool(prefix) and any(k.startswith(prefix + ".") for k in expected)
        ckpt_has_prefix = bool(prefix) and any(k.startswith(prefix + ".") for k in key_to_shard)

        model_to_ckpt: dict[str, list] = {}  # model key -> its checkpoint keys (several for Fuse / Stack rules)
        combining: dict[str, object] = {}  # model key -> the Fuse / Stack rule that builds it
        unexpected = []
        for ckpt_key in key_to_shard:
            key = conversion.to_model_key(ckpt_key, rules)
            if model_has_prefix and not ckpt_has_prefix:
                key = f"{prefix}.{key}"
            elif ckpt_has_prefix and not model_has_prefix and key.startswith(prefix + "."):
                key = key[len(prefix) + 1:]
            part = 0
            if (hit := conversion.combined_part(key, rules)) is not None and hit[0] in expected:
                key, part, combining[key] = hit
            if key in expected and part < (count := combining[key].count(expected[key].shape) if key in combining else 1):
                model_to_ckpt.setdefault(key, [None] * count)[part] = ckpt_key
            elif not any(re.search(p, ckpt_key) for p in self._keys_to_ignore_on_load_unexpected):
                unexpected.append(ckpt_key)

        missing, mismatched = [], []
        for key, current in expected.items():
            ckpt_keys = model_to_ckpt.get(key)
            if ckpt_keys is None or None in ckpt_keys:  # absent, or some parts of a combined tensor absent
                if key not in tied and not any(re.search(p, key) for p in self._keys_to_ignore_on_load_missing):
                    missing.append(key)
                continue
            transposed = conversion.is_transposed(key, rules)
            shapes = [tuple(key_to_shard[k].shape(k)) for k in ckpt_keys]
            rule = combining.get(key)
            shape = rule.combined_shape(shapes) if rule is not None else shapes[0]
            shape = tuple(reversed(shape)) if transposed else tuple(shape)
            if shape != tuple(current.shape):
                mismatched.append((key, shape, tuple(current.shape)))
                continue
            # The model owns its weights (anonymous memory can be transparent huge pages, mapped file
            # pages cannot: bandwidth-bound decoding is ~9% faster); each copy replaces the mapped
            # pages it came from, so memory holds the weights about once.
            shard = key_to_shard[ckpt_keys[0]]
            stored = shard.dtype(ckpt_keys[0])
            key_dtype = self._load_dtype(key, dtype)
            if key_dtype is not None and stored.is_floating_point and current.is_floating_point():
                wanted = key_dtype
            else:  # parameters on meta take the checkpoint's dtype; real buffers keep theirs
                wanted = stored if current.device.type == "meta" else current.dtype
            if rule is None and not transposed and stored == wanted:
                tensor = shard.take(ckpt_keys[0])
            else:
                parts = [key_to_shard[k].get(k) for k in ckpt_keys]  # views of the mapped file
                tensor = parts[0] if rule is None else rule.combine(parts)
                if transposed:
                    tensor = tensor.t().contiguous()
                if tensor.is_floating_point() and current.is_floating_point() and key_dtype is not None:
                    tensor = tensor.to(key_dtype)
                elif tensor.dtype != current.dtype and current.device.type != "meta":
                    tensor = tensor.to(current.dtype)
                if any(tensor.untyped_storage().data_ptr() == p.untyped_storage().data_ptr() for p in parts):
                    tensor = tensor.clone()
                del parts
                for k in ckpt_keys:
                    key_to_shard[k].release(k)
            _set_tensor(self, key, tensor)

        if mismatched and not ignore_mismatched_sizes:
            lines = "\n".join(f"  {k}: checkpoint {c}, model {m}" for k, c, m in mismatched)
            raise CheckpointError(
                f"{type(self).__name__}: checkpoint shapes do not match the model's (built from config.json's "
                f"sizes):\n{lines}\n"
                "Check the sizes in config.json, or pass ignore_mismatched_sizes=True to re-initialise these weights."
            )
        self._materialize_missing(dtype)
        return {"missing_keys": missing, "unexpected_keys": unexpected,
                "mismatched_keys": mismatched, "error_msgs": []}

    def _load_dtype(self, key: str, dtype: torch.dtype | None) -> torch.dtype | None:
        """The dtype parameter `key` loads in: `dtype`, except float32 for `_keep_in_fp32_modules` in float16."""
        if dtype == torch.float16 and set(key.split(".")) & set(self._keep_in_fp32_modules):
            return torch.float32
        return dtype

    def _materialize_missing(self, dtype: torch.dtype | None) -> None:
        """Tensors still on meta were not in the checkpoint: allocate and initialise parameters
        (`_init_weights`); buffers are recomputed by their module's `reset_buffers()` (rotary and
        sinusoidal tables), or else start at zero (biases such as BART's final_logits_bias)."""
        for module in self.modules():
            meta = [n for n, b in module.named_buffers(recurse=False) if b.is_meta]
            if not meta:
                continue
            if hasattr(module, "reset_buffers"):
                module.reset_buffers()
                continue
            for n in meta:
                b = module._buffers[n]
                module._buffers[n] = torch.zeros(b.shape, dtype=dtype if dtype and b.is_floating_point() else b.dtype)
        tied_targets = set(self.tied_weights())
        for module_name, module in list(self.named_modules()):
            meta = [n for n, p in module.named_parameters(recurse=False)
                    if p.device.type == "meta" and f"{module_name}.{n}".lstrip(".") not in tied_targets]
            if not meta:
                continue
            for n in meta:
                p = module._parameters[n]
                key_dtype = self._load_dtype(f"{module_name}.{n}", dtype)
                real = torch.zeros(p.shape, dtype=key_dtype if key_dtype and p.is_floating_point() else p.dtype)
                module._parameters[n] = nn.Parameter(real, requires_grad=p.requires_grad)
            # Some families initialise a layer from its parent (T5's attention sets q, k, v, o by role), so
            # the parent's rule runs too, after the layer's own; what was loaded is put back afterwards.
            parent_name = module_name.rpartition(".")[0]
            parent = self.get_submodule(parent_name) if parent_name else None
            scope = parent if parent is not None else module
            missing = {id(module._parameters[n]) for n in meta}
            loaded = {p: p.detach().clone() for p in scope.parameters() if id(p) not in missing and not p.is_meta}
            with torch.no_grad():
                self._init_weights(module)
                if parent is not None:
                    self._init_weights(parent)
                for p, value in loaded.items():
                    p.copy_(value)

    # --- saving ---

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        state_dict: dict | None = None,
        max_shard_size: int | str = "5GB",
        safe_serialization: bool = True,
        is_main_process: bool = True,
        **_: Any,
    ) -> None:
        """Write config.json and the weights (safetensors, sharded above `max_shard_size`) atomically."""
        if os.path.isfile(save_directory):
            raise CheckpointError(f"save_pretrained needs a folder, {os.fspath(save_directory)!r} is a file")
        if not is_main_process:
            return
        if _is_int8_checkpoint(self.config):  # int8 codes and scales, not float weights
            from .int8 import save_int8

            if state_dict is not None or not safe_serialization:
                raise UnsupportedOptionError("save_pretrained of an int8 model writes its own state as safetensors; "
                                             "state_dict= and safe_serialization=False are not supported")
            return save_int8(self, save_directory, max_shard_size)
        os.makedirs(save_directory, exist_ok=True)
        state_dict = self.state_dict() if state_dict is None else state_dict
        for target in self.tied_weights():  # shared tensors are written once, as Transformers does
            state_dict.pop(target, None)
        rules = self.checkpoint_rules
        out = {}
        for key, tensor in state_dict.items():
            if conversion.is_transposed(key, rules):
                tensor = tensor.t()
            for part_key, part in conversion.split_combined(key, tensor, rules).items():
                out[conversion.to_checkpoint_key(part_key, rules)] = part
        config = copy.deepcopy(self.config)
        config.architectures = [own_class(self).__name__]
        config.dtype = str(self.dtype).removeprefix("torch.")
        save_state_dict(out, os.fspath(save_directory), max_shard_size, safe_serialization=safe_serialization)
        config.save_pretrained(save_directory)
        generation_config = getattr(self, "generation_config", None)
        if generation_config is not None and hasattr(generation_config, "save_pretrained"):
            generation_config.save_pretrained(save_directory)


def _is_int8_checkpoint(config) -> bool:
    spec = getattr(config, "quantization_config", None)
    return isinstance(spec, dict) and spec.get("quant_method") == "int8_weight_only"


def _load_int8(name, cls, state_dict, requested_dtype, device_map, keep_float, output_loading_info):
    """A folder saved from an int8 model, through int8.load_int8; what that path cannot honour is refused."""
    from .int8 import load_int8

    asked = {"state_dict": state_dict, "dtype": requested_dtype, "device_map": device_map,
             "load_in_8bit/quantization_config": keep_float, "output_loading_info": output_loading_info or None}
    refused = [k for k, v in asked.items() if v is not None]
    if refused or not os.path.isdir(os.fspath(name)):
        raise UnsupportedOptionError(f"{os.fspath(name)!r} holds int8 weights (quant_method int8_weight_only): it "
                                     f"loads from a local folder without {refused or 'a hub download'}")
    model = load_int8(name)
    if not isinstance(model, cls):
        raise CheckpointError(f"{os.fspath(name)!r} holds a {type(model).__name__}, not a {cls.__name__}")
    return model


def _check_sizes(config: PretrainedConfig, key_to_shard: dict, name) -> None:
    """Fail fast when the config's sizes imply far more parameters than the checkpoint holds
    (n_layer=10**9 would otherwise spend hours building modules before any key is compared)."""
    implied = config.implied_parameters()
    if implied <= 10**7:
        return
    stored = sum(math.prod(shard.shape(key)) for key, shard in key_to_shard.items())
    if implied > 8 * stored:
        raise ConfigError(
            f"the config of {os.fspath(name)!r} implies at least {implied:,} parameters, the checkpoint holds "
            f"{stored:,}: check its sizes (hidden_size, num_hidden_layers, vocab_size, ...)")


def _report_keys(model: nn.Module, name, info: dict, strict: bool) -> None:
    """Warn, as Transformers does, when the checkpoint and the model (its config) disagree: a silent
    random initialisation or a dropped tensor is the worst surprise a config mistake can give. With
    `strict`, any disagreement is an error."""
    def listed(keys):
        keys = [k if isinstance(k, str) else f"{k[0]} (checkpoint {k[1]}, model {k[2]})" for k in keys]
        return ", ".join(keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "")

    where = f"{type(model).__name__}.from_pretrained({os.fspath(name)!r})"
    problems = [f"{what}: {listed(info[key])}" for key, what in (
        ("missing_keys", "weights missing from the checkpoint, newly initialised"),
        ("unexpected_keys", "checkpoint weights the model does not use"),
        ("mismatched_keys", "weights re-initialised for a size mismatch")) if info[key]]
    if strict and problems:
        raise CheckpointError(f"{where} with strict=True: the checkpoint does not match the model: "
                              + "; ".join(problems))
    for problem in problems:
        logger.warning(f"{where}: {problem}")


def _set_tensor(model: nn.Module, key: str, tensor: torch.Tensor) -> None:
    module_name, _, attr = key.rpartition(".")
    module = model.get_submodule(module_name)
    if attr in module._parameters:
        old = module._parameters[attr]
        module._parameters[attr] = nn.Parameter(tensor, requires_grad=old.requires_grad)
    else:
        module._buffers[attr] = tensor


def _open_gguf(name, gguf_file, options: HubOptions):
    """The GGUF checkpoint to load, for `gguf_file=` or a path ending in .gguf; else None."""
    if not gguf_file and not os.fspath(name).endswith(".gguf"):
        return None
    from .gguf import GGUFCheckpoint, resolve_gguf

    return GGUFCheckpoint(resolve_gguf(name, gguf_file, options), options)


def _open_checkpoint(name, options: HubOptions, use_safetensors: bool | None) -> list:
    """Open the weight files of a folder or repo: safetensors first, .bin only if allowed."""
    candidates = [SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME]
    if use_safetensors is not True:
        candidates += [WEIGHTS_NAME, WEIGHTS_INDEX_NAME]
    if use_safetensors is False:
        candidates = candidates[2:]
    found = first_existing(name, candidates, options)
    if found is None:
        where = os.path.join(os.fspath(name), options.subfolder)
        raise CheckpointError(f"{where!r} has no weights: looked for {', '.join(candidates)}")
    filename, path = found
    opener = SafetensorsShard if filename.startswith("model.safetensors") else BinShard
    folder = os.path.dirname(path)
    if not filename.endswith(".index.json"):
        return [opener(confine(path, folder))]
    weight_map = read_index(confine(path, folder))
    shard_paths = {}
    for shard_path in dict.fromkeys(weight_map.values()):
        shard_name = os.path.relpath(shard_path, os.path.dirname(path))
        local = os.path.join(os.path.dirname(path), shard_name)
        shard_paths[shard_path] = local if os.path.isfile(local) else resolve_file(
            name, shard_name, options)
    return [opener(confine(p, folder)) for p in shard_paths.values()]


def dispatch(model: nn.Module, device_map) -> None:
    """Place the model per `device_map`: a device, 'auto' (the accelerator if any), or
    {module prefix: device}; inputs of each placed module are moved to its device."""
    if isinstance(device_map, (str, int, torch.device)) and device_map != "auto":
        model.to(torch.device(device_map) if not isinstance(device_map, int) else torch.device("cuda", device_map))
        return
    if device_map == "auto":
        model.to("cuda" if torch.cuda.is_available() else "cpu")
        return
    if not isinstance(device_map, dict):
        raise ConfigError(f"device_map={device_map!r}: expected a device, 'auto' or a dict of module -> device")
    if set(device_map) == {""}:
        model.to(device_map[""])
        return
    for prefix, device in sorted(device_map.items(), key=lambda kv: len(kv[0])):
        module = model.get_submodule(prefix)
        device = torch.device(device if not isinstance(device, int) else f"cuda:{device}")
        module.to(device)

        def move_inputs(mod, args, kwargs, device=device):
            move = lambda x: x.to(device) if isinstance(x, torch.Tensor) else x  # noqa: E731
            return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}

        module.register_forward_pre_hook(move_inputs, with_kwargs=True)
