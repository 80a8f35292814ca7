// A deterministic POSIX ustar writer and a strict reader for policy bundles.
//
// Written archives hold regular files only, in the order given, each with mode
// 0644, uid/gid 0, empty user and group names, and one fixed mtime: the same
// entries always give the same bytes. The archive ends with two zero blocks and
// is not padded to a 10 KiB record (POSIX allows it; tar, skopeo and Go read it).
//
// The reader accepts only what the writer produces in shape: ustar regular
// files with safe relative paths, no links, devices, directories, PAX or GNU
// extension headers, no duplicates, nothing but zeros after the end marker.
import { SupplyError } from "./errors.js";

export interface TarEntry {
  path: string;
  data: Uint8Array;
}

const BLOCK = 512;
const utf8 = new TextEncoder();

function invalid(why: string): SupplyError {
  return new SupplyError("invalid-bundle", `the bundle is not a valid archive: ${why}`);
}

/** A relative path of non-empty segments, no "." or "..", no backslashes or control characters. */
export function isSafePath(path: string): boolean {
  if (path.length === 0 || path.startsWith("/") || path.endsWith("/")) return false;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\\\u0000-\u001f\u007f]/.test(path)) return false;
  return path.split("/").every((s) => s !== "" && s !== "." && s !== "..");
}

function octal(value: number, width: number): string {
  const text = value.toString(8);
  if (text.length > width - 1) throw invalid(`value ${value} does not fit the header`);
  return `${text.padStart(width - 1, "0")}\0`;
}

function splitPath(path: string): { name: Uint8Array; prefix: Uint8Array } {
  const whole = utf8.encode(path);
  if (whole.length <= 100) return { name: whole, prefix: new Uint8Array(0) };
  // Split at a "/" so that the prefix fits 155 bytes and the name 100.
  for (let i = path.lastIndexOf("/"); i > 0; i = path.lastIndexOf("/", i - 1)) {
    const prefix = utf8.encode(path.slice(0, i));
    const name = utf8.encode(path.slice(i + 1));
    if (prefix.length <= 155 && name.length <= 100) return { name, prefix };
  }
  throw new SupplyError("usage", `the path ${path} is too long for a bundle (at most 255 bytes, 100 after the last /)`);
}

function header(path: string, size: number, mtime: number): Uint8Array {
  const h = new Uint8Array(BLOCK);
  const put = (text: string | Uint8Array, offset: number) =>
    h.set(typeof text === "string" ? utf8.encode(text) : text, offset);
  const { name, prefix } = splitPath(path);
  put(name, 0);
  put(octal(0o644, 8), 100);
  put(octal(0, 8), 108);
  put(octal(0, 8), 116);
  put(octal(size, 12), 124);
  put(octal(mtime, 12), 136);
  put("        ", 148); // checksum field counts as spaces while summing
  put("0", 156);
  put("ustar\u000000", 257);
  put(prefix, 345);
  let sum = 0;
  for (const b of h) sum += b;
  put(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  return h;
}

/** Packs the entries, in the order given, into a ustar archive. */
export function writeTar(entries: readonly TarEntry[], mtime: number): Buffer {
  const seen = new Set<string>();
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    if (!isSafePath(e.path)) throw new SupplyError("usage", `"${e.path}" is not a safe relative path for a bundle`);
    if (seen.has(e.path)) throw new SupplyError("usage", `"${e.path}" is in the bundle twice`);
    seen.add(e.path);
    parts.push(header(e.path, e.data.length, mtime), e.data);
    const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return Buffer.concat(parts);
}

function field(h: Uint8Array, offset: number, length: number): string {
  const raw = h.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return Buffer.from(end < 0 ? raw : raw.subarray(0, end)).toString("utf8");
}

function readOctal(h: Uint8Array, offset: number, length: number, what: string): number {
  const text = field(h, offset, length).trim();
  if (!/^[0-7]{1,12}$/.test(text)) throw invalid(`the ${what} field is not an octal number`);
  return Number.parseInt(text, 8);
}

/** Reads a ustar archive strictly; every entry is a regular file with a safe, unique path. */
export function readTar(bytes: Uint8Array, limits: { maxEntries: number; maxEntryBytes: number }): TarEntry[] {
  const out: TarEntry[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (;;) {
    if (offset + BLOCK > bytes.length) throw invalid("it ends without the end-of-archive marker");
    const h = bytes.subarray(offset, offset + BLOCK);
    if (h.every((b) => b === 0)) {
      // End of archive: two zero blocks, then (at most) zero padding.
      if (offset + 2 * BLOCK > bytes.length || !bytes.subarray(offset, offset + 2 * BLOCK).every((b) => b === 0))
        throw invalid("the end-of-archive marker is incomplete");
      if (!bytes.subarray(offset + 2 * BLOCK).every((b) => b === 0)) throw invalid("there is data after the end");
      return out;
    }
    if (field(h, 257, 6) !== "ustar" || h[262] !== 0 || field(h, 263, 2) !== "00")
      throw invalid("an entry is not in ustar format");
    const stored = readOctal(h, 148, 8, "checksum");
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    if (sum !== stored) throw invalid("a header checksum is wrong");
    const type = h[156];
    const prefix = field(h, 345, 155);
    const path = prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100);
    if (type !== 0x30 && type !== 0)
      throw invalid(`"${path}" is not a regular file (links and directories are refused)`);
    if (!isSafePath(path)) throw invalid(`"${path}" is not a safe relative path`);
    if (seen.has(path)) throw invalid(`"${path}" appears twice`);
    seen.add(path);
    const size = readOctal(h, 124, 12, "size");
    if (size > limits.maxEntryBytes) throw invalid(`"${path}" is larger than ${limits.maxEntryBytes} bytes`);
    const start = offset + BLOCK;
    if (start + size > bytes.length) throw invalid(`"${path}" is cut short`);
    out.push({ path, data: bytes.subarray(start, start + size) });
    if (out.length > limits.maxEntries) throw invalid(`more than ${limits.maxEntries} entries`);
    offset = start + Math.ceil(size / BLOCK) * BLOCK;
  }
}
