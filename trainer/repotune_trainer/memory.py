"""Peak-memory estimate of a `train` run, from the GGUF's shapes and weight types alone (no tensor is loaded).

`estimate(model_path, seq_len, batch, rank, device, base_weights, grad_checkpoint)` returns a breakdown in bytes and
`total`; `estimate_shape` does the same from a `ModelShape` already read (fit.py tries many settings on one). It
follows what model.py and train.py keep alive at the peak of a step, which is the start of the backward pass (every
layer's saved activations are live, and the output head's logits and their gradient copies are being processed):

- weights: the frozen matrices as they are held in training: as stored, or, with `base_weights` q8_0 / q4_0, as the
  quantized copy quants.base_weight_type gives them (the same function the loader uses); norms and biases as
  float32; a tied output head counted once. The file's own pages are not counted: the loader releases each tensor's
  pages once copied (GGUFReader.release) and unmaps the file after loading.
- lora: A and B, their gradients, AdamW's two moments, and the best-so-far copy train.py keeps (5 x float32).
- activations: what autograd saves per layer (see `_layer_activations`), for batch x seq_len tokens; with gradient
  checkpointing only each block's input, plus (in `transient`) the one block recomputed during its backward.
- transient: the larger of (a) the output head: logits, log-softmax and its gradient copies for batch x seq_len
  tokens x vocab (float32) plus the dequantized head matrix, and (b) a layer's backward: the dequantized largest
  matrix plus the gradients in flight.
- cpu_allocator (cpu only): CPU_ALLOCATOR_FACTOR x the activations of a run without checkpointing, the heap growth
  the temporaries leave behind (measured, see the constant). With checkpointing too: the forward pass creates the
  same temporaries and frees them at once instead of saving them, but glibc's heap keeps them (its mmap threshold
  rises to 32 MB as big blocks are freed, so most of them come from the heap, which only shrinks from the top).
  Measured, PyTorch 1.13 CPU, 2 steps: width 512 x 4 layers F16, 8 x 256 tokens: peak RSS 1531 MB without, 1301 MB
  with checkpointing (estimates 1434 / 1149); width 512 x 2 layers F32, 8 x 512: 1532 / 1213 MB (1582 / 1393).
  On the CPU checkpointing saves RSS only through the saved activations themselves.
- runtime (cpu only): the resident size of a process that has imported the trainer and run one small backward
  (Python, PyTorch, its BLAS buffers, the autograd engine), measured once per process in a fresh subprocess.

The padding fraction of the dataset is unknown here, so the head is sized for all batch x seq_len tokens (an upper
bound). cuda estimates device memory (bf16 matmul outputs under autocast where the GPU supports it; the CUDA context
and the caching allocator's slack are left to the caller: the number is what PyTorch allocates, not nvidia-smi's
figure). mps is counted as cuda with float32 activations (no autocast there).

CLI: `python -m repotune_trainer.memory --model M --seq-len N --batch B --rank R [--device cpu|cuda|mps]
[--base-weights keep|q8_0|q4_0] [--grad-checkpoint]` prints one JSON line: the same dict.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .gguf import GGUFReader, tensor_nbytes, type_name
from .quants import BASE_WEIGHT_MODES, base_weight_type

# The output head's loss runs over chunks of target positions, so that its float32 logits (and their gradient, in a
# recomputation during backward) never exceed about this many bytes: at Qwen2.5-Coder's 151,936-token vocabulary a
# batch of 4 x 2048 would otherwise hold ~5 GiB per copy of the logits. model.LoraModel.loss uses the same rule.
LOSS_CHUNK_BYTES = 256 * 1024 * 1024


def loss_chunk_positions(n_vocab: int) -> int:
    return max(256, LOSS_CHUNK_BYTES // (4 * max(1, n_vocab)))   # float32 logits

F32_BYTES = 4
# glibc's heap does not give back the forward/backward temporaries' memory in a reusable shape: a CPU process's RSS
# grows by about this many times the saved activations beyond them (measured on PyTorch 1.13 CPU, tiny qwen2 width 256/512, 2
# training steps: 1.2x-2.3x; it keeps creeping up a little over later steps, +7% from step 2 to 6 at width 512).
CPU_ALLOCATOR_FACTOR = 1.7
_QUANT_DEQUANT_COPIES = {"F32": 0, "F16": 1, "BF16": 1}   # extra full-size tensors dequantize() makes; others: 2


def _has_sdpa() -> bool:
    try:
        import torch.nn.functional as F
        return hasattr(F, "scaled_dot_product_attention")
    except ImportError:  # pragma: no cover
        return False


def _meta(r: GGUFReader) -> Dict[str, int]:
    arch = r.architecture
    g = lambda k, d=None: r.get(f"{arch}.{k}", d)  # noqa: E731
    n_embd = int(g("embedding_length"))
    n_head = int(g("attention.head_count"))
    head_dim = int(g("attention.key_length", n_embd // n_head))
    return dict(arch=arch, n_embd=n_embd, n_layer=int(g("block_count")), n_head=n_head,
                n_head_kv=int(g("attention.head_count_kv", n_head)), head_dim=head_dim,
                n_ff=int(g("feed_forward_length")), n_vocab=int(r.tensors["token_embd.weight"].shape[0]),
                gated=arch != "starcoder2")


def _layer_activations(m: Dict[str, int], batch: int, seq: int, rank: int, act: int, sdpa: bool, first: bool) -> int:
    """Bytes autograd keeps for backward in one layer (model.py, no checkpointing). act: bytes of a matmul output.

    Norms (float32): the residual input (saved by pow and mul), x * rsqrt, and the output (saved by the LoRA matmuls);
    in layer 0 the attention norm's input does not require grad, so only its output is kept.
    Each LoRA linear keeps x @ A (T x rank); FrozenMatmul keeps only the packed weight.
    Attention: Q and K projections (kept by RoPE's multiplies) and their RoPE outputs; with grouped-query attention
    K and V repeated to n_head (the un-repeated K-RoPE and V are then freed); then either the softmax probabilities
    (B x H x n x n, float32, PyTorch < 2.0 path) or SDPA's output and log-sum-exp; the re-laid-out output.
    FFN: gated: gate, silu(gate), up, silu*up; starcoder2: up, gelu(up).
    """
    T = batch * seq
    d, H, Hkv, hd, f = m["n_embd"], m["n_head"], m["n_head_kv"], m["head_dim"], m["n_ff"]
    q, kv = H * hd, Hkv * hd
    norms = (1 if first else 3) * T * d * F32_BYTES + 3 * T * d * F32_BYTES
    n_lin = 7 if m["gated"] else 6
    lora = n_lin * T * rank * act
    att = T * q * act * 2 + T * kv * act          # q_lin, q_rope, k_lin
    if H != Hkv:
        att += 2 * T * q * act                     # repeated K and V
    else:
        att += 2 * T * kv * act                    # k_rope, v
    if sdpa:
        att += T * q * act + batch * H * seq * F32_BYTES
    else:
        att += batch * H * seq * seq * F32_BYTES
    att += T * q * act                             # o, transposed and reshaped (a copy)
    ffn = (4 if m["gated"] else 2) * T * f * act
    return norms + lora + att + ffn


@functools.lru_cache(maxsize=None)
def runtime_baseline() -> int:
    """Resident bytes of a fresh process that imported the trainer and ran a small forward/backward/AdamW step."""
    code = ("import torch, repotune_trainer.train\n"
            "a = torch.nn.Parameter(torch.randn(64, 64)); o = torch.optim.AdamW([a])\n"
            "(torch.randn(32, 64) @ a).sum().backward(); o.step()\n"
            "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] * 1024)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        return int(p.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return 300 * 2**20   # no /proc (macOS) or a failure: a typical PyTorch 1.13-2.x CPU process


@dataclass
class ModelShape:
    """What the estimate needs from a GGUF: hyperparameters and each tensor's (name, ggml type, numpy shape, ne)."""
    meta: Dict[str, int]
    tensors: List[Tuple[str, int, Tuple[int, ...], List[int]]]
    tied: bool


def model_shape(r: GGUFReader) -> ModelShape:
    return ModelShape(_meta(r), [(n, t.ggml_type, t.shape, list(t.ne)) for n, t in r.tensors.items()],
                      "output.weight" not in r.tensors)


def estimate(model_path: str, seq_len: int, batch: int, rank: int, device: str = "cpu", base_weights: str = "keep",
             grad_checkpoint: bool = False) -> Dict[str, object]:
    with GGUFReader(model_path) as r:
        shape = model_shape(r)
    return estimate_shape(shape, seq_len, batch, rank, device, base_weights, grad_checkpoint)


def estimate_shape(shape: ModelShape, seq_len: int, batch: int, rank: int, device: str = "cpu",
                   base_weights: str = "keep", grad_checkpoint: bool = False,
                   runtime: Optional[int] = None) -> Dict[str, object]:
    """`runtime` (cpu): the resident bytes of everything but the run itself; by default `runtime_baseline()`."""
    if device not in ("cpu", "cuda", "mps"):
        raise ValueError("device must be 'cpu', 'cuda' or 'mps'")
    if base_weights not in BASE_WEIGHT_MODES:
        raise ValueError(f"base_weights must be one of {', '.join(BASE_WEIGHT_MODES)}")
    m = shape.meta
    cpu = device == "cpu"
    act = 2 if device == "cuda" else F32_BYTES   # bf16 autocast on CUDA (full precision on GPUs without bf16: an underestimate)
    sdpa = _has_sdpa()

    weights = 0
    largest_layer, head_deq = 0, 0
    head_name = "token_embd.weight" if shape.tied else "output.weight"
    for name, ggml_type, tshape, ne in shape.tensors:
        is_matrix = len(tshape) == 2 and name != "rope_freqs.weight"
        if not is_matrix:
            weights += int(_prod(ne)) * F32_BYTES
            continue
        held = base_weight_type(name, ggml_type, tshape, base_weights, shape.tied) or ggml_type
        weights += tensor_nbytes(held, ne)
        deq = _QUANT_DEQUANT_COPIES.get(type_name(held), 2) * int(_prod(ne)) * act
        if name.startswith("blk."):
            largest_layer = max(largest_layer, deq)
        if name == head_name:
            head_deq = deq

    n_lora = 0
    targets = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    matrices = {name: tshape for name, _, tshape, _ in shape.tensors}
    for i in range(m["n_layer"]):
        for n in targets:
            t = matrices.get(f"blk.{i}.{n}.weight")
            if t is not None:
                n_out, n_in = t
                n_lora += rank * (n_in + n_out)
    lora = 5 * n_lora * F32_BYTES

    T = batch * seq_len
    per_layer = [_layer_activations(m, batch, seq_len, rank, act, sdpa, i == 0) for i in range(m["n_layer"])]
    out_norm = 3 * T * m["n_embd"] * F32_BYTES              # output norm: input, x * rsqrt, output
    if grad_checkpoint:
        # Autograd keeps each block's input; backward recomputes one block at a time, whose saved tensors then live
        # next to the gradients in flight.
        activations, recomputed = m["n_layer"] * T * m["n_embd"] * F32_BYTES + out_norm, max(per_layer)
    else:
        activations, recomputed = sum(per_layer) + out_norm, 0
    # Head, one chunk of positions at a time (loss_chunk_positions): logits and log_softmax; in backward (recomputed)
    # its gradient, log_softmax's backward output and the float32 grad_y copy: about three chunk x vocab float32
    # tensors at once, plus the dequantized head.
    head_peak = 3 * min(T, loss_chunk_positions(m["n_vocab"])) * m["n_vocab"] * F32_BYTES + head_deq
    # A layer's backward: the dequantized matrix, and the gradients in flight (a few T x n_ff, or the B x H x n x n
    # attention-score gradients without SDPA).
    grads = 3 * T * m["n_ff"] * act
    if not sdpa:
        grads = max(grads, 3 * batch * m["n_head"] * seq_len * seq_len * F32_BYTES)
    layer_peak = largest_layer + grads + recomputed
    transient = max(head_peak, layer_peak)

    out = {"device": device, "seq_len": seq_len, "batch": batch, "rank": rank, "arch": m["arch"],
           "base_weights": base_weights, "grad_checkpoint": int(bool(grad_checkpoint)),
           "weights": int(weights), "lora": int(lora), "activations": int(activations), "transient": int(transient),
           "cpu_allocator": int(CPU_ALLOCATOR_FACTOR * (sum(per_layer) + out_norm)) if cpu else 0,
           "runtime": (int(runtime) if runtime is not None else int(runtime_baseline())) if cpu else 0}
    out["total"] = sum(out[k] for k in ("weights", "lora", "activations", "transient", "cpu_allocator", "runtime"))
    return out


def _prod(ne) -> int:
    n = 1
    for v in ne:
        n *= int(v)
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m repotune_trainer.memory", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default="cpu")
    p.add_argument("--base-weights", choices=BASE_WEIGHT_MODES, default="keep",
                   help="the form full-precision matrices are trained in (train's --base-weights, once decided)")
    p.add_argument("--grad-checkpoint", action="store_true")
    a = p.parse_args(argv)
    print(json.dumps(estimate(a.model, a.seq_len, a.batch, a.rank, a.device, a.base_weights, a.grad_checkpoint)),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
