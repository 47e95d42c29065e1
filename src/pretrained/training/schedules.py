"""Learning-rate schedules: small pure functions of the step, wrapped in torch's LambdaLR.

Each factor multiplies the optimizer's initial learning rate. Every schedule except "constant" ramps
linearly from 0 to 1 over num_warmup_steps first. The numbers equal Transformers' schedules of the same
names step for step, so a run resumed under either library continues the same curve.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..errors import InputError
from .arguments import SchedulerType


def _warmup(step: int, num_warmup_steps: int) -> float:
    return step / max(1, num_warmup_steps)


def constant_factor(step: int) -> float:
    return 1.0


def constant_with_warmup_factor(step: int, *, num_warmup_steps: int) -> float:
    return _warmup(step, num_warmup_steps) if step < num_warmup_steps else 1.0


def linear_factor(step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    """Warmup, then straight down to 0 at num_training_steps."""
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    return max(0.0, (num_training_steps - step) / max(1, num_training_steps - num_warmup_steps))


def _progress(step: int, num_warmup_steps: int, num_training_steps: int) -> float:
    """Fraction of the post-warmup steps done."""
    return (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)


def cosine_factor(step: int, *, num_warmup_steps: int, num_training_steps: int, num_cycles: float = 0.5,
                  min_lr_rate: float = 0.0) -> float:
    """Warmup, then a cosine; the default half cycle goes from 1 down to min_lr_rate."""
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    progress = _progress(step, num_warmup_steps, num_training_steps)
    factor = 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress))
    return max(0.0, factor * (1 - min_lr_rate) + min_lr_rate)


def cosine_with_hard_restarts_factor(step: int, *, num_warmup_steps: int, num_training_steps: int,
                                     num_cycles: int = 1) -> float:
    """Warmup, then num_cycles cosine descents from 1 to 0, each restarting at 1; 0 after the run."""
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    progress = _progress(step, num_warmup_steps, num_training_steps)
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * progress) % 1.0))))


def polynomial_decay_factor(step: int, *, num_warmup_steps: int, num_training_steps: int, lr_end: float,
                            power: float, lr_init: float) -> float:
    """Warmup, then (lr_init - lr_end) * remaining**power + lr_end, held at lr_end after the run."""
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    if step > num_training_steps:
        return lr_end / lr_init  # LambdaLR multiplies by lr_init
    remaining = 1 - (step - num_warmup_steps) / (num_training_steps - num_warmup_steps)
    return ((lr_init - lr_end) * remaining**power + lr_end) / lr_init


def inverse_sqrt_factor(step: int, *, num_warmup_steps: int, timescale: int) -> float:
    """Warmup, then 1 / sqrt((step - num_warmup_steps + timescale) / timescale)."""
    if step < num_warmup_steps:
        return _warmup(step, num_warmup_steps)
    return 1.0 / math.sqrt((step + timescale - num_warmup_steps) / timescale)


# warmup-stable-decay shapes, of the fraction p of their phase done
_WSD_WARMUP = {"linear": lambda p: p, "cosine": lambda p: 0.5 * (1.0 - math.cos(math.pi * p)),
               "1-sqrt": lambda p: 1.0 - math.sqrt(1.0 - p)}
_WSD_DECAY = {"linear": lambda p, cycles: 1.0 - p,
              "cosine": lambda p, cycles: 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * p)),
              "1-sqrt": lambda p, cycles: 1.0 - math.sqrt(p)}


def warmup_stable_decay_factor(step: int, *, num_warmup_steps: int, num_stable_steps: int, num_decay_steps: int,
                               warmup_type: str, decay_type: str, min_lr_ratio: float, num_cycles: float) -> float:
    """Warmup from min_lr_ratio to 1, hold 1 for num_stable_steps, decay back to min_lr_ratio and stay there."""
    if step < num_warmup_steps:
        factor = _WSD_WARMUP[warmup_type](step / max(1, num_warmup_steps))
    elif step < num_warmup_steps + num_stable_steps:
        return 1.0
    elif step < num_warmup_steps + num_stable_steps + num_decay_steps:
        done = (step - num_warmup_steps - num_stable_steps) / max(1, num_decay_steps)
        factor = _WSD_DECAY[decay_type](done, num_cycles)
    else:
        return min_lr_ratio
    return max(0.0, factor * (1.0 - min_lr_ratio) + min_lr_ratio)


def get_constant_schedule(optimizer: Optimizer, last_epoch: int = -1) -> LambdaLR:
    return LambdaLR(optimizer, constant_factor, last_epoch=last_epoch)


def get_constant_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, last_epoch: int = -1) -> LambdaLR:
    return LambdaLR(optimizer, partial(constant_with_warmup_factor, num_warmup_steps=num_warmup_steps), last_epoch)


def get_linear_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                    last_epoch: int = -1) -> LambdaLR:
    factor = partial(linear_factor, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)
    return LambdaLR(optimizer, factor, last_epoch)


def get_cosine_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                    num_cycles: float = 0.5, last_epoch: int = -1) -> LambdaLR:
    factor = partial(cosine_factor, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                     num_cycles=num_cycles)
    return LambdaLR(optimizer, factor, last_epoch)


def get_cosine_with_min_lr_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                                num_cycles: float = 0.5, last_epoch: int = -1,
                                                min_lr: float | None = None,
                                                min_lr_rate: float | None = None) -> LambdaLR:
    """The cosine schedule ending at min_lr, or at min_lr_rate times the optimizer's lr (give one)."""
    if (min_lr is None) == (min_lr_rate is None):
        raise InputError("cosine_with_min_lr schedule: give exactly one of min_lr and min_lr_rate "
                         f"(got min_lr={min_lr}, min_lr_rate={min_lr_rate})")
    if min_lr is not None:
        min_lr_rate = min_lr / optimizer.defaults["lr"]
    factor = partial(cosine_factor, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                     num_cycles=num_cycles, min_lr_rate=min_lr_rate)
    return LambdaLR(optimizer, factor, last_epoch)


