// Tool name matchers: exact names, or simple globs where "*" stands for any
// run of characters (including none). No other character is special, so a
// tool name can never be misread as a pattern.

export function isGlob(pattern: string): boolean {
  return pattern.includes("*");
}

/** Compiles a glob into a predicate. Exact names compare with ===. */
export function compileGlob(pattern: string): (name: string) => boolean {
  if (!isGlob(pattern)) return (name) => name === pattern;
  if (pattern === "*") return () => true;
  const parts = pattern.split("*");
  const first = parts[0] as string;
  const last = parts[parts.length - 1] as string;
  const middle = parts.slice(1, -1).filter((p) => p !== "");
  const minLength = parts.reduce((n, p) => n + p.length, 0);
  // Linear-time matching: anchor the ends, then find the middle parts left to right.
  return (name) => {
    if (name.length < minLength || !name.startsWith(first) || !name.endsWith(last)) return false;
    let pos = first.length;
    const end = name.length - last.length;
    for (const part of middle) {
      const i = name.indexOf(part, pos);
      if (i < 0 || i + part.length > end) return false;
      pos = i + part.length;
    }
    return true;
  };
}
