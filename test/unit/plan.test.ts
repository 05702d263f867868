// The training plan on recorded device descriptions, with the trainer's real memory estimator run on weightless
// GGUFs of the catalog models' shapes (and an F16 7B, the case that needs a 4-bit copy of the base weights).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import * as path from "node:path";
import { planTraining, secondsFromMeasured, trainerEstimator, rankFor, HEADROOM, SEQUENCES_PER_STEP, type DeviceDescription, type Estimator, type TrainingPlan } from "../../src/core/plan";
import { catalogModel, shapeOf } from "../../src/core/models/catalog";
import { shapeOfSpec, writeShapeGguf, type ModelShape, type ShapeSpec } from "../../src/core/models/shape";
import { python, removeDir, tempDir, trainerRoot } from "./support/pipeline";

const GiB = 2 ** 30;

// Recorded device descriptions: memory as the trainer's free-memory report would give it, and each device's peak
// dense matmul throughput at the precision training computes in (vendor figures; the CPU's measured here, OpenBLAS).
const H200: DeviceDescription = { kind: "cuda", name: "NVIDIA H200", totalBytes: 141e9, freeBytes: 140e9, matmulFlops: 989e12 };
const RTX4090: DeviceDescription = { kind: "cuda", name: "NVIDIA GeForce RTX 4090", totalBytes: 24 * GiB, freeBytes: 23.4 * GiB, matmulFlops: 165e12 };
const RTX4070: DeviceDescription = { kind: "cuda", name: "NVIDIA GeForce RTX 4070", totalBytes: 12 * GiB, freeBytes: 11.5 * GiB, matmulFlops: 117e12 };
const GTX1650: DeviceDescription = { kind: "cuda", name: "NVIDIA GeForce GTX 1650", totalBytes: 4 * GiB, freeBytes: 3.8 * GiB, matmulFlops: 6e12 };
const LAPTOP8: DeviceDescription = { kind: "cuda", name: "NVIDIA GeForce RTX 4060 Laptop GPU", totalBytes: 8 * GiB, freeBytes: 7.6 * GiB, matmulFlops: 60e12 };
// MPS: PyTorch's recommended working set on a 16 GB Apple M2 (about two thirds of the RAM).
const M2: DeviceDescription = { kind: "mps", name: "Apple M2 (MPS)", totalBytes: 16 * GiB, freeBytes: 10.7 * GiB, matmulFlops: 3.6e12 };
const CPU16: DeviceDescription = { kind: "cpu", name: "CPU (16 GB RAM)", totalBytes: 16 * GiB, freeBytes: 11 * GiB, matmulFlops: 0.32e12 };

const MEDIUM_REPO = 2_000_000;   // training tokens
const SMALL_REPO = 60_000;

let dir: string;
const files = new Map<string, string>();

/**
 * The trainer's estimator (memory.estimate, what `python -m repotune_trainer.memory` prints) with every option it
 * has (memoryEstimate.ts does not pass --base-weights yet), served by one Python process for the whole file: a plan
 * asks for up to a dozen estimates, and a process per estimate spends a second importing PyTorch each time.
 */
class EstimatorProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: ((line: string) => void)[] = [];
  private buffer = "";

  constructor() {
    const script = [
      "import json, sys",
      "from repotune_trainer.memory import estimate",
      "for line in sys.stdin:",
      "    r = json.loads(line)",
      "    try:",
      "        print(json.dumps(estimate(r['model'], r['seq'], r['batch'], r['rank'], r['device'], r['base'], r['ckpt'])), flush=True)",
      "    except Exception as e:",
      "        print(json.dumps({'error': str(e)}), flush=True)",
    ].join("\n");
    this.child = spawn(python, ["-u", "-c", script], { env: { ...process.env, PYTHONPATH: trainerRoot } });
    this.child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      this.buffer += chunk;
      let nl;
      while ((nl = this.buffer.indexOf("\n")) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.waiting.shift()?.(line);
      }
    });
  }

  ask(r: { model: string; seq: number; batch: number; rank: number; device: string; base: string; ckpt: boolean }): Promise<{ total: number; base_weights: string; grad_checkpoint: number }> {
    return new Promise((resolve, reject) => {
      this.waiting.push((line) => {
        const e = JSON.parse(line);
        if (e.error) reject(new Error(e.error));
        else resolve(e);
      });
      this.child.stdin.write(JSON.stringify(r) + "\n");
    });
  }

  close(): void {
    this.child.stdin.end();
  }
}

