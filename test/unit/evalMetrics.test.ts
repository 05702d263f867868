// Evaluation metrics on known values, the bootstrap intervals against synthetic data whose truth is known, and the
// keep-or-reject rule with its message.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  bootstrapMean, commonPrefixLength, editSimilarity, resampleIndices, score, summarize, type ScoredTask,
} from "../../src/core/eval/metrics";
import { decide, MIN_TASKS_TO_KEEP } from "../../src/core/eval/decision";
import { evaluationTable } from "../../src/core/eval/report";
import { rng } from "../../src/core/dataset/random";
import { EvaluationSummary } from "../../src/protocol/run";

/** Standard normal draws (Box-Muller) from a seeded generator. */
function normals(seed: number, n: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - r.next())) * Math.cos(2 * Math.PI * r.next()));
}

const scores = (editSimilarity: number) => ({ exactMatch: editSimilarity === 1 ? 1 : 0, editSimilarity, acceptedChars: 0 });

describe("per-task metrics", () => {
  test("edit similarity is 1 - Levenshtein distance / the longer length", () => {
    assert.equal(editSimilarity("kitten", "sitting"), 1 - 3 / 7);
    assert.equal(editSimilarity("same", "same"), 1);
    assert.equal(editSimilarity("", ""), 1);
    assert.equal(editSimilarity("abc", ""), 0);
    assert.equal(editSimilarity("abc", "xyz"), 0);
    assert.equal(editSimilarity("return sum;", "return total;"), 1 - 5 / 13);
  });

  test("accepted characters are the common prefix; exact match is all or nothing", () => {
    assert.equal(commonPrefixLength("foobar", "foobaz"), 5);
    assert.equal(commonPrefixLength("", "abc"), 0);
    assert.equal(commonPrefixLength("abc", "abc"), 3);
    assert.deepEqual(score('zebra-quartz-42";', 'zebra-quartz-42";'), { exactMatch: 1, editSimilarity: 1, acceptedChars: 17 });
    assert.deepEqual(score("zebra", 'zebra-quartz-42";'), { exactMatch: 0, editSimilarity: 1 - 12 / 17, acceptedChars: 5 });
  });
});

describe("bootstrap intervals", () => {
  test("the 95% interval of a mean covers the truth about 95% of the time", () => {
    // 300 synthetic data sets of 60 tasks each, true mean 0.3: the share of intervals that contain 0.3 is the
    // interval's real coverage (a percentile bootstrap runs a little under nominal at this size).
    let covered = 0;
    const sets = 300;
    for (let k = 0; k < sets; k++) {
      const values = normals(1000 + k, 60).map((z) => 0.3 + 0.2 * z);
      const i = bootstrapMean(values, resampleIndices(values.length, { seed: k }));
      assert.ok(i.lo <= i.mean && i.mean <= i.hi);
      if (i.lo <= 0.3 && 0.3 <= i.hi) covered++;
    }
    const coverage = covered / sets;
    assert.ok(coverage >= 0.88 && coverage <= 0.99, `coverage ${coverage}`);
  });

  test("pairing: a small consistent gain is resolved although the tasks vary far more than the gain", () => {
    // Task difficulty varies a lot (shared by both models); the adapter is 0.03 better on every task, plus noise.
    const difficulty = normals(7, 200).map((z) => 0.5 + 0.2 * z);
    const noise = normals(8, 200).map((z) => 0.01 * z);
    const tasks: ScoredTask[] = difficulty.map((d, i) => ({ language: "TypeScript", base: scores(d), adapter: scores(d + 0.03 + noise[i]) }));
    const s = summarize(tasks, { seed: 0 });
    const d = s.diff.editSimilarity;
    assert.ok(Math.abs(d.mean - 0.03) < 0.005, `mean ${d.mean}`);
    assert.ok(d.lo > 0.025 && d.hi < 0.035 && d.lo <= 0.03 && 0.03 <= d.hi, `paired interval ${d.lo}..${d.hi}`);
    // Unpaired, the two means' intervals overlap: without pairing the gain would not be shown.
    assert.ok(s.adapter.editSimilarity.lo < s.base.editSimilarity.hi);
  });

  test("no difference gives an interval around zero; the same seed gives the same numbers", () => {
    const a = normals(21, 150).map((z) => 0.4 + 0.2 * z);
    const b = normals(22, 150).map((z) => 0.4 + 0.2 * z);
    const tasks: ScoredTask[] = a.map((x, i) => ({ language: "Go", base: scores(x), adapter: scores(b[i]) }));
    const s = summarize(tasks, { seed: 5 });
    assert.ok(s.diff.editSimilarity.lo < 0 && s.diff.editSimilarity.hi > 0, JSON.stringify(s.diff.editSimilarity));
    assert.deepEqual(summarize(tasks, { seed: 5 }), s);
  });

  test("per language: each language's tasks summarised apart, sorted by name", () => {
    const tasks: ScoredTask[] = [
      { language: "Python", base: scores(0.2), adapter: scores(1) },
      { language: "Go", base: scores(0.5), adapter: scores(0.5) },
      { language: "Python", base: scores(0.4), adapter: scores(0.6) },
    ];
    const s = summarize(tasks, { seed: 0 });
    assert.deepEqual(s.byLanguage.map((l) => [l.language, l.tasks]), [["Go", 1], ["Python", 2]]);
    const py = s.byLanguage[1];
    assert.ok(Math.abs(py.base.editSimilarity.mean - 0.3) < 1e-12 && Math.abs(py.adapter.editSimilarity.mean - 0.8) < 1e-12);
    assert.ok(Math.abs(py.diff.editSimilarity.mean - 0.5) < 1e-12);
    assert.equal(py.adapter.exactMatch.mean, 0.5);
    assert.ok(Math.abs(s.diff.editSimilarity.mean - 1 / 3) < 1e-12);
  });
});

