"""push_to_hub for the Trainer: what each hub_strategy uploads, and when.

- every_save: on each checkpoint save, the model files of that checkpoint go to the repo's root;
- checkpoint: the same, plus the whole checkpoint (optimizer, RNG, trainer state) under `last-checkpoint/`,
  from which `resume_from_checkpoint` can pick up on another machine;
- all_checkpoints: the same, with every checkpoint under its own `checkpoint-N/` folder;
- end: only `Trainer.push_to_hub()` / `save_model()` upload.
Uploads run in the background, one at a time (huggingface_hub futures on one HfApi); a save that finds the
previous upload still running skips its own unless hub_always_push, and the end of training waits for them.
"""

from __future__ import annotations

import os
import shutil
import uuid

from ..hub import create_repo, hub_api

# what a checkpoint holds besides the model files: resuming needs them, a model repo's root does not
TRAINING_STATE_FILES = ["optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.safetensors", "trainer_state.json"]
LOCAL_ONLY = ["checkpoint-*", "checkpoint-*/**", ".*", "trainer_log.jsonl"]


class HubPusher:
    """Created by the Trainer when push_to_hub is set: the repo exists from the start (a bad token or name
    fails before training, not after it)."""

    def __init__(self, args):
        self.args = args
        self.api = hub_api(args.hub_token, "push_to_hub")
        name = args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
        self.repo_id = create_repo(self.api, name, args.hub_private_repo, args.hub_revision)
        self._pending = []  # (upload Future, snapshot folder it reads)
        for entry in os.listdir(args.output_dir):  # snapshots a killed run left behind
            if entry.startswith(".push-"):
                shutil.rmtree(os.path.join(args.output_dir, entry), ignore_errors=True)

    def _push(self, folder: str, message: str, blocking: bool, **kwargs):
        result = self.api.upload_folder(repo_id=self.repo_id, folder_path=folder, commit_message=message,
                                        revision=self.args.hub_revision, run_as_future=not blocking, **kwargs)
        if not blocking:
            self._pending.append((result, folder))
        return result

    def busy(self) -> bool:
        done = [(f, folder) for f, folder in self._pending if f.done()]
        self._finish(done)
        return bool(self._pending)

    def _finish(self, uploads) -> None:
        for future, folder in uploads:
            self._pending.remove((future, folder))
            if not any(other == folder for _, other in self._pending):  # the snapshot's last upload
                shutil.rmtree(folder, ignore_errors=True)
            future.result()  # a failed upload raises here rather than passing in silence

    def push_checkpoint(self, checkpoint_dir: str, step: int) -> None:
        """After a checkpoint save (every_save, checkpoint, all_checkpoints)."""
        if self.args.hub_strategy == "end" or (self.busy() and not self.args.hub_always_push):
            return
        message = f"Training in progress, step {step}"
        snapshot = _snapshot(checkpoint_dir)  # checkpoint rotation may delete the folder while it uploads
        self._push(snapshot, message, blocking=False, ignore_patterns=TRAINING_STATE_FILES)
        if self.args.hub_strategy in ("checkpoint", "all_checkpoints"):
            where = "last-checkpoint" if self.args.hub_strategy == "checkpoint" else os.path.basename(checkpoint_dir)
            self._push(snapshot, message, blocking=False, path_in_repo=where, delete_patterns=["*"])

    def push_output(self, output_dir: str, commit_message: str, blocking: bool = True):
        """The output folder's model files (not its checkpoints); the commit, or its Future."""
        self.wait()  # in order: a checkpoint upload still running must not land after the final model
        return self._push(output_dir, commit_message, blocking, ignore_patterns=LOCAL_ONLY)

    def wait(self) -> None:
        for future, _ in self._pending:
            future.exception()  # blocks until it ends
        self._finish(list(self._pending))


def _snapshot(checkpoint_dir: str) -> str:
    """Hard links to the checkpoint's files in a hidden sibling folder (copies where links are refused):
    a checkpoint's files are never changed once written, so the links hold exactly what was saved."""
    target = os.path.join(os.path.dirname(checkpoint_dir), f".push-{uuid.uuid4().hex}")
    shutil.copytree(checkpoint_dir, target, copy_function=_link_or_copy)
    return target


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