let estimator: EstimatorProcess;

function cliEstimator(modelPath: string, device: DeviceDescription): Estimator {
  return async (s) => {
    const e = await estimator.ask({ model: modelPath, seq: s.seqLen, batch: s.batch, rank: s.rank, device: device.kind === "cpu" ? "cpu" : "cuda", base: s.baseWeights, ckpt: s.gradCheckpoint });
    return { totalBytes: e.total, baseWeights: e.base_weights, gradCheckpoint: e.grad_checkpoint === 1 };
  };
}

const F16_7B: ShapeSpec = { ...catalogModel("qwen2.5-coder-7b").spec, weightType: "F16" };

async function modelFile(id: string, spec: ShapeSpec): Promise<string> {
  if (!files.has(id)) {
    const file = path.join(dir, `${id}.gguf`);
    await writeShapeGguf(spec, file);
    files.set(id, file);
  }
  return files.get(id)!;
}

async function plan(device: DeviceDescription, id: string, datasetTokens: number, extra: Partial<Parameters<typeof planTraining>[0]> = {}): Promise<TrainingPlan> {
  const spec = id === "qwen-7b-f16" ? F16_7B : catalogModel(id).spec;
  const model: ModelShape = shapeOfSpec(spec);
  const p = await planTraining({ device, model, datasetTokens, estimate: cliEstimator(await modelFile(id, spec), device), ...extra });
  // The figures, for whoever reads the test log.
  console.log(`# ${device.name} / ${id} / ${datasetTokens} tokens: ${p.baseWeights} rank ${p.rank} seq ${p.seqLen} batch ${p.batch}x${p.gradAccum}${p.gradCheckpoint ? " ckpt" : ""} steps ${p.steps} (${p.epochs.toFixed(2)} epochs) peak ${(p.peakBytes / GiB).toFixed(2)} GiB of ${(p.budgetBytes / GiB).toFixed(2)} GiB, ${p.seconds === null ? "no time" : `${Math.round(p.seconds)} s`}; ${p.notes.join(" ")}`);
  return p;
}

function assertSane(p: TrainingPlan, device: DeviceDescription): void {
  assert.ok(p.fits, p.notes.join(" "));
  assert.ok(p.peakBytes <= p.budgetBytes, `${p.peakBytes} > ${p.budgetBytes}`);
  assert.equal(p.budgetBytes, HEADROOM * (device.freeBytes ?? device.totalBytes));
  assert.equal(p.batch * p.gradAccum, SEQUENCES_PER_STEP, "accumulation keeps the sequences per step");
  assert.ok(p.seqLen >= 128 && p.rank >= 4 && p.steps >= 20 && p.steps <= 2000);
  assert.equal(p.alpha, 2 * p.rank);
  assert.ok(p.seconds !== null && p.seconds > 0);
}

before(() => {
  dir = tempDir("plan");
  estimator = new EstimatorProcess();
});
after(() => {
  estimator.close();
  removeDir(dir);
});

