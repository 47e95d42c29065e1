"""Trainer: the same losses, learning rates and weights as transformers' Trainer, step for step, on the same
tiny model, data, seed and arguments; accumulation equal to a bigger batch; exact resume; errors before training."""

from __future__ import annotations

import json
import os

import pytest
import torch

import pretrained
from checkpoints import hf_checkpoint
from pretrained.errors import ConfigError, InputError
from pretrained.training import TrainingArguments
from pretrained.training.trainer import Trainer

NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99,
            max_position_embeddings=64, num_labels=3, **NO_DROPOUT)
LLAMA = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
COMMON = dict(per_device_train_batch_size=4, learning_rate=5e-3, num_train_epochs=2, logging_steps=1, seed=7,
              optim="adamw_torch", warmup_steps=2, weight_decay=0.01, report_to="none", save_strategy="no",
              disable_tqdm=True)


def classification_data(n=18, length=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 99, (n, length), generator=gen)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(length, dtype=torch.long),
             "labels": int(ids[i, 0] % 3)} for i in range(n)]


def lm_data(n=18, length=10, seed=1):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 99, (n, length), generator=gen)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(length, dtype=torch.long), "labels": ids[i]}
            for i in range(n)]


def run_both(tmp_path, folder, auto, data, **overrides):
    import transformers

    transformers.logging.set_verbosity_error()
    kwargs = dict(COMMON, **overrides)
    theirs = getattr(transformers, auto).from_pretrained(folder)
    hf = transformers.Trainer(model=theirs, args=transformers.TrainingArguments(
        output_dir=str(tmp_path / "theirs"), use_cpu=True, **kwargs), train_dataset=data)
    hf.train()
    ours = getattr(pretrained, auto).from_pretrained(folder)
    trainer = Trainer(model=ours, args=TrainingArguments(output_dir=str(tmp_path / "ours"), **kwargs),
                      train_dataset=data)
    trainer.train()
    return hf, trainer


def losses(history):
    return [(e["step"], e["loss"], e["learning_rate"]) for e in history if "loss" in e]


@pytest.mark.parametrize("kind", ["classification", "causal-lm"])
def test_losses_and_weights_equal_transformers(tmp_path, kind):
    if kind == "classification":
        folder = hf_checkpoint(tmp_path / "m", "BertConfig", "BertForSequenceClassification", **BERT)
        hf, ours = run_both(tmp_path, folder, "AutoModelForSequenceClassification", classification_data())
    else:
        folder = hf_checkpoint(tmp_path / "m", "LlamaConfig", "LlamaForCausalLM", **LLAMA)
        hf, ours = run_both(tmp_path, folder, "AutoModelForCausalLM", lm_data(), lr_scheduler_type="cosine")
    a, b = losses(ours.state.log_history), losses(hf.state.log_history)
    assert [s for s, _, _ in a] == [s for s, _, _ in b] and len(a) == 10
    for (_, la, lra), (_, lb, lrb) in zip(a, b):
        assert lra == pytest.approx(lrb, abs=1e-12)
        assert la == pytest.approx(lb, abs=1e-6)
    theirs = dict(hf.model.named_parameters())
    for name, p in ours.model.named_parameters():
        torch.testing.assert_close(p.detach(), theirs[name].detach(), atol=1e-6, rtol=1e-5, msg=name)


