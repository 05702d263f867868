"""The dataset folder written by the TypeScript dataset step: train.bin, val.bin (int32, -1 = padding), meta.json."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from .events import TrainerError

PAD = -1


@dataclass
class Dataset:
    train: np.ndarray     # (n_train, seq_len) int32
    val: np.ndarray       # (n_val, seq_len) int32
    seq_len: int
    meta: dict

    @property
    def train_tokens(self) -> int:
        return int((self.train != PAD).sum())


def _bad(msg: str) -> TrainerError:
    return TrainerError("bad_data", msg + " Prepare the dataset again (run Fine-tune again).")


def load_dataset(folder: str, n_vocab: int) -> Dataset:
    meta_path = os.path.join(folder, "meta.json")
    try:
        with open(meta_path, "r", encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise _bad(f"The dataset folder {folder} has no meta.json.")
    except (OSError, ValueError) as e:
        raise _bad(f"{meta_path} could not be read ({e}).")
    if not isinstance(meta, dict) or meta.get("format") != "repotune-tokens" or meta.get("version") != 1:
        raise _bad(f"{meta_path} is not a RepoTune token dataset (format repotune-tokens, version 1).")
    if meta.get("dtype", "int32") != "int32" or meta.get("pad", PAD) != PAD:
        raise _bad(f"{meta_path} declares dtype {meta.get('dtype')!r} / pad {meta.get('pad')!r}; expected int32 / -1.")
    seq_len = meta.get("seq_len")
    if not isinstance(seq_len, int) or seq_len < 2:
        raise _bad(f"{meta_path} has an invalid seq_len {seq_len!r}.")
    if meta.get("vocab_size") not in (None, n_vocab):
        raise _bad(f"The dataset was tokenized for a vocabulary of {meta.get('vocab_size')} tokens but the model has "
                   f"{n_vocab}: it was made for another model.")
    arrays = {}
    for split in ("train", "val"):
        path = os.path.join(folder, f"{split}.bin")
        try:
            raw = np.fromfile(path, dtype="<i4")
        except (FileNotFoundError, OSError) as e:
            raise _bad(f"{path} could not be read ({e}).")
        if raw.size % seq_len:
            raise _bad(f"{path} holds {raw.size} tokens, not a whole number of sequences of {seq_len}.")
        arr = raw.reshape(-1, seq_len).astype(np.int32)
        expected = meta.get(f"{split}_sequences")
        if isinstance(expected, int) and expected != arr.shape[0]:
            raise _bad(f"{path} holds {arr.shape[0]} sequences but meta.json says {expected}.")
        if arr.size and (arr.min() < PAD or arr.max() >= n_vocab):
            raise _bad(f"{path} contains token ids outside 0..{n_vocab - 1} (and -1 for padding).")
        arrays[split] = arr
    if arrays["train"].shape[0] == 0 or not (arrays["train"][:, 1:] != PAD).any():
        raise _bad(f"The training set in {folder} is empty: the repository gave no usable text.")
    return Dataset(arrays["train"], arrays["val"], seq_len, meta)


def to_inputs_targets(batch: np.ndarray, device) -> tuple:
    """Next-token pairs. Padding gets no loss (target -1) and is fed to the model as token 0: padding only fills the
    tail of a sequence, and under causal attention a tail position can only influence later tail positions."""
    t = torch.from_numpy(batch.astype(np.int64))
    inputs = t[:, :-1].clamp(min=0)
    targets = t[:, 1:]
    return inputs.to(device), targets.to(device)


def batch_indices(n: int, batch: int, step: int, seed: int) -> np.ndarray:
    """Sequences for 1-based `step`: consecutive slices of a per-epoch shuffle. A pure function of (step, seed), so a
    resumed run sees exactly the batches the interrupted one would have seen."""
    out, perms = [], {}
    for pos in range((step - 1) * batch, step * batch):
        epoch, k = divmod(pos, n)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(perms[epoch][k])
    return np.asarray(out, dtype=np.int64)
