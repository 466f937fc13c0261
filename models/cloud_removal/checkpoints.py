"""Training checkpoints: write one (every file through the shared atomic writers), find the latest,
load one back to resume, and keep the best-scoring generator of a run beside them.

A checkpoint folder ``step_XXXXXXXX/`` holds ``generator.safetensors``,
``discriminator.safetensors``, ``optimizers.pt`` (Adam states, plain tensors, read back with
``torch.load(path, weights_only=True)``, which never unpickles code) and ``state.json`` (step
counter, losses, validation history), written last: a folder without it is incomplete.
``latest.json`` names the last complete checkpoint and is replaced only once that one is whole,
so a cancelled or crashed run always keeps its last good checkpoint. The newest two are kept.
"""

from __future__ import annotations

import json
import os
import shutil

from ..atomic import atomic_output, write_text
from ..errors import ModelFileError
from ..weights import write_atomic

LATEST = "latest.json"
STATE = "state.json"
BEST_GENERATOR = "best_generator.safetensors"
KEEP = 2  # complete checkpoints kept


def tensors(module) -> dict:
    """A module's weights as contiguous CPU tensors (what safetensors writes)."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def write_checkpoint(folder: str, G, D, opt_g, opt_d, state: dict) -> str:
    """Write checkpoint ``step_<state['step']>`` into ``folder``, point ``latest.json`` at it, prune old ones."""
    import torch

    name = f"step_{state['step']:08d}"
    final = os.path.join(folder, name)
    if os.path.exists(final):  # a rerun of the same step replaces it whole
        shutil.rmtree(final)
    os.makedirs(final)
    write_atomic(os.path.join(final, "generator.safetensors"), tensors(G))
    write_atomic(os.path.join(final, "discriminator.safetensors"), tensors(D))
    with atomic_output(os.path.join(final, "optimizers.pt")) as tmp:
        torch.save({"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()}, tmp)
    write_text(os.path.join(final, STATE), json.dumps(state))
    write_text(os.path.join(folder, LATEST), json.dumps({"checkpoint": name, "step": state["step"]}))
    old = sorted(d for d in os.listdir(folder) if d.startswith("step_") and d != name)
    for d in old[:len(old) - (KEEP - 1)]:
        shutil.rmtree(os.path.join(folder, d), ignore_errors=True)
    return final


def resolve_checkpoint(path: str) -> str:
    """A checkpoint folder from a checkpoint directory (via ``latest.json``) or a ``step_*`` folder."""
    if os.path.isfile(os.path.join(path, STATE)):
        return path
    latest = os.path.join(path, LATEST)
    if os.path.isfile(latest):
        try:
            with open(latest, encoding="utf-8") as f:
                folder = os.path.join(path, json.load(f)["checkpoint"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"'{latest}' is damaged and names no checkpoint ({exc}).") from exc
        if not os.path.isfile(os.path.join(folder, STATE)):
            raise ModelFileError(f"'{latest}' names the checkpoint '{folder}', which is missing or incomplete.")
        return folder
    raise ModelFileError(f"'{path}' holds no CloudFree training checkpoint (no latest.json or state.json).")


def latest_checkpoint(folder: str | None) -> str | None:
    """The last complete checkpoint in ``folder``, or None when it has none."""
    if not folder or not os.path.isfile(os.path.join(folder, LATEST)):
        return None
    try:
        return resolve_checkpoint(folder)
    except ModelFileError:
        return None


def load_checkpoint(path: str, G, D, opt_g, opt_d) -> dict:
    """Load networks and optimisers from a checkpoint in place; return its state (step, history...)."""
    import torch
    from safetensors.torch import load_file

    folder = resolve_checkpoint(path)
    try:
        G.load_state_dict(load_file(os.path.join(folder, "generator.safetensors")), strict=True)
        D.load_state_dict(load_file(os.path.join(folder, "discriminator.safetensors")), strict=True)
        opts = torch.load(os.path.join(folder, "optimizers.pt"), weights_only=True, map_location="cpu")
        opt_g.load_state_dict(opts["generator"])
        opt_d.load_state_dict(opts["discriminator"])
        with open(os.path.join(folder, STATE)) as f:
            return json.load(f)
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        raise ModelFileError(f"Checkpoint '{folder}' cannot be resumed with this configuration ({exc}).") from exc


def best_generator_path(folder: str | None) -> str | None:
    """Where a run keeps its best-scoring generator (None without a checkpoint folder)."""
    return os.path.join(folder, BEST_GENERATOR) if folder else None


def write_best_generator(folder: str | None, state: dict) -> None:
    if folder:
        write_atomic(best_generator_path(folder), state)


def read_best_generator(resume_from: str) -> dict | None:
    """The best generator kept beside the checkpoint ``resume_from`` resolves to, if there is one."""
    from safetensors.torch import load_file

    path = best_generator_path(os.path.dirname(resolve_checkpoint(resume_from)))
    if not os.path.isfile(path):
        return None
    try:
        return load_file(path)
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise ModelFileError(f"'{path}' is damaged ({exc}); delete it to resume without it.") from exc
