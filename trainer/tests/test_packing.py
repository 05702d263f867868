"""Issue 3: packed sequences. Attention stays inside each packed example, loss skips padding, example starts and
prompt-format sentinels; dataset version 2 (flag files) is read and checked, version 1 still loads."""
import os

import numpy as np
import pytest
import torch

from conftest import TOKEN_ID, fim_example, repetitive_examples, run_cli, train_args, write_dataset
from repotune_trainer.data import FLAG_NO_LOSS, FLAG_START, Rows, count_targets, load_dataset, to_inputs_targets
from repotune_trainer.events import TrainerError
from repotune_trainer.gguf import GGUFReader
from repotune_trainer.model import LoraModel


def _model(path, **kw):
    m = LoraModel(GGUFReader(path), rank=4, alpha=8, **kw)
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for n, p in m.named_parameters():
            if "lora_b" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def _packed_row(a, b, seq_len):
    tokens = np.full((1, seq_len), -1, dtype=np.int32)
    flags = np.zeros((1, seq_len), dtype=np.uint8)
    tokens[0, :len(a)] = a
    tokens[0, len(a):len(a) + len(b)] = b
    flags[0, 0] = flags[0, len(a)] = FLAG_START
    return Rows(tokens, flags)


@pytest.mark.parametrize("key", [("llama", "f32"), ("qwen2", "q8_0")])
@pytest.mark.parametrize("grad_checkpoint", [False, True])
def test_a_packed_example_sees_only_itself(tiny_models, key, grad_checkpoint):
    """The second example of a packed row gets the logits it gets alone at the start of a row: RoPE is relative, and
    the mask keeps the first example out of its attention. Without the mask it would not."""
    m = _model(tiny_models[key], grad_checkpoint=grad_checkpoint)
    m.train()
    a = fim_example("int a = 1;\n", "int b = 2;\n", "")
    b = fim_example("def f(x):\n", "    return x\n", "\n")
    rows = _packed_row(a, b, len(a) + len(b) + 5)
    assert to_inputs_targets(rows, "cpu")[2] is None, "isolation is opt-in"
    inputs, targets, segments = to_inputs_targets(rows, "cpu", isolate=True)
    assert segments is not None and segments[0, 0] == 1 and segments[0, len(a)] == 2
    with torch.no_grad():
        packed = m(inputs, segments)[0, len(a):len(a) + len(b) - 1]
        alone = m(torch.tensor([b[:-1]]))[0]
        leaky = m(inputs)[0, len(a):len(a) + len(b) - 1]
    assert (packed - alone).abs().max() < 1e-4
    assert (leaky - alone).abs().max() > 1e-2
    # With gradients too (under checkpointing the mask must reach the recomputation).
    loss, n = m.loss(inputs, targets, segments)
    loss.backward()
    assert n == count_targets(rows) and all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_targets_skip_padding_starts_and_sentinels():
    tokens = np.array([[5, 6, 7, 8, 9, -1, -1]], dtype=np.int32)
    flags = np.array([[FLAG_START, FLAG_NO_LOSS, 0, FLAG_START | FLAG_NO_LOSS, 0, 0, 0]], dtype=np.uint8)
    inputs, targets, segments = to_inputs_targets(Rows(tokens, flags), "cpu", isolate=True)
    # Predicting 6 (a sentinel), 8 (the next example's start): no loss; 7 and 9 are targets; padding is not.
    assert targets.tolist() == [[-1, 7, -1, 9, -1, -1]]
    assert inputs.tolist() == [[5, 6, 7, 8, 9, 0]]
    assert segments.tolist() == [[1, 1, 1, 2, 2, 2]]
    assert count_targets(Rows(tokens, flags)) == 2
    # One example per row (version 1, or version 2 without a second start): plain causal attention, no mask.
    assert to_inputs_targets(Rows(tokens), "cpu", isolate=True)[2] is None
    assert to_inputs_targets(Rows(tokens[:, :3], flags[:, :3]), "cpu", isolate=True)[2] is None
    assert to_inputs_targets(Rows(tokens, flags), "cpu")[2] is None
    assert count_targets(Rows(tokens)) == 4


def test_version_2_datasets_are_checked(tmp_path):
    ex = repetitive_examples(6)
    d = write_dataset(tmp_path / "ok", ex, ex[:2], 96)
    data = load_dataset(d, _n_vocab())
    assert data.train.flags is not None and data.train.flags.shape == data.train.tokens.shape
    # Every example starts with <|fim_prefix|>, flagged as a start and never a target.
    starts = data.train.flags & FLAG_START != 0
    assert (data.train.tokens[starts] == TOKEN_ID["<|fim_prefix|>"]).all() and starts.sum() == 6
    assert load_dataset(write_dataset(tmp_path / "v1", ex, [], 96, version=1), _n_vocab()).train.flags is None

    os.truncate(os.path.join(d, "train.flags"), 10)
    with pytest.raises(TrainerError) as e:
        load_dataset(d, _n_vocab())
    assert e.value.code == "bad_data" and "flags" in str(e.value)
    os.remove(os.path.join(d, "train.flags"))
    with pytest.raises(TrainerError) as e:
        load_dataset(d, _n_vocab())
    assert e.value.code == "bad_data" and "train.flags" in str(e.value)
    bad = write_dataset(tmp_path / "bits", ex, [], 96)
    np.full(os.path.getsize(os.path.join(bad, "train.bin")) // 4, 9, dtype=np.uint8).tofile(
        os.path.join(bad, "train.flags"))
    with pytest.raises(TrainerError, match="unknown flag bits"):
        load_dataset(bad, _n_vocab())


@pytest.mark.parametrize("isolate", [False, True])
def test_training_on_packed_examples_learns_the_middle(tiny_models, tmp_path, isolate):
    """A real run on version-2 data (several examples per row), examples isolated or not: the loss falls and the
    adapter is written."""
    line = 'x = "zebra";\n'
    train = [fim_example(line * (k % 2), line, "") for k in range(16)]
    data = write_dataset(tmp_path / "d", train, train[:4], 64)
    rows = load_dataset(data, _n_vocab()).train
    assert (rows.flags & FLAG_START).sum() == 16 and len(rows) < 16, "several examples share a row"
    out, adapter = tmp_path / "run", tmp_path / "a.gguf"
    p, events = run_cli(*train_args(tiny_models[("llama", "f32")], data, out, adapter, "--steps", "30", "--lr", "0.01",
                                    "--rank", "8", "--batch", "4", "--eval-every", "30",
                                    *(["--isolate-examples"] if isolate else [])))
    assert p.returncode == 0, p.stderr
    done = [e for e in events if e["event"] == "done"][0]
    assert done["val_loss"] < done["val_loss_base"] * 0.5 and os.path.getsize(adapter) > 0


def _n_vocab():
    return len(TOKEN_ID)
