"""Teach the embedded SmolLM2-135M-Instruct new replies with a LoRA adapter, offline apart from one `pip download`.

The data: the chatterbot-corpus 1.3.3 English conversations (21 YAML files of short dialogues, fetched into
`.assets/chatterbot/`), each turned into user/assistant messages, rendered with the model's chat template; the
loss counts the assistant's tokens only. A seeded 10% of the conversations is held out, and the assistant-token
loss on it is measured before and after training. The adapter folder loads with `pretrained chat --adapter`.

    python examples/finetune_chat.py --output-dir .assets/smollm2-chatterbot
    pretrained chat --adapter .assets/smollm2-chatterbot
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import subprocess
import sys
import zipfile

WHEEL = "chatterbot-corpus==1.3.3"


def load_conversations(data_dir: str) -> list[list[dict]]:
    """Every English chatterbot-corpus dialogue as messages, alternating user and assistant."""
    import yaml

    wheels = glob.glob(os.path.join(data_dir, "chatterbot_corpus-1.3.3-*.whl"))
    if not wheels:
        os.makedirs(data_dir, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", data_dir], check=True)
        wheels = glob.glob(os.path.join(data_dir, "chatterbot_corpus-1.3.3-*.whl"))
    conversations = []
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in sorted(n for n in wheel.namelist() if "/data/english/" in n and n.endswith(".yml")):
            for lines in yaml.safe_load(wheel.read(name)).get("conversations", []):
                if len(lines) < 2 or not all(isinstance(line, str) and line.strip() for line in lines):
                    continue
                lines = lines[:len(lines) - len(lines) % 2]  # end on an assistant turn
                conversations.append([{"role": "user" if i % 2 == 0 else "assistant", "content": line.strip()}
                                      for i, line in enumerate(lines)])
    return conversations


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=".assets/chatterbot")
    parser.add_argument("--output-dir", default=".assets/smollm2-chatterbot")
    parser.add_argument("--model", help="a chat model folder or .gguf (default: the embedded SmolLM2)")
    parser.add_argument("--max-conversations", type=int, default=0, help="0: all of them")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args(argv)

    from pretrained import LoraConfig, get_peft_model
    from pretrained.chat import load_chat_model
    from pretrained.training import DataCollatorForSeq2Seq, Trainer, TrainingArguments
    from pretrained.training.chat_data import chat_example

    conversations = load_conversations(args.data_dir)
    random.Random(0).shuffle(conversations)
    if args.max_conversations:
        conversations = conversations[:args.max_conversations]
    held = max(1, len(conversations) // 10)
    model, tokenizer = load_chat_model(args.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    encode = [chat_example(tokenizer, c, args.max_length) for c in conversations]
    train, valid = encode[held:], encode[:held]
    model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    model.print_trainable_parameters()
    training = TrainingArguments(output_dir=args.output_dir, num_train_epochs=args.epochs,
                                 per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=16,
                                 learning_rate=args.learning_rate, warmup_steps=0.05, logging_steps=10,
                                 eval_strategy="no", save_strategy="no", report_to="none", seed=0)
    trainer = Trainer(model=model, args=training, train_dataset=train, eval_dataset=valid,
                      data_collator=DataCollatorForSeq2Seq(tokenizer), processing_class=tokenizer)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    trainer.save_model()
    result = {"conversations": len(conversations), "train": len(train), "held_out": len(valid),
              "held_out_loss_before": before, "held_out_loss_after": after}
    print(result)
    return result


if __name__ == "__main__":
    main()