def test_accumulation_equals_a_bigger_batch(tmp_path):
    folder = hf_checkpoint(tmp_path / "m", "LlamaConfig", "LlamaForCausalLM", **LLAMA)
    data = lm_data()
    for i in range(0, len(data), 3):  # unequal label counts per row: a plain mean of means would differ
        data[i] = dict(data[i], labels=data[i]["labels"].masked_fill(torch.arange(10) < 6, -100))
    results = []
    for batch, accumulation in ((4, 1), (2, 2), (1, 4)):
        model = pretrained.AutoModelForCausalLM.from_pretrained(folder)
        args = TrainingArguments(output_dir=str(tmp_path / f"b{batch}"), **dict(
            COMMON, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, data_seed=3))
        trainer = Trainer(model=model, args=args, train_dataset=data)
        trainer._batches = lambda dataset, size, epoch, drop, t=trainer: [  # the same rows per optimizer step
            rows[j:j + size] for rows in Trainer._batches(t, dataset, 4, epoch, drop) for j in range(0, len(rows), size)]
        trainer.train()
        results.append((losses(trainer.state.log_history), [p.detach().clone() for p in model.parameters()]))
    for other in results[1:]:
        for (s1, l1, _), (s2, l2, _) in zip(results[0][0], other[0]):
            assert s1 == s2 and l1 == pytest.approx(l2, abs=1e-6)
        for p, q in zip(results[0][1], other[1]):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_resume_mid_epoch_is_exact(tmp_path):
    folder = hf_checkpoint(tmp_path / "m", "BertConfig", "BertForSequenceClassification",
                           **dict(BERT, hidden_dropout_prob=0.1))  # dropout on: the random state must resume too
    data = classification_data(n=22)
    kwargs = dict(COMMON, gradient_accumulation_steps=2, per_device_train_batch_size=2, num_train_epochs=3)
    full = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder),
                   args=TrainingArguments(output_dir=str(tmp_path / "full"), **kwargs), train_dataset=data)
    full.train()
    class Interrupt(pretrained.training.TrainerCallback):  # the run dies after step 5, its last checkpoint at 4
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 5

    first = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder),
                    args=TrainingArguments(output_dir=str(tmp_path / "cut"), **dict(kwargs, save_strategy="steps",
                                                                                      save_steps=4)),
                    train_dataset=data, callbacks=[Interrupt()])
    first.train()
    assert first.state.global_step == 5
    assert os.path.isdir(tmp_path / "cut" / "checkpoint-4")  # mid-epoch: 6 optimizer steps per epoch
    resumed = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder),
                      args=TrainingArguments(output_dir=str(tmp_path / "cut"), **kwargs), train_dataset=data)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-4"))
    a, b = losses(full.state.log_history), losses(resumed.state.log_history)
    assert [x for x in a if x[0] > 4] == [x for x in b if x[0] > 4]  # bit for bit
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_evaluate_compute_metrics_and_best_model(tmp_path):
    folder = hf_checkpoint(tmp_path / "m", "BertConfig", "BertForSequenceClassification", **BERT)
    data = classification_data()

    def accuracy(prediction):
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    args = TrainingArguments(output_dir=str(tmp_path / "out"), **dict(
        COMMON, eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=3, save_total_limit=1,
        load_best_model_at_end=True, metric_for_best_model="accuracy"))
    trainer = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder), args=args,
                      train_dataset=data, eval_dataset=data[:10], compute_metrics=accuracy)
    trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    assert [e["step"] for e in evals] == [3, 6, 9, 10]
    best = max(evals, key=lambda e: e["eval_accuracy"])  # first of the best, as >
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    assert os.path.isdir(trainer.state.best_model_checkpoint)
    assert trainer.evaluate()["eval_accuracy"] == best["eval_accuracy"]  # the best model was reloaded
    with open(tmp_path / "out" / "trainer_log.jsonl") as f:
        assert len([json.loads(line) for line in f]) == len(trainer.state.log_history)


def test_bad_input_is_refused_before_training(tmp_path):
    model = pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), **COMMON)
    unlabeled = [{"input_ids": torch.arange(3, 9)} for _ in range(4)]
    with pytest.raises(InputError, match="no labels"):
        Trainer(model=model, args=args, train_dataset=unlabeled).train()
    with pytest.raises(InputError, match="none of its columns"):
        Trainer(model=model, args=args, train_dataset=[{"text": "a", "labels": 1}] * 4).train()
    evaluating = TrainingArguments(output_dir=str(tmp_path / "out"), **dict(
        COMMON, eval_strategy="steps", eval_steps=1, metric_for_best_model="f1"))
    with pytest.raises(ConfigError, match="metric_for_best_model"):
        Trainer(model=model, args=evaluating, train_dataset=classification_data(),
                eval_dataset=classification_data(4)).train()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="output_dir"):
        Trainer(model=model, args=TrainingArguments(output_dir=str(blocker / "out"), **COMMON))


T5 = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
          decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0)


