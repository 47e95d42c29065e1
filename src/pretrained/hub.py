"""Name -> local file. A name is a local folder or a hub repo id; repo files come through
`huggingface_hub` (its cache layout, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT, tokens).

huggingface_hub is imported inside the functions: it costs ~100 ms and a local folder never needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .errors import CheckpointError


@dataclass
class HubOptions:
    """Where to look for a name's files; Transformers' from_pretrained keyword names."""

    revision: str | None = None
    cache_dir: str | os.PathLike | None = None
    local_files_only: bool = False
    token: str | bool | None = None
    force_download: bool = False
    subfolder: str = ""

    @classmethod
    def pop_from(cls, kwargs: dict) -> "HubOptions":
        """Take the hub keywords out of a from_pretrained **kwargs dict (Transformers' `use_auth_token` too)."""
        opts = cls()
        for field in HUB_KWARGS:
            if field in kwargs:
                value = kwargs.pop(field)
                if value is not None:
                    setattr(opts, field, value)
        legacy_token = kwargs.pop("use_auth_token", None)
        if opts.token is None and legacy_token is not None:
            opts.token = legacy_token
        for ignored in ("resume_download", "proxies", "_commit_hash", "mirror"):
            kwargs.pop(ignored, None)
        return opts


# The from_pretrained keywords that say where files come from: HubOptions' fields, named once.
HUB_KWARGS: tuple[str, ...] = tuple(f.name for f in fields(HubOptions))


def hub_kwargs(kwargs: dict) -> dict:
    """The hub keywords present in `kwargs`, left in place: what a from_pretrained passes on to another."""
    return {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}


def is_local(name_or_path: str | os.PathLike) -> bool:
    return os.path.isdir(name_or_path)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    options: HubOptions | None = None,
    required: bool = True,
) -> str | None:
    """Local path of `filename` for a folder or repo id; None when absent and not `required`."""
    options = options or HubOptions()
    name = os.fspath(name_or_path)
    if is_local(name):
        path = os.path.join(name, options.subfolder, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise CheckpointError(f"{name!r} has no file {os.path.join(options.subfolder, filename)!r}")
        return None
    if _looks_like_path(name) or not name:
        raise CheckpointError(f"{name!r} is not a folder (it does not exist) and not a hub repo id like 'org/model'")
    return _download(name, filename, options, required)


def _download(repo_id: str, filename: str, options: HubOptions, required: bool) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return hf_hub_download(
            repo_id,
            filename,
            subfolder=options.subfolder or None,
            revision=options.revision,
            cache_dir=options.cache_dir,
            local_files_only=options.local_files_only,
            token=options.token,
            force_download=options.force_download,
            endpoint=_endpoint(),
            library_name="pretrained",
        )
    except GatedRepoError as e:
        raise CheckpointError(f"{repo_id!r} is a gated repo: pass token= or log in with `hf auth login`") from e
    except RepositoryNotFoundError as e:
        raise CheckpointError(
            f"{repo_id!r} is not a local folder and no repo of that name exists on {_endpoint()} "
            "(or it is private: pass token=)"
        ) from e
    except RevisionNotFoundError as e:
        raise CheckpointError(f"{repo_id!r} has no revision {options.revision!r}") from e
    except LocalEntryNotFoundError as e:
        if not required:
            return None
        raise CheckpointError(
            f"{filename!r} of {repo_id!r} is not in the local hub cache and the hub cannot be reached "
            "(offline mode or no network): download it first, e.g. `pretrained download "
            f"{repo_id}`, or pass a local folder"
        ) from e
    except EntryNotFoundError as e:
        if not required:
            return None
        raise CheckpointError(f"{repo_id!r} has no file {filename!r} at revision {options.revision or 'main'}") from e
    except HFValidationError as e:
        raise CheckpointError(f"{repo_id!r} is neither a local folder nor a valid hub repo id: {e}") from e


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def first_existing(name_or_path, filenames, options: HubOptions | None = None) -> tuple[str, str] | None:
    """(filename, local path) of the first of `filenames` the name has, or None."""
    for filename in filenames:
        path = resolve_file(name_or_path, filename, options, required=False)
        if path is not None:
            return filename, path
    return None


def card_metadata(folder: str | os.PathLike) -> dict | None:
    """The YAML metadata of a model card (folder/README.md) as a dict; None when there is no card."""
    path = os.path.join(folder, "README.md")
    if not os.path.isfile(path):
        return None
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(path).data.to_dict()
    except Exception as e:  # huggingface_hub raises ValueError or yaml's own errors for bad metadata
        raise CheckpointError(f"{path}: the model card's YAML metadata cannot be read: {e}") from e


# --- uploads ---

def hub_api(token: str | bool | None = None, action: str = "push"):
    """An HfApi at HF_ENDPOINT; refused while HF_HUB_OFFLINE is set."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise CheckpointError(f"cannot {action}: HF_HUB_OFFLINE is set (unset it to reach {_endpoint()})")
    return HfApi(endpoint=_endpoint(), token=token)


def create_repo(api, repo_id: str, private: bool | None = None, revision: str | None = None) -> str:
    """Create `repo_id` (and the branch `revision`) unless they exist; the repo's full id."""
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return repo_id


def push_folder(folder: str | os.PathLike, repo_id: str, *, token: str | bool | None = None, private: bool | None = None,
                revision: str | None = None, commit_message: str = "Upload folder", **upload_kwargs):
    """Commit `folder`'s files to `repo_id` (created if needed) through huggingface_hub at HF_ENDPOINT;
    `upload_kwargs` are HfApi.upload_folder's (path_in_repo, ignore_patterns, delete_patterns, ...)."""
    api = hub_api(token, f"push {os.fspath(folder)!r} to {repo_id!r}")
    repo_id = create_repo(api, repo_id, private, revision)
    return api.upload_folder(repo_id=repo_id, folder_path=os.fspath(folder), commit_message=commit_message,
                             revision=revision, **upload_kwargs)
