"""Trainer state and callbacks against transformers': DefaultFlowCallback's log/evaluate/save/stop decisions over
20 steps for several strategy combinations, TrainerState's JSON (same keys, files readable both ways, atomic
write), early stopping, and the callback handler's bookkeeping."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from pretrained.errors import ConfigError, InputError
from pretrained.training import callbacks as ours

transformers = pytest.importorskip("transformers")
theirs = transformers.trainer_callback

FLAGS = ("should_training_stop", "should_epoch_stop", "should_save", "should_evaluate", "should_log")


def make_args(**overrides):
    args = dict(logging_strategy="steps", logging_steps=5, logging_first_step=False, eval_strategy="no",
                eval_steps=None, eval_delay=0, save_strategy="steps", save_steps=500, metric_for_best_model=None,
                greater_is_better=None, load_best_model_at_end=False, disable_tqdm=False)
    args.update(overrides)
    return SimpleNamespace(**args)


def run_flow(module, args, max_steps=20, steps_per_epoch=7):
    """Drive the module's DefaultFlowCallback through a handler like a trainer would; record the flags it sets."""
    state = module.TrainerState(max_steps=max_steps, num_train_epochs=3)
    state.compute_steps(args, max_steps)
    control = module.TrainerControl()
    handler = module.CallbackHandler([module.DefaultFlowCallback()], None, None, None, None)
    trace = []
    for step in range(1, max_steps + 1):
        control = handler.on_step_begin(args, state, control)
        state.global_step = step
        state.epoch = step / steps_per_epoch
        control = handler.on_step_end(args, state, control)
        trace.append(("step", step, tuple(getattr(control, f) for f in FLAGS)))
        if step % steps_per_epoch == 0 or step == max_steps:
            control = handler.on_epoch_end(args, state, control)
            trace.append(("epoch", step, tuple(getattr(control, f) for f in FLAGS)))
    return trace


@pytest.mark.parametrize("settings", [
    {},
    {"logging_first_step": True, "logging_steps": 3, "eval_strategy": "steps", "eval_steps": 4, "save_steps": 6},
    {"eval_strategy": "steps", "eval_steps": 0.25, "eval_delay": 8, "logging_steps": 0.1, "save_strategy": "no"},
    {"logging_strategy": "epoch", "eval_strategy": "epoch", "save_strategy": "epoch", "eval_delay": 1.5},
    {"logging_strategy": "no", "eval_strategy": "steps", "eval_steps": 7, "save_strategy": "steps", "save_steps": 9},
    {"eval_strategy": "steps", "eval_steps": None, "save_strategy": "best", "logging_steps": 6},
])
def test_default_flow_matches_transformers(settings):
    if settings.get("eval_strategy") == "steps" and settings.get("eval_steps") is None:
        settings = dict(settings, eval_steps=settings["logging_steps"])  # TrainingArguments' fallback
    args = make_args(**settings)
    mine, expected = run_flow(ours, args), run_flow(theirs, args)
    assert mine == expected
    assert any(flags[2] or flags[3] or flags[4] for _, _, flags in mine[:-1]) or settings.get("logging_strategy")
    assert mine[-2][2][0]  # training stops at max_steps


def test_default_flow_reads_transformers_training_arguments(tmp_path):
    args = transformers.TrainingArguments(output_dir=str(tmp_path), logging_steps=4, eval_strategy="steps",
                                          eval_steps=6, save_steps=10, logging_first_step=True, report_to=[])
    assert run_flow(ours, args) == run_flow(theirs, args)


# ---------------------------------------------------------------------------------------------- TrainerState
def filled(module):
    return module.TrainerState(epoch=1.5, global_step=30, max_steps=40, logging_steps=5, eval_steps=10, save_steps=10,
                               train_batch_size=8, num_train_epochs=2, num_input_tokens_seen=1234, total_flos=5e9,
                               log_history=[{"loss": 1.25, "step": 5}, {"eval_loss": 0.5, "step": 10}],
                               best_metric=0.5, best_global_step=10, best_model_checkpoint="out/checkpoint-10",
                               trial_params={"lr": 0.1},
                               stateful_callbacks=[module.TrainerControl(should_save=True),
                                                   module.EarlyStoppingCallback(3, 0.01)])


def test_trainer_state_json_matches_transformers(tmp_path):
    mine, expected = tmp_path / "ours.json", tmp_path / "theirs.json"
    ours.TrainerState().save_to_json(str(mine))
    theirs.TrainerState().save_to_json(str(expected))
    assert mine.read_text() == expected.read_text()
    filled(ours).save_to_json(str(mine))
    filled(theirs).save_to_json(str(expected))
    assert mine.read_text() == expected.read_text()
    assert sorted(os.listdir(tmp_path)) == ["ours.json", "theirs.json"]  # no temporary file left behind


