"""The dataset folder written by the TypeScript dataset step (src/protocol/dataset.ts): train.bin, val.bin (int32,
-1 = padding), and from version 2 train.flags, val.flags (a byte per token: FLAG_START on an example's first token,
FLAG_NO_LOSS on tokens never to predict), meta.json."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from .events import TrainerError

PAD = -1
FLAG_START = 1
FLAG_NO_LOSS = 2
_NOT_A_TARGET = FLAG_START | FLAG_NO_LOSS
VERSIONS = (1, 2)


class Rows:
    """Token rows (n, seq_len) int32 with their flags (n, seq_len) uint8, or None for version-1 data, where every
    real token is a target and a row is one stream. Indexes like the token array, keeping the two together."""
    __slots__ = ("tokens", "flags")

    def __init__(self, tokens: np.ndarray, flags: Optional[np.ndarray] = None):
        self.tokens, self.flags = tokens, flags

    @property
    def shape(self) -> tuple:
        return self.tokens.shape

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index) -> "Rows":
        return Rows(self.tokens[index], None if self.flags is None else self.flags[index])

    def targets(self) -> np.ndarray:
        """Whether each next-token target (position 1..) takes part in the loss."""
        real = self.tokens[:, 1:] != PAD
        if self.flags is not None:
            # An example's first token is not predicted from the example before it, and sentinels are not predicted.
            real &= (self.flags[:, 1:] & _NOT_A_TARGET) == 0
        return real


@dataclass
class Dataset:
    train: Rows
    val: Rows
    seq_len: int
    meta: dict

    @property
    def train_tokens(self) -> int:
        return int((self.train.tokens != PAD).sum())


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
    if not isinstance(meta, dict) or meta.get("format") != "repotune-tokens" or meta.get("version") not in VERSIONS:
        raise _bad(f"{meta_path} is not a RepoTune token dataset (format repotune-tokens, version 1 or 2).")
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
        arrays[split] = Rows(arr, _load_flags(folder, split, arr.shape) if meta["version"] >= 2 else None)
    if arrays["train"].shape[0] == 0 or not arrays["train"].targets().any():
        raise _bad(f"The training set in {folder} is empty: the repository gave no usable text.")
    return Dataset(arrays["train"], arrays["val"], seq_len, meta)


def _load_flags(folder: str, split: str, shape: tuple) -> np.ndarray:
    path = os.path.join(folder, f"{split}.flags")
    try:
        flags = np.fromfile(path, dtype=np.uint8)
    except (FileNotFoundError, OSError) as e:
        raise _bad(f"{path} could not be read ({e}).")
    if flags.size != shape[0] * shape[1]:
        raise _bad(f"{path} holds {flags.size} flags for {shape[0] * shape[1]} tokens.")
    if flags.size and int(flags.max()) > _NOT_A_TARGET:
        raise _bad(f"{path} holds unknown flag bits.")
    return flags.reshape(shape)


def to_inputs_targets(rows, device, isolate: bool = False) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Next-token pairs, and with `isolate` the example index of each input position (None when not isolating or
    when every row is one example).

    Targets that take no part in the loss are -1 (see Rows.targets). Padding is fed to the model as token 0: it only
    fills the tail of a row, and under causal attention a tail position can only influence later tail positions.

    Isolation is off by default: attending to the earlier examples of a row is what most packed fine-tuning does, and
    on the tiny test model isolated examples did not learn the fixture's completion in 600 steps where shared rows did
    (measured, 2026-11-29). Loss masking applies either way."""
    if not isinstance(rows, Rows):
        rows = Rows(np.asarray(rows))
    t = torch.from_numpy(rows.tokens.astype(np.int64))
    inputs = t[:, :-1].clamp(min=0)
    targets = t[:, 1:].masked_fill(torch.from_numpy(~rows.targets()), PAD)
    segments = None
    if isolate and rows.flags is not None:
        starts = torch.from_numpy((rows.flags[:, :-1] & FLAG_START) != 0)
        # Only rows that pack several examples need a mask; otherwise causal attention is exact and faster.
        if bool(starts[:, 1:].any()):
            segments = starts.long().cumsum(1).to(device)
    return inputs.to(device), targets.to(device), segments


def count_targets(rows: Rows) -> int:
    return int(rows.targets().sum())


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
