"""Command line: `python -m repotune_trainer {train,tiny-model,selftest,probs} ...` (see trainer/README.md)."""
from __future__ import annotations

import argparse
import json
import sys
import traceback


class _Parser(argparse.ArgumentParser):
    """Usage errors become an `error` event too: the extension reads stdout, not the usage text."""

    def error(self, message):
        from .events import emit
        emit("error", code="bad_args", message=f"Invalid trainer arguments: {message}")
        super().error(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="repotune_trainer", description="RepoTune LoRA trainer for GGUF models")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a LoRA adapter; JSON lines on stdout")
    t.add_argument("--model", required=True, help="base model GGUF")
    t.add_argument("--data", required=True, help="dataset folder with train.bin, val.bin, meta.json")
    t.add_argument("--out", required=True, help="run folder (checkpoints/ goes here)")
    t.add_argument("--run-id", default=None, help="id carried by every event (default: the run folder's name)")
    t.add_argument("--adapter-out", required=True, help="path of the adapter GGUF to write")
    t.add_argument("--steps", type=int, default=200)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--rank", type=int, default=16)
    t.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: 2 x rank)")
    t.add_argument("--batch", type=int, default=8, help="sequences per forward pass (micro-batch)")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step: a step trains on batch x "
                   "grad-accum sequences with the memory of one micro-batch (default 1)")
    t.add_argument("--patience", type=int, default=4, help="stop early when the validation loss has not improved "
                   "for this many evaluations in a row; 0 = never (default 4)")
    t.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 5%% of steps, at most 50)")
    t.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: steps / 8)")
    t.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default: steps / 4)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    t.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: 1 on CPUs with "
                   "few cores, where BLAS threads compete, else half the cores)")
    t.add_argument("--init-adapter", default=None, help="start LoRA A/B from this RepoTune adapter GGUF (same "
                   "architecture, rank and targets as this run) instead of B = 0: continues a parent adapter")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUT/checkpoints")
    t.add_argument("--max-eval-sequences", type=int, default=256, help="cap on validation sequences per evaluation")
    t.add_argument("--targets", default=None, help="comma-separated LoRA targets among q,k,v,o,gate,up,down "
                   "(attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down); default: all the model has")
    t.add_argument("--lora-dropout", type=float, default=0.0, help="dropout probability on the LoRA input path "
                   "(training only, as PEFT's lora_dropout; default 0)")
    t.add_argument("--isolate-examples", action="store_true", help="keep attention inside each packed example "
                   "(each trained exactly as it is served) instead of letting it read the examples before it in its row")
    t.add_argument("--grad-checkpoint", action="store_true", help="recompute each transformer block in backward "
                   "(keeps only block inputs: less activation memory, ~1/3 more compute; default off)")
    t.add_argument("--base-weights", choices=["auto", "keep", "q8_0", "q4_0"], default="auto",
                   help="train on the file's F32/F16/BF16 matrices as stored (keep) or on a Q8_0 / Q4_0 copy made on "
                   "the device; auto (default) keeps them when the run fits in free memory, else the first of "
                   "q8_0, q4_0 that fits. Quantized files are never quantized again")
    t.add_argument("--no-memory-check", action="store_true", help="do not refuse to start when the memory estimate "
                   "exceeds the free memory (auto still decides by it)")
    t.add_argument("--lease-file", default=None, help="stop cleanly (checkpoint, `stopped` event) when this file's "
                   "modification time is older than --lease-timeout: the window that started a detached run touches "
                   "it while it is open")
    t.add_argument("--lease-timeout", type=float, default=30.0, help="seconds without a touch of --lease-file before "
                   "stopping (default 30)")

    m = sub.add_parser("tiny-model", help="write a tiny deterministic GGUF model for tests")
    m.add_argument("--arch", choices=["llama", "qwen2", "starcoder2"], default="llama")
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dtype", choices=["f32", "f16", "q8_0", "q4_k_m"], default="f32",
                   help="matrix type; q4_k_m is llama.cpp's Q4_K/Q6_K mixture and needs --width 256 (or a multiple)")
    m.add_argument("--width", type=int, default=64, help="n_embd (FFN is 3x); a multiple of 16, of 256 for q4_k_m")
    m.add_argument("--tied", action="store_true", help="no output.weight: the output head reuses token_embd")
    m.add_argument("--shape", choices=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"], default=None,
                   help="a real model's shapes (layers, heads, FFN, vocabulary size; qwen2, tied; random weights, drawn "
                        "in parallel) in place of --width")

    sub.add_parser("selftest", help="check that torch and numpy are usable; one JSON line")

    pr = sub.add_parser("probs", help="greedy continuation and next-token probabilities (parity checks)")
    pr.add_argument("--model", required=True)
    pr.add_argument("--adapter", default=None)
    pr.add_argument("--tokens", required=True, help="comma-separated prompt token ids (include BOS yourself)")
    pr.add_argument("--n-predict", type=int, default=64)
    pr.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="cpu")
    return p


def _tiny_model(args) -> int:
    from .events import emit
    from .tiny import write_tiny_model
    try:
        if args.shape:
            from .tiny import SHAPES
            shape = dict(SHAPES[args.shape])
            if args.arch != "qwen2":
                raise ValueError(f"--shape {args.shape} is a qwen2 model; give --arch qwen2")
            write_tiny_model(args.out, "qwen2", args.seed, args.dtype, True, shape.pop("width"), fast=True, **shape)
        else:
            write_tiny_model(args.out, args.arch, args.seed, args.dtype, args.tied, args.width)
    except ValueError as e:
        emit("error", code="bad_args", message=f"Invalid trainer arguments: {e}")
        return 2
    print(json.dumps({"path": args.out, "arch": args.arch, "dtype": args.dtype}))
    return 0


def _remember_stop_signals() -> list:
    import signal
    received: list = []

    def handler(signum, _frame):
        received.append(signum)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return received


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tiny-model":
        return _tiny_model(args)
    if args.command == "selftest":
        from .selftest import selftest
        return selftest()
    if args.command == "probs":
        from .probs import run_probs
        return run_probs(args)
    if args.command == "train":
        # A stop asked for while PyTorch is still importing (seconds on a busy machine) is remembered, and honoured
        # at the first step boundary like any other, instead of killing the import with a KeyboardInterrupt.
        early = _remember_stop_signals()
        from .train import run_train
        return run_train(args, early)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:  # noqa: BLE001 - last resort for subcommands without their own error events
        traceback.print_exc()
        sys.exit(1)