def test_trainer_state_round_trip_both_ways(tmp_path):
    path = str(tmp_path / "trainer_state.json")
    filled(ours).save_to_json(path)
    loaded = ours.TrainerState.load_from_json(path)
    assert loaded == filled(ours)
    assert theirs.TrainerState.load_from_json(path) == filled(theirs)
    filled(theirs).save_to_json(path)
    assert ours.TrainerState.load_from_json(path) == filled(ours)
    restored = ours.EarlyStoppingCallback.from_state(loaded.stateful_callbacks["EarlyStoppingCallback"])
    assert (restored.early_stopping_patience, restored.early_stopping_threshold) == (3, 0.01)


def test_trainer_state_keeps_several_callbacks_of_one_class_and_refuses_others():
    state = ours.TrainerState(stateful_callbacks=[ours.EarlyStoppingCallback(1), ours.EarlyStoppingCallback(2)])
    assert [s["args"]["early_stopping_patience"] for s in state.stateful_callbacks["EarlyStoppingCallback"]] == [1, 2]
    with pytest.raises(InputError, match="ExportableState"):
        ours.TrainerState(stateful_callbacks=[ours.PrinterCallback()])


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "trainer_state.json"
    ours.TrainerState(global_step=1).save_to_json(str(path))
    broken = ours.TrainerState(global_step=2, log_history=[{"x": object()}])
    with pytest.raises(TypeError):
        broken.save_to_json(str(path))
    assert json.loads(path.read_text())["global_step"] == 1
    assert os.listdir(tmp_path) == ["trainer_state.json"]


def test_compute_steps_takes_fractions_of_max_steps():
    state = ours.TrainerState()
    state.compute_steps(make_args(logging_steps=0.1, eval_steps=None, save_steps=0.33), 50)
    assert (state.logging_steps, state.eval_steps, state.save_steps) == (5, 500, 17)


def test_control_resets():
    control = ours.TrainerControl(*([True] * 5))
    control._new_step()
    assert (control.should_save, control.should_evaluate, control.should_log) == (False, False, False)
    control._new_epoch()
    assert not control.should_epoch_stop and control.should_training_stop
    control._new_training()
    assert not control.should_training_stop
    assert ours.TrainerControl.from_state(ours.TrainerControl(should_log=True).state()).should_log


# ---------------------------------------------------------------------------------------------- early stopping
def evaluate_until_stop(module, args, values, patience, threshold):
    """Feed one metric per evaluation; the trainer's part (best_metric after on_evaluate) is done here.
    Returns the evaluation index at which training was told to stop, or None."""
    callback = module.EarlyStoppingCallback(patience, threshold)
    state, control = module.TrainerState(), module.TrainerControl()
    callback.on_train_begin(args, state, control)
    greater = args.greater_is_better
    for i, value in enumerate(values):
        callback.on_evaluate(args, state, control, metrics={f"eval_{args.metric_for_best_model}": value})
        if control.should_training_stop:
            return i
        if state.best_metric is None or (value > state.best_metric if greater else value < state.best_metric):
            state.best_metric = value
    return None


@pytest.mark.parametrize("metric,greater,values,patience,threshold,stop", [
    ("loss", False, [1.0, 0.9, 0.95, 0.92, 0.91, 0.5], 2, 0.0, 3),
    ("loss", False, [1.0, 0.9, 0.95, 0.85, 0.91, 0.92, 0.93], 3, 0.0, 6),
    ("loss", False, [1.0, 0.99, 0.98, 0.97], 2, 0.015, 2),  # gains below the threshold do not count
    ("accuracy", True, [0.5, 0.6, 0.55, 0.7, 0.7], 1, 0.0, 2),
    ("accuracy", True, [0.5, 0.6, 0.7, 0.8], 1, 0.0, None),
])
def test_early_stopping_matches_transformers(metric, greater, values, patience, threshold, stop):
    args = make_args(metric_for_best_model=metric, greater_is_better=greater, eval_strategy="steps",
                     load_best_model_at_end=True)
    assert evaluate_until_stop(ours, args, values, patience, threshold) == stop
    assert evaluate_until_stop(theirs, args, values, patience, threshold) == stop


