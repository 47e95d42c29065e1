"""Fine-tuning: TrainingArguments, optimizers, learning-rate schedules, collators and callbacks.

Public names resolve lazily, as in `pretrained`: importing this package does not import torch."""

from importlib import import_module

# public name -> submodule of pretrained.training that defines it
_EXPORTS = {
    "TrainingArguments": "arguments",
    "Seq2SeqTrainingArguments": "arguments",
    "IntervalStrategy": "arguments",
    "SaveStrategy": "arguments",
    "SchedulerType": "arguments",
    "OptimizerNames": "arguments",
    "get_scheduler": "schedules",
    "get_constant_schedule": "schedules",
    "get_constant_schedule_with_warmup": "schedules",
    "get_linear_schedule_with_warmup": "schedules",
    "get_cosine_schedule_with_warmup": "schedules",
    "get_cosine_with_hard_restarts_schedule_with_warmup": "schedules",
    "get_polynomial_decay_schedule_with_warmup": "schedules",
    "get_inverse_sqrt_schedule": "schedules",
    "get_cosine_with_min_lr_schedule_with_warmup": "schedules",
    "get_wsd_schedule": "schedules",
    "create_optimizer": "optim",
    "get_decay_parameter_names": "optim",
    "Adafactor": "optim",
    "default_data_collator": "collators",
    "DataCollatorWithPadding": "collators",
    "DataCollatorForTokenClassification": "collators",
    "DataCollatorForSeq2Seq": "collators",
    "DataCollatorForLanguageModeling": "collators",
    "Trainer": "trainer",
    "Seq2SeqTrainer": "trainer",
    "EvalPrediction": "trainer",
    "PredictionOutput": "trainer",
    "TrainOutput": "trainer",
    "set_seed": "trainer",
    "BestRun": "search",
    "default_hp_space": "search",
    "TensorBoardCallback": "reporters",
    "TrainerState": "callbacks",
    "TrainerControl": "callbacks",
    "TrainerCallback": "callbacks",
    "DefaultFlowCallback": "callbacks",
    "PrinterCallback": "callbacks",
    "ProgressCallback": "callbacks",
    "EarlyStoppingCallback": "callbacks",
    "CallbackHandler": "callbacks",
    "ExportableState": "callbacks",
    "PREFIX_CHECKPOINT_DIR": "checkpoints",
    "save_checkpoint": "checkpoints",
    "load_checkpoint": "checkpoints",
    "restore_rng_state": "checkpoints",
    "capture_rng_state": "checkpoints",
    "set_rng_state": "checkpoints",
    "sorted_checkpoints": "checkpoints",
    "rotate_checkpoints": "checkpoints",
    "get_last_checkpoint": "checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained.training' has no attribute {name!r}")
    value = getattr(import_module(f"pretrained.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
