/**
 * Differential fuzz of train/safetensors.ts against the reference Rust crate
 * (tools/safetensors_reference): mutated files go through both readers.
 * The reference is the oracle for "loads in PyTorch" (safetensors.torch.load_file
 * calls it). Checks: (1) nothing the reference rejects loads here; (2) files
 * both accept have identical names, dtypes, shapes and bytes; (3) files only
 * the reference accepts are listed by our reason (our extra strictness).
 *
 *   cargo build --release --manifest-path tools/safetensors_reference/Cargo.toml
 *   deno run -A tools/safetensors_differential.ts tools/safetensors_reference/target/release/safetensors_reference 3000
 *
 * @module
 */
import { parseSafetensors, SafetensorsError, serializeSafetensors } from "../train/safetensors.ts";

const [bin, countText = "3000"] = Deno.args;
if (!bin) {
  console.error("usage: safetensors_differential.ts PATH_TO_REFERENCE_BINARY [COUNT]");
  Deno.exit(2);
}
const count = Number(countText);

let seed = 7;
const rand = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
};
const int = (k: number) => Math.floor(rand() * k);

const base = serializeSafetensors({
  a: { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
  b: { dtype: "I32", shape: [3], data: new Int32Array([5, 6, 7]) },
  c: { dtype: "F16", shape: [2], data: new Uint16Array([0x3c00, 0x4000]) },
  d: { dtype: "F32", shape: [0], data: new Float32Array(0) },
}, { format: "pt" });
const n = Number(new DataView(base.buffer).getBigUint64(0, true));
const header = new TextDecoder().decode(base.subarray(8, 8 + n)).trimEnd();
const data = base.subarray(8 + n);

function build(h: string, d: Uint8Array): Uint8Array {
  const hb = new TextEncoder().encode(h);
  const out = new Uint8Array(8 + hb.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(d, 8 + hb.length);
  return out;
}

const TOKENS = [
  '"',
  "{",
  "}",
  "[",
  "]",
  ",",
  ":",
  "0",
  "1",
  "4",
  "8",
  "16",
  "-1",
  "1.0",
  "1e1",
  " ",
  '"a"',
  '"dtype"',
  '"F16"',
  '"BF16"',
  '"U8"',
  '"shape"',
  '"data_offsets"',
  '"__metadata__"',
  "null",
  "\\u0061",
];

function mutate(): Uint8Array {
  const kind = int(6);
  if (kind === 0) {
    const b = base.slice();
    for (let k = 0, m = 1 + int(3); k < m; k++) b[int(b.length)] ^= 1 << int(8);
    return b;
  }
  if (kind === 1) return base.slice(0, int(base.length + 1));
  if (kind === 2) { // token substitution inside the JSON text, length recomputed
    let h = header;
    for (let k = 0, m = 1 + int(2); k < m; k++) {
      const at = int(h.length), len = int(4);
      h = h.slice(0, at) + TOKENS[int(TOKENS.length)] + h.slice(at + len);
    }
    return build(h, data);
  }
  if (kind === 3) { // change one number in the header
    const nums = [...header.matchAll(/\d+/g)];
    const m = nums[int(nums.length)];
    const h = header.slice(0, m.index) + String(int(40)) + header.slice(m.index! + m[0].length);
    return build(h, data);
  }
  if (kind === 4) { // duplicate or drop an entry
    const h = rand() < 0.5 ? header.replace('"b":', '"a":') : header.replace(/,"d":\{[^}]*\}/, "");
    return build(h, data);
  }
  return build(header, data.slice(0, data.length - int(3)).map((x) => x)); // truncate data, keep header
}

const dir = await Deno.makeTempDir();
const files: string[] = [];
for (let i = 0; i < count; i++) {
  const p = `${dir}/${i}.safetensors`;
  await Deno.writeFile(p, mutate());
  files.push(p);
}
const out = new Deno.Command(bin, { args: ["verdict", ...files], stdout: "piped" }).outputSync();
const verdicts = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
const stats = { both_ok: 0, both_reject: 0, only_reference_accepts: 0, only_we_accept: 0 };
const ourReasons = new Map<string, number>();
for (let i = 0; i < files.length; i++) {
  const ref = verdicts[i];
  let ours;
  try {
    ours = parseSafetensors(await Deno.readFile(files[i]), { source: "f" });
  } catch (err) {
    if (!(err instanceof SafetensorsError)) throw new Error(`${files[i]}: ${err}`);
    if (ref.ok) {
      stats.only_reference_accepts++;
      const reason = err.problem.replace(/"[^"]*"/g, '"…"').replace(/\d+/g, "N");
      ourReasons.set(reason, (ourReasons.get(reason) ?? 0) + 1);
    } else stats.both_reject++;
    continue;
  }
  if (!ref.ok) {
    stats.only_we_accept++;
    console.error(`MISMATCH: we accept, reference rejects (${ref.error}): ${files[i]}`);
    continue;
  }
  stats.both_ok++;
  const bytes = await Deno.readFile(files[i]);
  const hn = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hn)));
  const names = Object.keys(ours.tensors).sort();
  if (names.join() !== Object.keys(ref.tensors).sort().join()) {
    console.error(`MISMATCH names: ${files[i]}`);
  }
  for (const name of names) {
    const r = ref.tensors[name], o = ours.tensors[name];
    if (r.dtype !== o.dtype || r.shape.join() !== o.shape.join()) {
      console.error(`MISMATCH ${name}: ${files[i]}`);
    }
    const [b, e] = h[name].data_offsets;
    const raw = bytes.subarray(8 + hn + b, 8 + hn + e);
    const hex = [...raw].map((x) => x.toString(16).padStart(2, "0")).join("");
    if (hex !== r.hex) console.error(`MISMATCH bytes of ${name}: ${files[i]}`);
  }
}
console.log(JSON.stringify(stats));
for (const [reason, k] of [...ourReasons].sort((a, b) => b[1] - a[1])) {
  console.log(`  only we reject (${k}): ${reason}`);
}
await Deno.remove(dir, { recursive: true });
Deno.exit(stats.only_we_accept > 0 ? 1 : 0);
