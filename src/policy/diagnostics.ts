// Problems found while loading policies. Every one names a place in a file and
// says what to do about it; errors stop a policy set from loading, warnings don't.

export type Severity = "error" | "warning";

export interface SourcePosition {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  col: number;
}

export interface Diagnostic extends SourcePosition {
  severity: Severity;
  message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`;
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === "error");
}

/** Thrown when a policy set cannot be used; carries every diagnostic found, not just the first. */
export class PolicyLoadError extends Error {
  override name = "PolicyLoadError";
  constructor(readonly diagnostics: readonly Diagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === "error");
    super(
      `policy set has ${errors.length} error${errors.length === 1 ? "" : "s"}:\n${errors.map(formatDiagnostic).join("\n")}`,
    );
  }
}

/** Collects diagnostics for one source file. */
export class DiagnosticSink {
  readonly items: Diagnostic[] = [];
  /** How many of the items are errors. */
  errors = 0;
  constructor(
    readonly file: string,
    private readonly position: (offset: number) => { line: number; col: number },
  ) {}

  at(offset: number): SourcePosition {
    return { file: this.file, ...this.position(offset) };
  }

  error(offset: number, message: string): void {
    this.errorAt(this.at(offset), message);
  }

  warning(offset: number, message: string): void {
    this.items.push({ ...this.at(offset), severity: "warning", message });
  }

  errorAt(pos: SourcePosition, message: string): void {
    this.items.push({ ...pos, severity: "error", message });
    this.errors++;
  }
}

/** Levenshtein distance, for "did you mean" hints on misspelt keys and values. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] as number;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      prev[j] = Math.min(up + 1, (prev[j - 1] as number) + 1, diag + cost);
      diag = up;
    }
  }
  return prev[b.length] as number;
}

/** The closest candidate, if it is close enough to be a plausible typo. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  const lower = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(lower, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.floor(word.length / 3));
  return bestDistance <= limit ? best : undefined;
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c === undefined ? "" : ` (did you mean "${c}"?)`;
}
