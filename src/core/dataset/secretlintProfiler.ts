// Stands in for @secretlint/profiler in every bundle (esbuild.mjs aliases the package here). The real profiler puts
// performance marks for every file and rule on the process-wide timeline and keeps them all, matching each new one
// against every earlier one: selecting 5,000 files took 390 s instead of 5 s, memory grew without end, and in the
// extension host the marks would crowd VS Code's own timeline. secretlint only ever calls `mark`.
export class SecretLintProfiler {
  mark(_marker: { type: string; id?: string }): void {}
}

export const secretLintProfiler = new SecretLintProfiler();