describe("keep or reject", () => {
  function summaryOf(base: number[], adapter: number[]) {
    const tasks = base.map((b, i) => ({ language: "TypeScript", base: scores(b), adapter: scores(adapter[i]) }));
    return summarize(tasks, { seed: 0 });
  }

  test("kept when the lower bound of the edit-similarity gain is above zero, with the numbers in the reason", () => {
    const s = summaryOf(normals(1, 40).map((z) => 0.3 + 0.1 * z), normals(2, 40).map((z) => 0.8 + 0.1 * z));
    const d = decide(40, s.base, s.adapter, s.diff);
    assert.equal(d.keep, true);
    assert.match(d.reason, /^The adapter completes held-out code better: on 40 completions, edit similarity \d+\.\d% with the adapter against \d+\.\d% for the base model \(\+\d+\.\d points, 95% interval \+\d+\.\d to \+\d+\.\d\)\.$/);
  });

  test("rejected when the interval reaches zero or the adapter is worse, saying that it can be activated anyway", () => {
    const noise = summaryOf(normals(3, 40).map((z) => 0.5 + 0.2 * z), normals(4, 40).map((z) => 0.51 + 0.2 * z));
    const d = decide(40, noise.base, noise.adapter, noise.diff);
    assert.equal(d.keep, false);
    assert.ok(noise.diff.editSimilarity.lo <= 0);
    assert.match(d.reason, /95% interval [−+]\d+\.\d to [−+]\d+\.\d\); (the gain is within the noise|it is no better than the base model)\. .*activate this adapter anyway\.$/);
    const worse = summaryOf(Array(40).fill(0.6), Array(40).fill(0.2));
    const w = decide(40, worse.base, worse.adapter, worse.diff);
    assert.equal(w.keep, false);
    assert.match(w.reason, /edit similarity 20\.0% with the adapter against 60\.0% for the base model \(−40\.0 points/);
  });

  test("too few tasks prove nothing, however large the gain", () => {
    const s = summaryOf(Array(MIN_TASKS_TO_KEEP - 1).fill(0), Array(MIN_TASKS_TO_KEEP - 1).fill(1));
    const d = decide(MIN_TASKS_TO_KEEP - 1, s.base, s.adapter, s.diff);
    assert.equal(d.keep, false);
    assert.match(d.reason, /^Only 9 completion tasks could be drawn from the held-out files, too few to show a gain/);
  });

  test("the table shows the three metrics with intervals, the loss, each language and the decision", () => {
    const s = summaryOf([0.2, 0.3, 0.1, 0.2, 0.25, 0.3, 0.2, 0.1, 0.2, 0.3, 0.2], [0.9, 0.8, 1, 0.9, 0.85, 1, 0.9, 0.8, 0.9, 1, 0.95]);
    const summary = EvaluationSummary.parse({
      taskCount: 11, kinds: { line: 6, "next-line": 5 }, files: 2, ...s,
      loss: { base: 2.5, adapter: 0.5, perplexityBase: Math.exp(2.5), perplexityAdapter: Math.exp(0.5), adapterStep: 90 },
      settings: { seed: 0, maxTasks: 200, windowTokens: 128, maxTokens: 48, resamples: 1000 },
      seconds: 1.25, decision: decide(11, s.base, s.adapter, s.diff),
    });
    const table = evaluationTable(summary);
    assert.match(table, /^held-out evaluation: 11 completions in 2 files \(line 6, next-line 5\); window 128 tokens, up to 48 generated; 1\.3 s/);
    assert.match(table, /\nedit similarity +21\.4% \(\d+\.\d-\d+\.\d\) +90\.9% \(\d+\.\d-\d+\.\d\) +\+69\.5 points \(\+\d+\.\d to \+\d+\.\d\)\n/);
    assert.match(table, /\nexact match +0\.0% \(0\.0-0\.0\) +27\.3% /);
    assert.match(table, /\naccepted chars +0\.0 \(0\.0-0\.0\) /);
    assert.match(table, /\nvalidation loss +2\.5000 \(ppl 12\.18\) +0\.5000 \(ppl 1\.65\) +−80\.0%, best step 90\n/);
    assert.match(table, /\nTypeScript +11 +21\.4% +90\.9% +\+69\.5 points/);
    assert.match(table, /\nkept: The adapter completes held-out code better/);
  });
});