def get_cosine_with_hard_restarts_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int,
                                                       num_training_steps: int, num_cycles: int = 1,
                                                       last_epoch: int = -1) -> LambdaLR:
    factor = partial(cosine_with_hard_restarts_factor, num_warmup_steps=num_warmup_steps,
                     num_training_steps=num_training_steps, num_cycles=num_cycles)
    return LambdaLR(optimizer, factor, last_epoch)


def get_polynomial_decay_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                                              lr_end: float = 1e-7, power: float = 1.0,
                                              last_epoch: int = -1) -> LambdaLR:
    lr_init = optimizer.defaults["lr"]
    if not lr_init > lr_end:
        raise InputError(f"polynomial schedule: lr_end ({lr_end}) must be below the optimizer's lr ({lr_init})")
    factor = partial(polynomial_decay_factor, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                     lr_end=lr_end, power=power, lr_init=lr_init)
    return LambdaLR(optimizer, factor, last_epoch)


def get_inverse_sqrt_schedule(optimizer: Optimizer, num_warmup_steps: int, timescale: int | None = None,
                              last_epoch: int = -1) -> LambdaLR:
    """timescale defaults to num_warmup_steps (10,000 without warmup)."""
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    factor = partial(inverse_sqrt_factor, num_warmup_steps=num_warmup_steps, timescale=timescale)
    return LambdaLR(optimizer, factor, last_epoch=last_epoch)


def get_wsd_schedule(optimizer: Optimizer, num_warmup_steps: int, num_decay_steps: int,
                     num_training_steps: int | None = None, num_stable_steps: int | None = None,
                     warmup_type: str = "linear", decay_type: str = "cosine", min_lr_ratio: float = 0,
                     num_cycles: float = 0.5, last_epoch: int = -1) -> LambdaLR:
    """Warmup, stable, decay. num_stable_steps defaults to what num_training_steps leaves for it."""
    if num_stable_steps is None:
        if num_training_steps is None:
            raise InputError("warmup_stable_decay schedule needs num_training_steps or num_stable_steps")
        num_stable_steps = num_training_steps - num_warmup_steps - num_decay_steps
    for name, kind in (("warmup_type", warmup_type), ("decay_type", decay_type)):
        if kind not in _WSD_WARMUP:
            raise InputError(f"warmup_stable_decay schedule: {name}={kind!r}, expected one of {sorted(_WSD_WARMUP)}")
    factor = partial(warmup_stable_decay_factor, num_warmup_steps=num_warmup_steps, num_stable_steps=num_stable_steps,
                     num_decay_steps=num_decay_steps, warmup_type=warmup_type, decay_type=decay_type,
                     min_lr_ratio=min_lr_ratio, num_cycles=num_cycles)
    return LambdaLR(optimizer, factor, last_epoch)


