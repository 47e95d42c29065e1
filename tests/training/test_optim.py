"""create_optimizer and its weight-decay groups against transformers' Trainer on the same checkpoints."""

from __future__ import annotations

import pytest
import torch

import pretrained
from pretrained.errors import UnsupportedOptionError
from pretrained.training import TrainingArguments, create_optimizer, get_decay_parameter_names

transformers = pytest.importorskip("transformers")

TINY = {
    "bert": ("BertConfig", "BertForMaskedLM", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                   intermediate_size=37, vocab_size=99, max_position_embeddings=64)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(vocab_size=99, hidden_size=32, intermediate_size=37,
                                                      num_hidden_layers=2, num_attention_heads=4,
                                                      num_key_value_heads=2, max_position_embeddings=64)),
}


@pytest.fixture(scope="module", params=sorted(TINY))
def models(request, tmp_path_factory):
    """(ours, theirs, folder): a tiny model built and saved by pretrained, loaded by both libraries."""
    config_name, model_name, kwargs = TINY[request.param]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    getattr(pretrained, model_name)(getattr(pretrained, config_name)(**kwargs)).save_pretrained(folder)
    ours = getattr(pretrained, model_name).from_pretrained(folder)
    theirs = getattr(transformers, model_name).from_pretrained(folder)
    return ours, theirs, str(folder)


def their_trainer(model, folder, **kwargs):
    args = transformers.TrainingArguments(output_dir=folder, report_to="none", use_cpu=True, **kwargs)
    return transformers.Trainer(model=model, args=args)


def test_decay_parameter_names_equal_transformers(models):
    ours, theirs, folder = models
    expected = set(their_trainer(theirs, folder).get_decay_parameter_names(theirs))
    assert expected and set(get_decay_parameter_names(ours)) == expected
    assert not any("bias" in n or "norm" in n.lower() for n in expected)


OPTIMIZERS = {
    "adamw_torch_fused": ("lr", "weight_decay", "betas", "eps", "fused"),
    "adamw_torch": ("lr", "weight_decay", "betas", "eps", "fused"),
    "sgd": ("lr", "weight_decay", "momentum", "nesterov"),
    "adafactor": ("lr", "weight_decay", "eps", "clip_threshold", "decay_rate", "beta1", "scale_parameter",
                  "relative_step", "warmup_init"),
}


@pytest.mark.parametrize("optim", sorted(OPTIMIZERS))
def test_optimizer_groups_equal_transformers(models, tmp_path, optim):
    ours, theirs, folder = models
    settings = dict(weight_decay=0.01, learning_rate=3e-4, optim=optim)
    their_optimizer = their_trainer(theirs, folder, **settings).create_optimizer()
    optimizer = create_optimizer(ours, TrainingArguments(output_dir=str(tmp_path), **settings))
    assert type(optimizer).__name__ == type(their_optimizer).__name__
    names = {id(p): n for n, p in ours.named_parameters()}
    their_names = {id(p): n for n, p in theirs.named_parameters()}
    for group, their_group in zip(optimizer.param_groups, their_optimizer.param_groups, strict=True):
        assert sorted(names[id(p)] for p in group["params"]) == sorted(
            their_names[id(p)] for p in their_group["params"])
        for key in OPTIMIZERS[optim]:
            assert group[key] == their_group[key], key


def test_frozen_parameters_are_left_out(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    optimizer = create_optimizer(model, TrainingArguments(output_dir=str(tmp_path), optim="adamw_torch"))
    decay, no_decay = optimizer.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([2, 4])]
    assert len(no_decay["params"]) == 3 and not optimizer.defaults["fused"]


def test_norm_modules_do_not_decay_whatever_their_name():
    model = torch.nn.ModuleDict({"scale": torch.nn.RMSNorm(4), "ln": torch.nn.LayerNorm(4),
                                 "proj": torch.nn.Linear(4, 4)})
    assert get_decay_parameter_names(model) == ["proj.weight"]


def test_sgd_takes_its_optim_args(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), optim="sgd", optim_args="momentum=0.9, nesterov=true",
                             learning_rate=0.1)
    optimizer = create_optimizer(torch.nn.Linear(2, 2), args)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] is True


@pytest.mark.parametrize("optim, optim_args", [("sgd", "weight_decay=0.1"), ("adamw_torch", "amsgrad=true"),
                                               ("sgd", "momentum")])
def test_unknown_optim_args_are_refused(tmp_path, optim, optim_args):
    args = TrainingArguments(output_dir=str(tmp_path), optim=optim, optim_args=optim_args)
    with pytest.raises(UnsupportedOptionError, match=f"optim_args.*{optim}"):
        create_optimizer(torch.nn.Linear(2, 2), args)


ADAFACTOR_SETTINGS = [
    dict(lr=1e-2, scale_parameter=False, relative_step=False),  # the Trainer's
    dict(),  # relative step, scaled by the parameter's RMS
    dict(lr=1e-2, relative_step=False, beta1=0.9, weight_decay=0.1, clip_threshold=0.5, decay_rate=-0.5),
    dict(warmup_init=True, eps=(1e-20, 1e-2)),
]


@pytest.mark.parametrize("settings", ADAFACTOR_SETTINGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adafactor_steps_equal_transformers(settings, dtype):
    """Matrices (factored second moment), a stack of matrices and a vector, over a few steps."""
    from pretrained.training.optim import Adafactor

    g = torch.Generator().manual_seed(0)
    shapes = [(6, 5), (2, 4, 3), (7,)]
    start = [torch.randn(s, generator=g).to(dtype) for s in shapes]
    grads = [[torch.randn(s, generator=g).to(dtype) for s in shapes] for _ in range(4)]

    def run(cls):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        optimizer = cls(params, **settings)
        for step_grads in grads:
            for p, grad in zip(params, step_grads):
                p.grad = grad.clone()
            optimizer.step()
        return params, optimizer

    ours, optimizer = run(Adafactor)
    theirs, their_optimizer = run(transformers.Adafactor)
    for p, q in zip(ours, theirs):
        assert p.dtype == dtype
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6 if dtype == torch.float32 else 1e-2)
    for p, q in zip(ours, theirs):
        state, their_state = optimizer.state[p], their_optimizer.state[q]
        assert set(state) == set(their_state)
        for key in state:
            torch.testing.assert_close(torch.as_tensor(state[key]), torch.as_tensor(their_state[key]),
                                       rtol=1e-5, atol=1e-7)


def test_adafactor_refuses_contradictory_settings():
    from pretrained.errors import InputError
    from pretrained.training.optim import Adafactor

    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(InputError, match="relative_step"):
        Adafactor(params, lr=1e-3)
    with pytest.raises(InputError, match="lr"):
        Adafactor(params, relative_step=False)
    with pytest.raises(InputError, match="warmup_init"):
        Adafactor(params, lr=1e-3, relative_step=False, warmup_init=True)


def test_boolean_optim_args_must_be_booleans(tmp_path):
    from pretrained.errors import InputError

    args = TrainingArguments(output_dir=str(tmp_path), optim="sgd", optim_args="momentum=0.9,nesterov=maybe")
    with pytest.raises(InputError, match="nesterov"):
        create_optimizer(torch.nn.Linear(2, 2), args)
