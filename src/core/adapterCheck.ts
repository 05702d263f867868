// Whether an adapter fits the base model that would serve it. A LoRA adapter corrects one set of weights: on another
// model it fails to load when the shapes differ, and when they match (another fine-tune or quantization of the same
// architecture) it loads and silently makes completions worse. So before an adapter is activated:
// - a RepoTune adapter: its run's manifest recorded the base model's size and SHA-256, which must be this model's;
// - any other adapter file: its matrices must fit this model's (architecture and every adapted tensor's shape).
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { fileIdentity, readManifest } from "./runStore";

/** SHA-256 of model files, by path, size and modification time: a multi-GB model is hashed once. */
const identities = new Map<string, Promise<string>>();

async function sha256Of(file: string): Promise<string> {
  const st = await fs.stat(file);
  const key = `${path.resolve(file)}\u0000${st.size}\u0000${st.mtimeMs}`;
  let hit = identities.get(key);
  if (!hit) {
    hit = fileIdentity(file).then((i) => i.sha256);
    identities.set(key, hit);
    hit.catch(() => identities.delete(key));
  }
  return hit;
}

/** Null when `adapterPath` fits `modelPath`; else why not, and what to do, in words. */
export async function adapterMismatch(adapterPath: string, modelPath: string): Promise<string | null> {
  const name = path.basename(adapterPath);
  if (!(await fs.stat(adapterPath).then((s) => s.isFile(), () => false))) {
    return `The adapter ${adapterPath} does not exist (deleted or moved). Choose another adapter, or the base model only.`;
  }
  const manifestPath = path.join(path.dirname(adapterPath), "manifest.json");
  const manifest = await readManifest(manifestPath).catch((err: unknown) => ((err as NodeJS.ErrnoException).code === "ENOENT" ? null : (err as Error)));
  if (manifest instanceof Error) {
    // A RepoTune run whose manifest is damaged: judging the adapter by its shapes alone would accept one trained on
    // another model of the same shape.
    return `The run manifest beside ${name} (${manifestPath}) cannot be read (${manifest.message.split("\n")[0]}), so RepoTune ` +
      "cannot tell which base model the adapter was trained on. Choose another adapter, or fine-tune again.";
  }
  if (manifest && manifest.adapter === name) {
    const base = manifest.baseModel;
    const modelSize = (await fs.stat(modelPath)).size;
    if (base.size !== modelSize || base.sha256 !== (await sha256Of(modelPath))) {
      return `The adapter ${name} was trained on ${path.basename(base.path)} (${base.size.toLocaleString("en-US")} bytes), ` +
        `not on ${path.basename(modelPath)}, the model in repotune.modelPath: it would make completions worse. ` +
        `Set repotune.modelPath back to ${base.path}, or choose an adapter trained on this model.`;
    }
    return null;
  }
  return shapeMismatch(adapterPath, modelPath);
}

/** For an adapter without a RepoTune manifest: the architecture and the shape of every matrix it adapts. */
async function shapeMismatch(adapterPath: string, modelPath: string): Promise<string | null> {
  const { readGgufFileInfo } = await import("node-llama-cpp");
  const read = (file: string) => readGgufFileInfo(file, { logWarnings: false, sourceType: "filesystem", spliceSplitFiles: false });
  const name = path.basename(adapterPath);
  let adapter: Awaited<ReturnType<typeof read>>;
  try {
    adapter = await read(adapterPath);
  } catch (err) {
    return `${name} is not a readable GGUF LoRA adapter (${err instanceof Error ? err.message : String(err)}). Choose an adapter file RepoTune or llama.cpp wrote.`;
  }
  const meta = adapter.metadata as { general?: { type?: string; architecture?: string } };
  const loras = (adapter.fullTensorInfo ?? []).filter((t) => /\.lora_[ab]$/.test(t.name));
  if (meta.general?.type !== "adapter" && loras.length === 0) {
    return `${name} is not a LoRA adapter (it holds no lora_a/lora_b matrices): it may be a model file. Choose an adapter file.`;
  }
  const model = await read(modelPath);
  const modelArch = (model.metadata as { general?: { architecture?: string } }).general?.architecture;
  if (meta.general?.architecture && modelArch && meta.general.architecture !== modelArch) {
    return `${name} adapts a ${meta.general.architecture} model, and repotune.modelPath is a ${modelArch} model. Choose an adapter made for this model.`;
  }
  const shapes = new Map((model.fullTensorInfo ?? []).map((t) => [t.name, t.dimensions.map(Number)]));
  for (const t of loras) {
    const target = t.name.replace(/\.lora_[ab]$/, "");
    const base = shapes.get(target);
    if (!base) return `${name} adapts ${target}, which ${path.basename(modelPath)} does not have: it was made for another model.`;
    // GGUF dimensions run fastest first: a base [n_in, n_out] takes lora_a [n_in, r] and lora_b [r, n_out].
    const [n0, n1] = t.dimensions.map(Number);
    const fits = t.name.endsWith("lora_a") ? n0 === base[0] : n1 === base[1];
    if (!fits) {
      return `${name} adapts ${target} with a ${t.dimensions.join("x")} matrix, which does not fit its ${base.join("x")} shape in ` +
        `${path.basename(modelPath)}: it was made for another model.`;
    }
  }
  return null;
}
