"""Learning-rate schedules against transformers' get_scheduler: the same rate at every step, bit for bit."""

from __future__ import annotations

import pytest
import torch

import pretrained
from pretrained.errors import ConfigError, InputError
from pretrained.training import schedules

transformers = pytest.importorskip("transformers")

LR, WARMUP, STEPS = 1e-3, 5, 30
CASES = [
    ("linear", {}),
    ("cosine", {}),
    ("cosine", {"num_cycles": 2.0}),
    ("cosine_with_restarts", {}),
    ("cosine_with_restarts", {"num_cycles": 3}),
    ("polynomial", {}),
    ("polynomial", {"power": 2.0, "lr_end": 1e-5}),
    ("constant", {}),
    ("constant_with_warmup", {}),
    ("inverse_sqrt", {}),
    ("inverse_sqrt", {"timescale": 20}),
    ("cosine_with_min_lr", {"min_lr": 1e-4}),
    ("cosine_with_min_lr", {"min_lr_rate": 0.2, "num_cycles": 1.0}),
    ("warmup_stable_decay", {"num_decay_steps": 10}),
    ("warmup_stable_decay", {"num_decay_steps": 8, "num_stable_steps": 6, "warmup_type": "cosine",
                             "decay_type": "1-sqrt", "min_lr_ratio": 0.1}),
    ("warmup_stable_decay", {"num_decay_steps": 12, "warmup_type": "1-sqrt", "decay_type": "linear"}),
]


def rates(get_scheduler, name, warmup, training_steps, kwargs):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=LR)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=training_steps,
                              scheduler_specific_kwargs=dict(kwargs))
    out = []
    for _ in range(STEPS):
        out.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.filterwarnings("ignore:Both num_training_steps and num_stable_steps")  # transformers' note
@pytest.mark.parametrize("name, kwargs", CASES)
@pytest.mark.parametrize("warmup, training_steps", [(WARMUP, STEPS), (WARMUP, 20), (0, STEPS)])
def test_rates_equal_transformers(name, kwargs, warmup, training_steps):
    """20 training steps run past the end of the schedule; 0 warmup starts at the full rate."""
    ours = rates(pretrained.get_scheduler, name, warmup, training_steps, kwargs)
    theirs = rates(transformers.get_scheduler, name, warmup, training_steps, kwargs)
    assert ours == theirs


@pytest.mark.parametrize("function, args", [
    ("get_constant_schedule", ()),
    ("get_constant_schedule_with_warmup", (WARMUP,)),
    ("get_linear_schedule_with_warmup", (WARMUP, STEPS)),
    ("get_cosine_schedule_with_warmup", (WARMUP, STEPS, 0.75)),
    ("get_cosine_with_hard_restarts_schedule_with_warmup", (WARMUP, STEPS, 2)),
    ("get_polynomial_decay_schedule_with_warmup", (WARMUP, STEPS, 1e-6, 3.0)),
    ("get_inverse_sqrt_schedule", (WARMUP, 7)),
    ("get_cosine_with_min_lr_schedule_with_warmup", (WARMUP, STEPS, 0.5, -1, None, 0.3)),
    ("get_wsd_schedule", (WARMUP, 10, STEPS, None, "cosine", "cosine", 0.05, 1.0)),
])
def test_named_functions_equal_transformers(function, args):
    def run(module):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=LR)
        scheduler = getattr(module, function)(optimizer, *args)
        out = []
        for _ in range(STEPS):
            optimizer.step()
            scheduler.step()
            out.append(scheduler.get_last_lr()[0])
        return out

    assert run(pretrained) == run(transformers)


def test_state_dict_resumes_the_curve():
    def make():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=LR)
        return optimizer, pretrained.get_scheduler("cosine", optimizer, WARMUP, STEPS)

    optimizer, scheduler = make()
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    resumed_optimizer, resumed = make()
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    optimizer.step()
    scheduler.step()
    resumed_optimizer.step()
    resumed.step()
    assert resumed.get_last_lr() == scheduler.get_last_lr()


def test_errors_name_the_argument():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=LR)
    with pytest.raises(ConfigError, match="lr_scheduler_type.*'linear'"):
        pretrained.get_scheduler("reduce_lr_on_plateau", optimizer, WARMUP, STEPS)
    with pytest.raises(InputError, match="num_cycle.*num_cycles"):
        pretrained.get_scheduler("cosine", optimizer, WARMUP, STEPS, {"num_cycle": 2})
    with pytest.raises(InputError, match="power"):
        pretrained.get_scheduler("constant", optimizer, scheduler_specific_kwargs={"power": 2})
    with pytest.raises(InputError, match="num_training_steps"):
        pretrained.get_scheduler("linear", optimizer, num_warmup_steps=WARMUP)
    with pytest.raises(InputError, match="num_warmup_steps"):
        pretrained.get_scheduler("inverse_sqrt", optimizer)
    with pytest.raises(InputError, match="num_decay_steps"):
        pretrained.get_scheduler("warmup_stable_decay", optimizer, WARMUP, STEPS)
    with pytest.raises(InputError, match="decay_type"):
        pretrained.get_scheduler("warmup_stable_decay", optimizer, WARMUP, STEPS,
                                 {"num_decay_steps": 5, "decay_type": "exp"})
    with pytest.raises(InputError, match="min_lr"):
        pretrained.get_scheduler("cosine_with_min_lr", optimizer, WARMUP, STEPS)
    with pytest.raises(InputError, match="lr_end"):
        pretrained.get_scheduler("polynomial", optimizer, WARMUP, STEPS, {"lr_end": LR})


def test_factors_are_plain_functions():
    assert schedules.linear_factor(0, num_warmup_steps=4, num_training_steps=10) == 0.0
    assert schedules.linear_factor(4, num_warmup_steps=4, num_training_steps=10) == 1.0
    assert schedules.linear_factor(12, num_warmup_steps=4, num_training_steps=10) == 0.0
    assert schedules.cosine_factor(7, num_warmup_steps=4, num_training_steps=10) == pytest.approx(0.5)
