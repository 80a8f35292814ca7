// Durations as policies write them: "30s", "5m", "2h", "1d", or combined "1h30m".

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(?:\d+(?:ms|s|m|h|d))+$/;
const PART = /(\d+)(ms|s|m|h|d)/g;

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(PART)) total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return Number.isSafeInteger(total) ? total : undefined;
}

export function durationCheck(minMs: number, maxMs: number) {
  return (text: string): string | undefined => {
    const ms = parseDuration(text);
    if (ms === undefined) return `"${text}" is not a duration; write a number and a unit, e.g. 30s, 5m, 2h or 1d`;
    if (ms < minMs || ms > maxMs)
      return `${text} is outside the allowed range ${formatDuration(minMs)}–${formatDuration(maxMs)}`;
    return undefined;
  };
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
