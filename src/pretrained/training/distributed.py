"""Processes under torchrun: the process group, the model wrapped for DDP or sharded with FSDP2, and the
collectives the training loop needs (sums, barriers, whole state dicts of a sharded model).

Everything runs on PyTorch's own engine: DistributedDataParallel, or `torch.distributed.fsdp.fully_shard`
(FSDP2: parameters become DTensors sharded over the processes, gathered layer by layer for each forward and
backward). One process is a world of one: nothing is wrapped and every collective is the identity.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from ..errors import ConfigError
from .arguments import check_fsdp_arguments

def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def start(args, model: nn.Module) -> tuple[int, int]:
    """(rank, world size); starts the process group under torchrun and puts the model on this process's GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(args.ddp_backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    if dist.get_backend() == "nccl":
        torch.cuda.set_device(args.local_process_index)
        model.to(f"cuda:{args.local_process_index}")
    return rank_and_world()


def wrap(model: nn.Module, args, world: int) -> nn.Module:
    """The module the training loop calls: DDP around `model`, or `model` itself sharded in place (FSDP)."""
    options, config = check_fsdp_arguments(args.fsdp, args.fsdp_config)
    if config.get("activation_checkpointing") and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(args.gradient_checkpointing_kwargs)
    if world == 1:
        return model
    if not options:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)
    return _fully_shard(model, options, config)


def _fully_shard(model: nn.Module, options: list[str], config: dict) -> nn.Module:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    device = next(model.parameters()).device
    if "offload" in options and device.type == "cpu":
        raise ConfigError("TrainingArguments.fsdp 'offload' keeps parameters on the CPU between uses on a GPU; "
                          "this process trains on the CPU already")
    with torch.no_grad():  # as DDP does: every process starts from process 0's weights
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, 0)
    world, local = dist.get_world_size(), int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    if options[0].startswith("hybrid_shard"):  # replicate across machines, shard within each
        mesh = init_device_mesh(device.type, (world // local, local), mesh_dim_names=("replicate", "shard"))
    else:
        mesh = init_device_mesh(device.type, (world,))
    reshard = config.get("reshard_after_forward", options[0] in ("full_shard", "hybrid_shard"))
    settings = dict(mesh=mesh, reshard_after_forward=reshard,
                    offload_policy=CPUOffloadPolicy() if "offload" in options else OffloadPolicy())
    if "auto_wrap" in options or "transformer_layer_cls_to_wrap" in config or "min_num_params" in config:
        for module in _units(model, config):
            fully_shard(module, **settings)
    fully_shard(model, **settings)
    model.use_inference_optimizations = False  # eval() must not swap modules whose parameters FSDP manages
    return model


def _units(model: nn.Module, config: dict) -> list[nn.Module]:
    """The modules sharded one by one (innermost first): the named layer classes, else modules past
    min_num_params, else every layer of the model's stacks (the items of its ModuleLists)."""
    names = config.get("transformer_layer_cls_to_wrap")
    if names:
        units = [m for m in model.modules() if type(m).__name__ in names]
        found = {type(m).__name__ for m in units}
        if set(names) - found:
            raise ConfigError(f"TrainingArguments.fsdp_config['transformer_layer_cls_to_wrap']: "
                              f"{sorted(set(names) - found)} not found in {type(model).__name__}")
        return units
    if "min_num_params" in config:
        units, counted = [], {}

        def visit(module: nn.Module) -> int:  # parameters of `module` not yet inside a unit
            free = sum(visit(child) for child in module.children()) + sum(p.numel() for p in module.parameters(recurse=False))
            if module is not model and free >= config["min_num_params"]:
                units.append(module)
                return 0
            return free

        visit(model)
        return units
    return [layer for m in model.modules() if isinstance(m, nn.ModuleList) for layer in m
            if any(True for _ in layer.parameters())]


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gradient_sync(train_model: nn.Module, enabled: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on accumulation micro-batches."""
    if enabled:
        yield
    elif is_sharded(train_model):
        train_model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            train_model.set_requires_gradient_sync(True)
    elif hasattr(train_model, "no_sync"):
        with train_model.no_sync():
            yield
    else:
        yield


def all_sum(value, world: int):
    """`value` (a number or a tensor) summed over every process."""
    if world == 1:
        return value
    import torch.distributed as dist

    tensor = torch.as_tensor(value, dtype=torch.float64).clone()
    dist.all_reduce(tensor)
    return tensor.to(value.dtype) if isinstance(value, torch.Tensor) else tensor.item()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def full_tensor(value):
    """A DTensor (an FSDP gradient norm) as the whole tensor; anything else unchanged."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


# --- whole state dicts of a sharded model: every process takes part, every process gets them ---

def model_state(model: nn.Module) -> dict | None:
    """The model's whole state dict on the CPU when it is sharded (a collective), else None (use its own)."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def optimizer_state(model: nn.Module, optimizer) -> dict | None:
    """The optimizer's whole state (keyed by parameter names) when the model is sharded, else None."""
    if optimizer is None or not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_model_state(model: nn.Module, state_dict: dict) -> None:
    """Copy a whole state dict into `model`'s own tensors (each process keeps its shard when sharded)."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state_dict, options=StateDictOptions(full_state_dict=True, strict=True))
        return
    with torch.no_grad():
        model.load_state_dict(state_dict, strict=True)


def load_optimizer_state(model: nn.Module, optimizer, state_dict: dict) -> None:
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, state_dict, options=StateDictOptions(full_state_dict=True))
        return
    optimizer.load_state_dict(state_dict)
