// The static types our CEL checker reasons about. They are coarser than CEL's
// full type system on purpose: enough to reject typos, wrong arities and
// conditions that can never be boolean, and "dyn" wherever the data decides.
import { CelScalar, type CelType } from "@bufbuild/cel";

export type Type =
  | { kind: "dyn" }
  | { kind: "bool" }
  | { kind: "int" }
  | { kind: "uint" }
  | { kind: "double" }
  | { kind: "string" }
  | { kind: "bytes" }
  | { kind: "null" }
  | { kind: "type" }
  | { kind: "timestamp" }
  | { kind: "duration" }
  | { kind: "list"; elem: Type }
  | { kind: "map"; key: Type; value: Type }
  /** A declared record such as `request`: known fields, passed to CEL as a map. */
  | { kind: "object"; name: string; fields: Readonly<Record<string, Type>> };

export const T = {
  dyn: { kind: "dyn" },
  bool: { kind: "bool" },
  int: { kind: "int" },
  uint: { kind: "uint" },
  double: { kind: "double" },
  string: { kind: "string" },
  bytes: { kind: "bytes" },
  null: { kind: "null" },
  type: { kind: "type" },
  timestamp: { kind: "timestamp" },
  duration: { kind: "duration" },
  list: (elem: Type): Type => ({ kind: "list", elem }),
  map: (key: Type, value: Type): Type => ({ kind: "map", key, value }),
  object: (name: string, fields: Record<string, Type>): Type => ({ kind: "object", name, fields }),
} as const satisfies Record<string, Type | ((...a: Type[]) => Type) | ((n: string, f: Record<string, Type>) => Type)>;

export function typeName(t: Type): string {
  switch (t.kind) {
    case "list":
      return `list(${typeName(t.elem)})`;
    case "map":
      return `map(${typeName(t.key)}, ${typeName(t.value)})`;
    case "object":
      return t.name;
    case "timestamp":
      return "google.protobuf.Timestamp";
    case "duration":
      return "google.protobuf.Duration";
    case "null":
      return "null_type";
    default:
      return t.kind;
  }
}

/** Converts the library's declared parameter types into ours. */
export function fromCelType(t: CelType): Type {
  switch (t.kind) {
    case "list":
      return T.list(fromCelType(t.element));
    case "map":
      return T.map(fromCelType(t.key), fromCelType(t.value));
    case "object":
      if (t.name === "google.protobuf.Timestamp") return T.timestamp;
      if (t.name === "google.protobuf.Duration") return T.duration;
      return T.dyn;
    case "scalar":
      switch (t) {
        case CelScalar.INT:
          return T.int;
        case CelScalar.UINT:
          return T.uint;
        case CelScalar.DOUBLE:
          return T.double;
        case CelScalar.BOOL:
          return T.bool;
        case CelScalar.STRING:
          return T.string;
        case CelScalar.BYTES:
          return T.bytes;
        case CelScalar.NULL:
          return T.null;
        case CelScalar.TYPE:
          return T.type;
        default:
          return T.dyn;
      }
  }
}

/** Whether a value of type `actual` could be passed where `param` is expected. dyn on either side could be. */
export function assignable(param: Type, actual: Type): boolean {
  if (param.kind === "dyn" || actual.kind === "dyn") return true;
  if (param.kind === "map" && actual.kind === "object") return true;
  if (param.kind !== actual.kind) return false;
  if (param.kind === "list" && actual.kind === "list") return assignable(param.elem, actual.elem);
  if (param.kind === "map" && actual.kind === "map") {
    return assignable(param.key, actual.key) && assignable(param.value, actual.value);
  }
  return true;
}

export function sameType(a: Type, b: Type): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "list" && b.kind === "list") return sameType(a.elem, b.elem);
  if (a.kind === "map" && b.kind === "map") return sameType(a.key, b.key) && sameType(a.value, b.value);
  if (a.kind === "object" && b.kind === "object") return a.name === b.name;
  return true;
}

/** The one type all of these share, or dyn. */
export function commonType(types: readonly Type[]): Type {
  const first = types[0];
  if (first === undefined) return T.dyn;
  return types.every((t) => sameType(t, first)) ? first : T.dyn;
}
