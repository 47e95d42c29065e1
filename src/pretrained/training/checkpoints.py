"""Training checkpoints: write `checkpoint-N` folders atomically, restore them exactly, rotate old ones.

A checkpoint holds the model (its own save_pretrained layout), optimizer.pt, scheduler.pt and scaler.pt
(state dicts, read back only with torch's weights-only unpickler), rng_state.safetensors (our format, no
pickle), trainer_state.json and training_args.json. File names are Transformers' except the RNG file
(Transformers pickles rng_state.pth) and training_args.json (Transformers pickles training_args.bin).

Atomicity: everything is written into a hidden staging folder `.checkpoint-N.tmp-<hex>` beside the target,
flushed to disk, then swapped with an existing `checkpoint-N` in one rename (Linux renameat2 with
RENAME_EXCHANGE). A process killed at any moment leaves `checkpoint-N` either old or new, whole. Where the
swap is unsupported, the old folder is first renamed to `.checkpoint-N.old-<hex>`; a kill between the two
renames leaves no `checkpoint-N` until the next save renames the old one back. Names starting with a dot
never match `checkpoint-N`, so `get_last_checkpoint` and rotation never see a half-written folder.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import pickle
import random
import re
import shutil
import uuid

import numpy as np
import torch

from ..errors import CheckpointError, UnsafeCheckpointError
from ..files import fsync_dir, seal_tree
from ..modeling import own_class
from . import distributed
from .callbacks import TrainerState

logger = logging.getLogger(__name__)

PREFIX_CHECKPOINT_DIR = "checkpoint"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
SCALER_NAME = "scaler.pt"
RNG_STATE_NAME = "rng_state.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"
TRAINING_ARGS_NAME = "training_args.json"
MODEL_WEIGHTS_NAME = "model.safetensors"  # models without save_pretrained (plain nn.Module)
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"  # a PeftModel's checkpoint (PEFT's file name)

_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_LEFTOVER_RE = re.compile(rf"^\.({PREFIX_CHECKPOINT_DIR}-\d+)\.(tmp|old)-[0-9a-f]+$")


# --- saving ---

def save_checkpoint(output_dir, step: int, model, optimizer=None, scheduler=None, state=None, args=None,
                    processing_class=None, save_only_model: bool = False, scaler=None, model_state_dict=None,
                    optimizer_state_dict=None) -> str:
    """Write output_dir/checkpoint-{step} atomically (replacing an existing one) and return its path.
    save_only_model: only the model, processing_class, trainer_state.json and training_args.json.
    model_state_dict / optimizer_state_dict: what to write instead of the objects' own (a sharded model's
    whole state, gathered beforehand by every process)."""
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    _remove_leftovers(output_dir)
    name = f"{PREFIX_CHECKPOINT_DIR}-{step}"
    target = os.path.join(output_dir, name)
    staging = os.path.join(output_dir, f".{name}.tmp-{uuid.uuid4().hex}")
    os.mkdir(staging)  # not mkdtemp: its 0700 mode would become the checkpoint's
    try:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(staging, state_dict=model_state_dict)
        elif model_state_dict is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in model_state_dict.items()},
                      os.path.join(staging, MODEL_WEIGHTS_NAME), metadata={"format": "pt"})
        else:
            from safetensors.torch import save_model

            save_model(model, os.path.join(staging, MODEL_WEIGHTS_NAME), metadata={"format": "pt"})
        if processing_class is not None:
            processing_class.save_pretrained(staging)
        if not save_only_model:
            for obj, filename in ((optimizer, OPTIMIZER_NAME), (scheduler, SCHEDULER_NAME), (scaler, SCALER_NAME)):
                if obj is not None:
                    given = optimizer_state_dict if obj is optimizer else None
                    torch.save(given if given is not None else obj.state_dict(), os.path.join(staging, filename))
            _write_rng_state(os.path.join(staging, RNG_STATE_NAME), capture_rng_state())
        if state is not None:
            state.save_to_json(os.path.join(staging, TRAINER_STATE_NAME))
        if args is not None:
            with open(os.path.join(staging, TRAINING_ARGS_NAME), "w", encoding="utf-8") as f:
                f.write(args.to_json_string() + "\n")
        seal_tree(staging)
        previous = _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(output_dir)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return target


def _swap_into_place(staging: str, target: str) -> str | None:
    """Put `staging` at `target`; return the folder that now holds the previous `target` (None if none)."""
    if not os.path.exists(target):
        os.rename(staging, target)
        return None
    if _exchange(staging, target):
        return staging
    old = staging.replace(".tmp-", ".old-")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    return old


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one atomic step; False where the platform or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if os.name == "posix" else None
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise CheckpointError(f"cannot swap {a} with {b}: {os.strerror(code)}")


def _remove_leftovers(output_dir: str) -> None:
    """Clean up after a killed save: delete staging folders, and put back an old checkpoint that a kill
    between the two renames of the fallback swap left under its hidden name."""
    for entry in os.listdir(output_dir):
        match = _LEFTOVER_RE.match(entry)
        if match is None:
            continue
        path, original = os.path.join(output_dir, entry), os.path.join(output_dir, match.group(1))
        if match.group(2) == "old" and not os.path.exists(original):
            os.rename(path, original)
        else:
            shutil.rmtree(path, ignore_errors=True)


# --- loading ---

def load_checkpoint(checkpoint_dir, model=None, optimizer=None, scheduler=None, scaler=None,
                    load_rng: bool = True) -> TrainerState:
    """Restore checkpoint_dir into the objects given (model weights in place, strict keys), the RNG states
    if `load_rng`, and return the TrainerState. Every needed file is checked before anything changes."""
    checkpoint_dir = os.fspath(checkpoint_dir)
    needed = [TRAINER_STATE_NAME]
    needed += [name for obj, name in ((optimizer, OPTIMIZER_NAME), (scheduler, SCHEDULER_NAME),
                                      (scaler, SCALER_NAME)) if obj is not None]
    if load_rng:
        needed.append(RNG_STATE_NAME)
    if _is_adapter_model(model):
        needed += [ADAPTER_WEIGHTS_NAME if name == "default" else os.path.join(name, ADAPTER_WEIGHTS_NAME)
                   for name in model.peft_config]
    elif model is not None and not hasattr(model, "from_pretrained"):
        needed.append(MODEL_WEIGHTS_NAME)
    for name in needed:
        path = os.path.join(checkpoint_dir, name)
        if not os.path.isfile(path):
            hint = " (a save_only_model checkpoint holds only the model)" if name != TRAINER_STATE_NAME else ""
            raise CheckpointError(f"checkpoint {checkpoint_dir} has no {name}: cannot restore {path}{hint}")

    if model is not None:
        _load_model(model, checkpoint_dir)
    for obj, name in ((optimizer, OPTIMIZER_NAME), (scheduler, SCHEDULER_NAME), (scaler, SCALER_NAME)):
        if obj is not None:
            state_dict = _torch_load(os.path.join(checkpoint_dir, name))
            if obj is optimizer:
                distributed.load_optimizer_state(model, optimizer, state_dict)
            else:
                obj.load_state_dict(state_dict)
    if load_rng:
        restore_rng_state(checkpoint_dir)
    return TrainerState.load_from_json(os.path.join(checkpoint_dir, TRAINER_STATE_NAME))


def _load_model(model, checkpoint_dir: str) -> None:
    """Copy the saved weights into `model`'s own tensors (optimizers keep pointing at them).

    The model class's from_pretrained reads the files, so its key renames, transposes (GPT-2's Conv1D) and
    tied weights are undone exactly as on any load; a dtype shared by all the model's floating tensors (else
    float64, which holds every narrower format exactly) keeps the values bit-exact."""
    if _is_adapter_model(model):  # only the adapters were saved: copy them into the adapters' own tensors
        from safetensors.torch import load_file

        from ..adapters import set_peft_model_state_dict

        for name in model.peft_config:
            path = os.path.join(checkpoint_dir, "" if name == "default" else name, ADAPTER_WEIGHTS_NAME)
            set_peft_model_state_dict(model, load_file(path), name, source=path)
        return
    if not hasattr(model, "from_pretrained"):
        from safetensors.torch import load_file, load_model

        path = os.path.join(checkpoint_dir, MODEL_WEIGHTS_NAME)
        try:
            if distributed.is_sharded(model):
                distributed.load_model_state(model, load_file(path))
            else:  # load_model restores the tensors save_model wrote once for several names
                load_model(model, path, strict=True)
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"{path} does not match {type(model).__name__}: {e}") from e
        return
    dtypes = {t.dtype for t in model.state_dict().values() if t.is_floating_point()}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float64
    loaded, info = own_class(model).from_pretrained(checkpoint_dir, config=model.config, dtype=dtype,
                                                    output_loading_info=True)
    problems = {kind: sorted(map(str, info[kind])) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
                if info[kind]}
    if problems:
        raise CheckpointError(f"the weights in {checkpoint_dir} do not match {type(model).__name__}: {problems}")
    distributed.load_model_state(model, loaded.state_dict())


def _is_adapter_model(model) -> bool:
    """A PeftModel: its checkpoints hold adapter_model.safetensors (per adapter), not the whole model."""
    return model is not None and hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _torch_load(path: str):
    """A state dict saved with torch.save, read by the weights-only unpickler (no code can run)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(f"{path} was refused: loading it would run code, not just read tensors "
                                    f"({str(e).splitlines()[0] if str(e) else e})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch state dict: {e}") from e