describe("planTraining on recorded devices", () => {
  test("H200 141 GB, Qwen2.5-Coder 7B: everything fits at once: full micro-batch, long windows, stored weights", async () => {
    const p = await plan(H200, "qwen2.5-coder-7b", MEDIUM_REPO);
    assertSane(p, H200);
    assert.deepEqual([p.batch, p.gradAccum, p.seqLen, p.baseWeights, p.rank], [8, 1, 512, "keep", 16]);
    assert.ok(Math.abs(p.epochs - 3) < 0.05, `about three passes over the data, got ${p.epochs}`);
    assert.ok(p.seconds! < 3600, `a 2M-token repository on an H200 takes minutes, got ${p.seconds}`);
  });

  test("RTX 4090 24 GB: the 7B fits with a smaller micro-batch and gradient accumulation", async () => {
    const p = await plan(RTX4090, "qwen2.5-coder-7b", MEDIUM_REPO);
    assertSane(p, RTX4090);
    assert.ok(p.batch < 8 && p.gradAccum > 1, `batch ${p.batch} x ${p.gradAccum}`);
    assert.equal(p.baseWeights, "keep");
    const small = await plan(RTX4090, "qwen2.5-coder-1.5b", MEDIUM_REPO);
    assertSane(small, RTX4090);
    assert.equal(small.batch, 8);
  });

  test("RTX 4090 24 GB, an F16 7B of your own: trained on a quantized copy of the base weights", async () => {
    const p = await plan(RTX4090, "qwen-7b-f16", MEDIUM_REPO);
    assertSane(p, RTX4090);
    assert.notEqual(p.baseWeights, "keep");
    assert.ok(p.notes.some((n) => n.includes(`${p.baseWeights.toUpperCase()} copy`)), p.notes.join(" "));
  });

  test("RTX 4070 12 GB, an F16 7B of your own: 4-bit base weights when nothing less compact fits", async () => {
    const p = await plan(RTX4070, "qwen-7b-f16", MEDIUM_REPO);
    assert.ok(p.fits, p.notes.join(" "));
    assert.ok(p.peakBytes <= p.budgetBytes);
    assert.equal(p.baseWeights, "q4_0");
    assert.match(p.notes.join(" "), /trains on a Q4_0 copy/);
  });

  test("an 8 GB laptop GPU: the 1.5B fits with accumulation; the 7B does not, and the plan says what to do", async () => {
    const p = await plan(LAPTOP8, "qwen2.5-coder-1.5b", MEDIUM_REPO);
    assertSane(p, LAPTOP8);
    const big = await plan(LAPTOP8, "qwen2.5-coder-7b", MEDIUM_REPO);
    assert.equal(big.fits, false);
    assert.ok(big.peakBytes > big.budgetBytes);
    assert.match(big.notes.join(" "), /does not fit for training on NVIDIA GeForce RTX 4060 Laptop GPU.*Choose a smaller model/);
  });

  test("Apple M2 16 GB (MPS): the 1.5B fits in the recommended working set", async () => {
    const p = await plan(M2, "qwen2.5-coder-1.5b", MEDIUM_REPO);
    assertSane(p, M2);
  });

  test("CPU only, 16 GB: the run fits in RAM, takes long, and the plan suggests the smallest model", async () => {
    const p = await plan(CPU16, "qwen2.5-coder-1.5b", MEDIUM_REPO);
    assertSane(p, CPU16);
    assert.equal(p.seqLen, 256, "shorter windows on the CPU");
    const gpu = await plan(H200, "qwen2.5-coder-1.5b", MEDIUM_REPO);
    assert.ok(p.seconds! > 100 * gpu.seconds!, `CPU ${p.seconds} s against H200 ${gpu.seconds} s`);
    const note = p.notes.join(" ");
    assert.match(note, /No GPU: training runs on the CPU\. Qwen2\.5-Coder 0\.5B trains about \d+ times faster \(about [\d.]+ (h|min)\)/);
    const smallest = await plan(CPU16, "qwen2.5-coder-0.5b", MEDIUM_REPO);
    assert.ok(smallest.seconds! < p.seconds! / 2);
  });

  test("a small repository gets a lower rank and still about three passes, within the step bounds", async () => {
    const p = await plan(RTX4090, "qwen2.5-coder-1.5b", SMALL_REPO);
    assertSane(p, RTX4090);
    assert.equal(p.rank, rankFor(SMALL_REPO));
    assert.ok(p.rank < 16);
    assert.ok(p.epochs >= 3, `${p.epochs}`);
  });

  test("the user's edits are kept and the rest is planned around them", async () => {
    const p = await plan(LAPTOP8, "qwen2.5-coder-1.5b", MEDIUM_REPO, { fixed: { rank: 32, seqLen: 1024, steps: 100 } });
    assert.deepEqual([p.rank, p.seqLen, p.steps], [32, 1024, 100]);
    // Long windows on 8 GB: they fit only with gradient checkpointing.
    assert.ok(p.fits && p.peakBytes <= p.budgetBytes, p.notes.join(" "));
    assert.equal(p.gradCheckpoint, true);
    const tooLong = await plan(LAPTOP8, "qwen2.5-coder-1.5b", MEDIUM_REPO, { fixed: { rank: 64, seqLen: 8192 } });
    assert.deepEqual([tooLong.rank, tooLong.seqLen, tooLong.fits], [64, 8192, false]);
    assert.match(tooLong.notes.join(" "), /with your rank 64, seqLen 8192 and the smallest of the other settings need about [\d.]+ GiB .* Lower the values you set/);
  });
});