class _Schedule(NamedTuple):
    build: Callable[..., LambdaLR]
    needs: tuple[str, ...] = ()  # step counts it cannot do without
    optional: tuple[str, ...] = ()  # step counts passed on when given
    kwargs: tuple[str, ...] = ()  # the scheduler_specific_kwargs it accepts
    required: tuple[str, ...] = ()  # ... and those it cannot do without


_WARMUP, _RUN = ("num_warmup_steps",), ("num_warmup_steps", "num_training_steps")
_SCHEDULES = {
    SchedulerType.CONSTANT: _Schedule(get_constant_schedule),
    SchedulerType.CONSTANT_WITH_WARMUP: _Schedule(get_constant_schedule_with_warmup, _WARMUP),
    SchedulerType.LINEAR: _Schedule(get_linear_schedule_with_warmup, _RUN),
    SchedulerType.COSINE: _Schedule(get_cosine_schedule_with_warmup, _RUN, kwargs=("num_cycles",)),
    SchedulerType.COSINE_WITH_RESTARTS: _Schedule(get_cosine_with_hard_restarts_schedule_with_warmup, _RUN,
                                                  kwargs=("num_cycles",)),
    SchedulerType.POLYNOMIAL: _Schedule(get_polynomial_decay_schedule_with_warmup, _RUN, kwargs=("lr_end", "power")),
    SchedulerType.INVERSE_SQRT: _Schedule(get_inverse_sqrt_schedule, _WARMUP, kwargs=("timescale",)),
    SchedulerType.COSINE_WITH_MIN_LR: _Schedule(get_cosine_with_min_lr_schedule_with_warmup, _RUN,
                                                kwargs=("num_cycles", "min_lr", "min_lr_rate")),
    SchedulerType.WARMUP_STABLE_DECAY: _Schedule(get_wsd_schedule, _WARMUP, ("num_training_steps",),
                                                 kwargs=("num_decay_steps", "num_stable_steps", "warmup_type",
                                                         "decay_type", "min_lr_ratio", "num_cycles"),
                                                 required=("num_decay_steps",)),
}


def get_scheduler(name: str | SchedulerType, optimizer: Optimizer, num_warmup_steps: int | None = None,
                  num_training_steps: int | None = None, scheduler_specific_kwargs: dict | None = None) -> LambdaLR:
    """The schedule called `name` (a TrainingArguments.lr_scheduler_type) over optimizer."""
    name = SchedulerType.parse(name, "lr_scheduler_type")
    schedule = _SCHEDULES[name]
    kwargs = dict(scheduler_specific_kwargs or {})
    unknown = sorted(set(kwargs) - set(schedule.kwargs))
    if unknown:
        raise InputError(f"get_scheduler({name.value!r}): unknown scheduler_specific_kwargs {unknown}; "
                         f"it accepts {list(schedule.kwargs) or 'none'}")
    given = {"num_warmup_steps": num_warmup_steps, "num_training_steps": num_training_steps}
    for arg in schedule.needs:
        if given[arg] is None:
            raise InputError(f"get_scheduler({name.value!r}) needs {arg}")
    missing = [arg for arg in schedule.required if arg not in kwargs]
    if missing:
        raise InputError(f"get_scheduler({name.value!r}) needs scheduler_specific_kwargs {missing}")
    kwargs.update({arg: given[arg] for arg in schedule.needs + schedule.optional if given[arg] is not None})
    return schedule.build(optimizer, **kwargs)