def seq2seq_data(n=14, seed=2):
    gen = torch.Generator().manual_seed(seed)
    src, tgt = torch.randint(3, 99, (n, 8), generator=gen), torch.randint(3, 99, (n, 5), generator=gen)
    return [{"input_ids": src[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": tgt[i]}
            for i in range(n)]


def test_seq2seq_losses_and_generated_predictions_equal_transformers(tmp_path):
    import transformers

    from pretrained.training import Seq2SeqTrainer, Seq2SeqTrainingArguments

    transformers.logging.set_verbosity_error()
    folder = hf_checkpoint(tmp_path / "m", "T5Config", "T5ForConditionalGeneration", **T5)
    data = seq2seq_data()
    kwargs = dict(COMMON, predict_with_generate=True, generation_max_length=6, generation_num_beams=2)
    hf = transformers.Seq2SeqTrainer(
        model=transformers.AutoModelForSeq2SeqLM.from_pretrained(folder), train_dataset=data,
        args=transformers.Seq2SeqTrainingArguments(output_dir=str(tmp_path / "theirs"), use_cpu=True, **kwargs))
    hf.train()
    ours = Seq2SeqTrainer(model=pretrained.AutoModelForSeq2SeqLM.from_pretrained(folder), train_dataset=data,
                          args=Seq2SeqTrainingArguments(output_dir=str(tmp_path / "ours"), **kwargs))
    ours.train()
    for (s1, l1, r1), (s2, l2, r2) in zip(losses(ours.state.log_history), losses(hf.state.log_history), strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, abs=1e-6) and r1 == pytest.approx(r2, abs=1e-12)
    a, b = ours.predict(data[:5]), hf.predict(data[:5])
    # transformers 5 pads generations to the model's generation_config.max_length (20), not to the
    # generation_max_length it generated with (6): we pad to the latter, as transformers 4 did
    assert a.predictions.shape == (5, 6) and (a.predictions == b.predictions[:, :6]).all()
    assert (b.predictions[:, 6:] == 0).all()
    assert a.metrics["test_loss"] == pytest.approx(b.metrics["test_loss"], abs=1e-6)


def test_masked_lm_with_random_masking_equals_transformers(tmp_path, minilm_path):
    """The MLM collator draws from torch's global generator; the draws happen in the same order as in
    transformers' Trainer (one seed draw when an epoch's loader starts, then one batch at a time)."""
    import transformers

    from pretrained.training import DataCollatorForLanguageModeling

    transformers.logging.set_verbosity_error()
    folder = hf_checkpoint(tmp_path / "m", "BertConfig", "BertForMaskedLM", **dict(BERT, vocab_size=30522))
    ours_tok = pretrained.AutoTokenizer.from_pretrained(minilm_path)
    their_tok = transformers.AutoTokenizer.from_pretrained(minilm_path)
    texts = ["the cat sat on the mat", "a dog barked at the moon all night", "rain fell on the quiet town",
             "she read the letter twice", "markets rose after the news", "he fixed the old bicycle"] * 3
    data = [{"input_ids": ids} for ids in ours_tok(texts)["input_ids"]]
    kwargs = dict(COMMON, remove_unused_columns=False)
    hf = transformers.Trainer(
        model=transformers.AutoModelForMaskedLM.from_pretrained(folder), train_dataset=data,
        data_collator=transformers.DataCollatorForLanguageModeling(their_tok, mlm_probability=0.3),
        args=transformers.TrainingArguments(output_dir=str(tmp_path / "theirs"), use_cpu=True, **kwargs))
    hf.train()
    ours = Trainer(model=pretrained.AutoModelForMaskedLM.from_pretrained(folder), train_dataset=data,
                   data_collator=DataCollatorForLanguageModeling(ours_tok, mlm_probability=0.3),
                   args=TrainingArguments(output_dir=str(tmp_path / "ours"), **kwargs))
    ours.train()
    for (s1, l1, _), (s2, l2, _) in zip(losses(ours.state.log_history), losses(hf.state.log_history), strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, abs=1e-6)


def test_early_stopping_stops_and_restores_the_best(tmp_path):
    from pretrained.training import EarlyStoppingCallback

    folder = hf_checkpoint(tmp_path / "m", "BertConfig", "BertForSequenceClassification", **BERT)
    data = classification_data()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), **dict(
        COMMON, num_train_epochs=20, learning_rate=5e-2, eval_strategy="steps", eval_steps=2, save_strategy="steps",
        save_steps=2, load_best_model_at_end=True, metric_for_best_model="loss"))
    trainer = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder), args=args,
                      train_dataset=data, eval_dataset={"a": data[:6], "b": data[6:12]},
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
    with pytest.raises(ConfigError, match="metric_for_best_model"):  # two eval sets: the metric needs its set's name
        trainer.train()
    args.metric_for_best_model = "a_loss"
    trainer = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder), args=args,
                      train_dataset=data, eval_dataset={"a": data[:6], "b": data[6:12]},
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
    trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_a_loss" in e]
    assert trainer.state.global_step < trainer.state.max_steps  # stopped early
    best = min(evals, key=lambda e: e["eval_a_loss"])
    assert [e["step"] for e in evals][-1] == best["step"] + 4  # two evaluations without improvement
    assert trainer.evaluate(data[:6])["eval_loss"] == pytest.approx(best["eval_a_loss"], abs=1e-6)


def test_early_stopping_counters_resume_with_the_checkpoint(tmp_path):
    from pretrained.training import EarlyStoppingCallback

    folder = hf_checkpoint(tmp_path / "m", "BertConfig", "BertForSequenceClassification", **BERT)
    data = classification_data()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), **dict(
        COMMON, num_train_epochs=4, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
        metric_for_best_model="accuracy", greater_is_better=True))
    stopper = EarlyStoppingCallback(early_stopping_patience=50)
    trainer = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder), args=args,
                      train_dataset=data, eval_dataset=data[:8], callbacks=[stopper],
                      compute_metrics=lambda p: {"accuracy": 0.5})  # never improves after the first evaluation
    trainer.train()
    counter = stopper.early_stopping_patience_counter
    assert counter > 0
    again = EarlyStoppingCallback(early_stopping_patience=50)
    resumed = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder), args=args,
                      train_dataset=data, eval_dataset=data[:8], callbacks=[again],
                      compute_metrics=lambda p: {"accuracy": 0.5})
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-10"))
    assert again.early_stopping_patience_counter == counter
