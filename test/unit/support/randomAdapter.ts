// A LoRA adapter with random A/B for some of the tiny model's matrices (width 64, 2 blocks), written by the trainer's
// own adapter writer. "transposed" stores A the wrong way round, which llama.cpp refuses.
import { execFileSync } from "node:child_process";
import { python, trainerRoot } from "./pipeline";

const ADAPTER_SCRIPT = `
import sys, torch
from repotune_trainer.adapter import write_adapter
out, arch, mode = sys.argv[1], sys.argv[2], sys.argv[3]
g = torch.Generator().manual_seed(0)
rank, state = 4, {}
for i in range(2):
    for name, n_out, n_in in [("attn_q", 64, 64), ("attn_v", 32, 64), ("ffn_up", 192, 64)]:
        a = torch.randn(rank, n_in, generator=g)
        b = torch.randn(n_out, rank, generator=g)
        state[f"blk.{i}.{name}.weight.lora_a"] = a.t().contiguous() if mode == "transposed" else a
        state[f"blk.{i}.{name}.weight.lora_b"] = b
write_adapter(out, arch, 8.0, state)
`;

export function writeRandomAdapter(out: string, arch: "llama" | "qwen2", mode: "ok" | "transposed" = "ok"): void {
  execFileSync(python, ["-c", ADAPTER_SCRIPT, out, arch, mode], { env: { ...process.env, PYTHONPATH: trainerRoot } });
}