# --- random number generators ---

def capture_rng_state() -> dict:
    """The global generators' states: python `random`, numpy's legacy global one, torch CPU and every CUDA device."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what capture_rng_state returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["cpu"])
    saved_cuda = state.get("cuda") or []
    if saved_cuda and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if len(saved_cuda) != count:
            logger.warning(f"the RNG states of {len(saved_cuda)} CUDA devices were saved and {count} are visible: "
                           f"restoring the first {min(count, len(saved_cuda))}; resumed sampling may differ")
        for index, cuda_state in enumerate(saved_cuda[:count]):
            torch.cuda.set_rng_state(cuda_state, index)


def restore_rng_state(checkpoint_dir) -> None:
    """Set the global generators to the states saved in checkpoint_dir/rng_state.safetensors."""
    set_rng_state(_read_rng_state(os.path.join(os.fspath(checkpoint_dir), RNG_STATE_NAME)))


def _write_rng_state(path: str, state: dict) -> None:
    """Generator words as int64 tensors, the scalars as JSON in the header (floats round-trip exactly)."""
    from safetensors.torch import save_file

    version, words, gauss_next = state["python"]
    kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    tensors = {"python": torch.tensor(words, dtype=torch.int64),
               "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
               "cpu": state["cpu"]}
    for index, cuda_state in enumerate(state.get("cuda", [])):
        tensors[f"cuda.{index}"] = cuda_state.cpu()
    scalars = {"python_version": version, "python_gauss_next": gauss_next, "numpy_kind": kind, "numpy_pos": pos,
               "numpy_has_gauss": has_gauss, "numpy_cached_gaussian": cached_gaussian,
               "cuda_devices": len(state.get("cuda", []))}
    save_file(tensors, path, metadata={"format": "pt", "rng": json.dumps(scalars)})


def _read_rng_state(path: str) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
            scalars = json.loads((f.metadata() or {})["rng"])
        state = {
            "python": (scalars["python_version"], tuple(tensors["python"].tolist()), scalars["python_gauss_next"]),
            "numpy": (scalars["numpy_kind"], tensors["numpy"].numpy().astype(np.uint32), scalars["numpy_pos"],
                      scalars["numpy_has_gauss"], scalars["numpy_cached_gaussian"]),
            "cpu": tensors["cpu"],
        }
        if scalars["cuda_devices"]:
            state["cuda"] = [tensors[f"cuda.{i}"] for i in range(scalars["cuda_devices"])]
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable RNG state file: {e}") from e
    except KeyError as e:
        raise CheckpointError(f"{path} lacks the RNG state entry {e}") from None
    return state


# --- finding and rotating ---

def _checkpoint_folders(output_dir) -> list[tuple[int, str]]:
    """(N, path) of every checkpoint-N folder in output_dir, unordered."""
    output_dir = os.fspath(output_dir)
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_RE.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return found


def _same_path(a, b) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def sorted_checkpoints(output_dir, best_model_checkpoint: str | None = None) -> list[str]:
    """checkpoint-N folders by N ascending; the best one, unless it is the latest, moves to second to last
    (as Transformers), so that keeping the last two never deletes it and the latest stays last for resuming."""
    paths = [path for _, path in sorted(_checkpoint_folders(output_dir))]
    if best_model_checkpoint is not None:
        best = next((p for p in paths if _same_path(p, best_model_checkpoint)), None)
        if best is not None and best != paths[-1]:
            paths.remove(best)
            paths.insert(len(paths) - 1, best)
    return paths


def rotate_checkpoints(output_dir, save_total_limit: int | None, best_model_checkpoint: str | None = None) -> list[str]:
    """Delete the oldest checkpoints beyond save_total_limit, never the latest nor the best (so with a limit
    of 1 and a best checkpoint that is not the latest, two remain, as in Transformers); return the deleted paths."""
    if save_total_limit is None or save_total_limit <= 0:
        return []
    paths = sorted_checkpoints(output_dir)
    if not paths:
        return []
    protected = {paths[-1]}
    if best_model_checkpoint is not None:
        protected |= {p for p in paths if _same_path(p, best_model_checkpoint)}
    excess = len(paths) - max(save_total_limit, len(protected))
    deleted = [p for p in paths if p not in protected][:max(excess, 0)]
    for path in deleted:
        logger.info(f"deleting older checkpoint {path} (save_total_limit={save_total_limit})")
        shutil.rmtree(path, ignore_errors=True)
    return deleted


def get_last_checkpoint(output_dir) -> str | None:
    """The highest-numbered checkpoint-N folder in output_dir, or None. Saves are atomic, so it is complete."""
    found = _checkpoint_folders(output_dir)
    return max(found)[1] if found else None