describe("time from a measured run", () => {
  test("scales seconds per token by the tokens and the model's size", () => {
    const measured = { device: "cuda", trainSeconds: 600, steps: 200, tokensPerStep: 2048, params: 1.5e9 };
    assert.equal(secondsFromMeasured(measured, { steps: 400, tokensPerStep: 2048, params: 1.5e9 }), 1200);
    assert.equal(secondsFromMeasured(measured, { steps: 200, tokensPerStep: 4096, params: 3e9 }), 2400);
    assert.equal(secondsFromMeasured({ ...measured, steps: 0 }, { steps: 1, tokensPerStep: 1, params: null }), null);
  });

  test("a plan on the device of a measured run uses it instead of the throughput guess", async () => {
    const measured = { device: "cuda", trainSeconds: 300, steps: 100, tokensPerStep: 8 * 512, params: shapeOf(catalogModel("qwen2.5-coder-1.5b")).params };
    const p = await plan(H200, "qwen2.5-coder-1.5b", MEDIUM_REPO, { measured });
    assert.match(p.timeBasis, /last run on this device \(100 steps in 300 s\)/);
    assert.ok(Math.abs(p.seconds! - 3 * p.steps) < 1e-6, `3 s per step of the same size: ${p.seconds} for ${p.steps} steps`);
  });
});

describe("trainerEstimator (through src/core/memoryEstimate.ts)", () => {
  test("gives the trainer estimator's figure for a stored-weights run", async () => {
    const file = await modelFile("qwen2.5-coder-0.5b", catalogModel("qwen2.5-coder-0.5b").spec);
    const settings = { seqLen: 256, batch: 2, rank: 8, baseWeights: "keep" as const, gradCheckpoint: false };
    const viaModule = await trainerEstimator({ python, trainerRoot, modelPath: file, device: "cuda" })(settings);
    const viaProcess = await cliEstimator(file, H200)(settings);
    assert.deepEqual(viaModule, viaProcess);
  });

  test("options the estimator did not estimate are not planned with, and the plan says so", async () => {
    const file = await modelFile("qwen-7b-f16", F16_7B);
    // An estimator that always answers for the stored weights without checkpointing, as memoryEstimate.ts does until
    // it passes --base-weights and --grad-checkpoint.
    const plain: Estimator = async (s) => cliEstimator(file, RTX4090)({ ...s, baseWeights: "keep", gradCheckpoint: false });
    const p = await planTraining({ device: RTX4090, model: shapeOfSpec(F16_7B), datasetTokens: MEDIUM_REPO, estimate: plain });
    assert.equal(p.baseWeights, "keep");
    assert.equal(p.gradCheckpoint, false);
    assert.match(p.notes.join(" "), /could not estimate gradient checkpointing or a quantized copy/);

    // Shorter windows and lower ranks are still tried, from the cheapest settings it could estimate.
    const small = catalogModel("qwen2.5-coder-1.5b");
    const smallFile = await modelFile(small.id, small.spec);
    const plainSmall: Estimator = async (s) => cliEstimator(smallFile, GTX1650)({ ...s, baseWeights: "keep", gradCheckpoint: false });
    const shrunk = await planTraining({ device: GTX1650, model: shapeOf(small), datasetTokens: MEDIUM_REPO, estimate: plainSmall });
    assert.ok(shrunk.fits, shrunk.notes.join(" "));
    assert.equal(shrunk.gradCheckpoint, false);
    assert.ok(shrunk.seqLen < 512 || shrunk.rank < 16, `seq ${shrunk.seqLen} rank ${shrunk.rank}`);
    assert.ok(shrunk.peakBytes <= shrunk.budgetBytes);
  });
});