def test_early_stopping_needs_a_metric_and_evaluation(caplog):
    callback, state, control = ours.EarlyStoppingCallback(), ours.TrainerState(), ours.TrainerControl()
    with pytest.raises(ConfigError, match="metric_for_best_model"):
        callback.on_train_begin(make_args(eval_strategy="steps"), state, control)
    with pytest.raises(ConfigError, match="eval_strategy"):
        callback.on_train_begin(make_args(metric_for_best_model="loss"), state, control)
    args = make_args(metric_for_best_model="loss", eval_strategy="steps")
    callback.on_evaluate(args, state, control, metrics={"eval_accuracy": 1.0})  # metric absent: warns, no count
    assert callback.early_stopping_patience_counter == 0 and "eval_loss" in caplog.text


# ---------------------------------------------------------------------------------------------- handler
class Recorder(ours.TrainerCallback):
    def __init__(self):
        self.calls = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.calls.append(("on_log", logs, kwargs["model"]))

    def on_step_end(self, args, state, control, **kwargs):
        return ours.TrainerControl(should_save=True)


def test_handler_add_pop_remove(caplog):
    printer = ours.PrinterCallback()
    handler = ours.CallbackHandler([ours.DefaultFlowCallback, printer], model="m")
    handler.add_callback(Recorder)
    assert [type(cb) for cb in handler.callbacks] == [ours.DefaultFlowCallback, ours.PrinterCallback, Recorder]
    handler.add_callback(ours.PrinterCallback())
    assert "second PrinterCallback" in caplog.text
    assert handler.pop_callback(ours.PrinterCallback) is printer
    assert handler.pop_callback(ours.EarlyStoppingCallback) is None
    second = handler.callbacks[-1]
    assert handler.pop_callback(second) is second
    handler.remove_callback(Recorder)
    handler.remove_callback(Recorder)  # a class not present: nothing to do
    with pytest.raises(InputError, match="not among the callbacks"):
        handler.remove_callback(printer)
    assert handler.callback_list == "DefaultFlowCallback"


def test_handler_passes_objects_merges_controls_and_clears_flags(caplog):
    recorder = Recorder()
    handler = ours.CallbackHandler([recorder], model="model")
    assert "No DefaultFlowCallback" in caplog.text
    args, state = make_args(), ours.TrainerState()
    control = ours.TrainerControl(should_log=True)
    control = handler.on_log(args, state, control, logs={"loss": 1.0})
    assert recorder.calls == [("on_log", {"loss": 1.0}, "model")] and not control.should_log
    control = handler.on_step_end(args, state, control)
    assert control.should_save  # the callback's returned control replaced the old one
    control.should_evaluate = True
    control = handler.on_step_begin(args, state, control)
    assert not (control.should_save or control.should_evaluate or control.should_log)
    for event in ("on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
                  "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end", "on_save", "on_prediction_step"):
        assert getattr(handler, event)(args, state, control) is control
    assert handler.on_evaluate(args, state, control, metrics={}) is control
    assert handler.on_predict(args, state, control, metrics={}) is control


def test_printer_prints_like_transformers(capsys):
    logs = {"loss": 0.123456, "learning_rate": 5e-05, "epoch": 1.0, "step": 3, "total_flos": 1e12}
    ours.PrinterCallback().on_log(make_args(), ours.TrainerState(), ours.TrainerControl(), logs=dict(logs))
    mine = capsys.readouterr().out
    theirs.PrinterCallback().on_log(make_args(), theirs.TrainerState(), theirs.TrainerControl(), logs=dict(logs))
    assert mine == capsys.readouterr().out == "{'loss': '0.1235', 'learning_rate': '5e-05', 'epoch': '1', 'step': 3}\n"


@pytest.mark.parametrize("disable", [False, True])
def test_progress_bars(disable, capsys):
    args, state, control = make_args(disable_tqdm=disable), ours.TrainerState(max_steps=4), ours.TrainerControl()
    callback = ours.ProgressCallback()
    callback.on_train_begin(args, state, control)
    assert (callback.training_bar is None) == disable
    for step in (1, 2):
        state.global_step = step
        callback.on_step_end(args, state, control)
        callback.on_prediction_step(args, state, control, eval_dataloader=[0, 1])
    assert (callback.prediction_bar is None) == disable
    callback.on_evaluate(args, state, control, metrics={})
    callback.on_log(args, state, control, logs={"loss": 0.5, "note": "x" * 200})
    if not disable:
        assert callback.training_bar.n == 2
    callback.on_train_end(args, state, control)
    assert callback.training_bar is None and callback.prediction_bar is None
    out = capsys.readouterr().out
    assert ("String too long to display" in out) != disable
