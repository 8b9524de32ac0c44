// Reading bnoracle golden fixtures in JavaScript (Node.js 18+). JSON.parse reads the files; the
// values are strings, and JavaScript has no parser for hex floats ("0x1.8p+1"), so parseValue
// below is the few lines that do it exactly. docs/fixtures.md, "Reading hex floats".
//
//   node examples/js/fixture.mjs fixtures/corpus/layout/nc_6x3/forward_inference.json
//
// prints, for a fixture (or every fixture under a folder), each value string of its inputs,
// goldens and bounds with the Number it reads as: "path<TAB>field<TAB>string<TAB>number".
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

// A value string of a fixture as a Number: a hex float (exact: its mantissa has at most 53
// bits), "nan", "inf", "-inf", or a decimal (the "exact" arrays, 40 digits: Number rounds them to
// double; their "undefined" and "unspecified" classes read as NaN).
export function parseValue(s) {
  if (s === "nan") return NaN;
  if (s === "inf") return Infinity;
  if (s === "-inf") return -Infinity;
  const m = /^([-+]?)0x([0-9a-f]+)(?:\.([0-9a-f]*))?p([-+]?\d+)$/i.exec(s);
  if (m === null) return Number(s);
  const digits = m[2] + (m[3] ?? "");
  const exponent = Number(m[4]) - 4 * (m[3] ?? "").length;
  // mantissa · 2^exponent in two exact steps: 2^exponent alone may underflow (a subnormal
  // double has exponent -1074 - 52), while the product is representable.
  const first = Math.max(exponent, -1000);
  const v = Number(BigInt("0x" + digits)) * 2 ** first * 2 ** (exponent - first);
  return m[1] === "-" ? -v : v;
}

// A float32 array of a fixture's values: every value string of a float32 tensor is a float32,
// so Math.fround (inside Float32Array) does not round. float16 and bfloat16 values are float32
// values too.
export function float32Array(strings) {
  return Float32Array.from(strings, parseValue);
}

function* valueStrings(fixture) {
  for (const [name, values] of Object.entries(fixture.inputs ?? {})) {
    if (Array.isArray(values)) yield* values.map((s) => [`inputs.${name}`, s]);
  }
  for (const [name, out] of Object.entries(fixture.expected ?? {})) {
    yield* (out.values ?? []).map((s) => [`expected.${name}.values`, s]);
    yield* (out.exact ?? []).map((s) => [`expected.${name}.exact`, s]);
    for (const [level, bounds] of Object.entries(out.bound ?? {})) {
      yield* bounds.map((s) => [`expected.${name}.bound.${level}`, s]);
    }
  }
}

function show(v) {
  return Object.is(v, -0) ? "-0" : String(v);  // String(-0) is "0"
}

function files(path) {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).sort().flatMap((f) => files(join(path, f)));
}

const lines = [];
for (const arg of process.argv.slice(2)) {
  for (const file of files(arg).filter((f) => f.endsWith(".json"))) {
    const fixture = JSON.parse(readFileSync(file, "utf8"));
    if (fixture.schema !== "bnoracle.fixture") continue;
    for (const [field, s] of valueStrings(fixture)) {
      if (typeof s === "string") lines.push(`${file}\t${field}\t${s}\t${show(parseValue(s))}`);
    }
  }
}
process.stdout.write(lines.join("\n") + "\n");
