/**
 * Hugging Face tokenizers: load a `tokenizer.json` (with the `tokenizer_config.json` beside it,
 * when there is one) from a file, a string or the Hub, through `npm:@huggingface/tokenizers`.
 *
 * Every tokenizer here implements {@linkcode TextTokenizer}: `encode` adds no special tokens
 * (the dataset adds eos and the decoder start), `decode` skips them.
 *
 * A malformed file is rejected with a one-line error naming the file and the problem
 * (`tok.json: invalid JSON at line 3, column 1: expected a double-quoted property name`,
 * `tok.json: missing "model"`, `tok.json: unknown model type "Foo" ...`).
 *
 * @example Load a tokenizer and encode a sentence
 * ```ts ignore
 * import { loadTokenizer } from "@webseq/webseq";
 * const tok = await loadTokenizer("runs/demo/tokenizer.json");
 * const ids = tok.encode("Merhaba dünya");
 * console.log(ids, tok.decode(ids));
 * ```
 *
 * @module
 */
import { Tokenizer } from "@huggingface/tokenizers";
import type { TextTokenizer } from "./tokenizer_types.ts";
import { type TrainedTokenizer, trainedTokenizerFromObject } from "./bpe_trainer.ts";
import { envVar, joinPath, webseqCacheDir } from "./cache_dir.ts";
import { errorLine } from "../tensor/errors.ts";
import { writeFileAtomic } from "../train/atomic.ts";

export type { TextTokenizer } from "./tokenizer_types.ts";

/** Model types that `@huggingface/tokenizers` implements. */
const MODEL_TYPES = ["BPE", "WordPiece", "Unigram"];

/** Options of {@linkcode tokenizerFromJson}. */
export interface TokenizerFromJsonOptions {
  /** Text of the `tokenizer_config.json` that goes with the tokenizer, if any. */
  configJson?: string;
  /** Name of the config in error messages. Default: `tokenizer_config.json`. */
  configSource?: string;
  /**
   * Encode and decode a tokenizer of the shape `trainBpe` writes with webseq's own encoder,
   * which gives the library's ids (tested), a little faster (1.1× on a 200,000-pair corpus).
   * Default: true.
   */
  fastPath?: boolean;
}

/** Whether a `tokenizer_config.json` asks the library for something the fast path does not do. */
function configNeedsLibrary(config: Record<string, unknown>, tokenizer: Record<string, unknown>) {
  if (config.clean_up_tokenization_spaces === true) return true;
  if (config.remove_space === true || config.do_lowercase_and_remove_accent === true) return true;
  const extra = config.additional_special_tokens;
  if (!Array.isArray(extra) || extra.length === 0) return false;
  const added = (tokenizer.added_tokens as { content: string; special?: boolean }[])
    .filter((t) => t.special).map((t) => t.content);
  return extra.some((t) => !added.includes(t));
}

/** A `tokenizer.json` loaded with `@huggingface/tokenizers`. */
export class HfTokenizer implements TextTokenizer {
  /** Where the tokenizer came from (a path, URL or `"<string>"`), for messages. */
  readonly source: string;
  /** Number of ids: one more than the largest id of the vocab and the added tokens. */
  readonly vocabSize: number;
  /** Special (added) tokens by content, with their ids. */
  readonly specialTokens: ReadonlyMap<string, number>;
  /** The parsed `tokenizer_config.json`, or an empty object when there was none. */
  readonly config: Readonly<Record<string, unknown>>;
  #tok: Tokenizer;
  #json: string;
  #vocab: readonly (string | undefined)[];
  #cleanUp: boolean;
  #fast: TrainedTokenizer | null;

  /** Use {@linkcode tokenizerFromJson} or {@linkcode loadTokenizer} rather than this. */
  constructor(
    tok: Tokenizer,
    json: string,
    config: Record<string, unknown>,
    source: string,
    fast: TrainedTokenizer | null = null,
  ) {
    this.source = source;
    this.#fast = fast;
    this.#tok = tok;
    this.#json = json;
    this.config = config;
    // The library keeps the id → token table (added tokens included) on its model.
    this.#vocab = (tok.model as unknown as { vocab: (string | undefined)[] }).vocab;
    this.vocabSize = this.#vocab.length;
    const specials = new Map<string, number>();
    for (const [id, t] of tok.get_added_tokens_decoder()) {
      if (t.special) specials.set(t.content, id);
    }
    this.specialTokens = specials;
    // Exact round trips by default; a config may ask for the legacy " ." → "." clean-up.
    this.#cleanUp = config.clean_up_tokenization_spaces === true;
  }

  /** Ids of `text`, no special tokens added. */
  encode(text: string): number[] {
    if (typeof text !== "string") {
      throw new TypeError(`encode() needs a string, got ${typeof text}`);
    }
    if (text.length === 0) return [];
    if (this.#fast) return this.#fast.encode(text);
    return this.#tok.encode(text, { add_special_tokens: false }).ids;
  }

  /** Whether encode/decode take webseq's fast path (see {@linkcode TokenizerFromJsonOptions}). */
  get fastPath(): boolean {
    return this.#fast !== null;
  }

  /** Text of `ids`, special tokens skipped. Throws RangeError for an id outside the vocab. */
  decode(ids: readonly number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id)) throw new TypeError(`decode() needs integer ids, got ${id}`);
      if (id < 0 || id >= this.vocabSize || this.#vocab[id] === undefined) {
        throw new RangeError(`Token id ${id} is not in the vocab (size ${this.vocabSize})`);
      }
    }
    if (ids.length === 0) return "";
    if (this.#fast) return this.#fast.decode(ids);
    return this.#tok.decode([...ids], {
      skip_special_tokens: true,
      clean_up_tokenization_spaces: this.#cleanUp,
    });
  }

  /** The id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#tok.token_to_id(token);
  }

  /** The token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.#vocab[id];
  }

  /** The tokens (strings) of `text`, no special tokens added: handy for debugging. */
  tokenize(text: string): string[] {
    if (text.length === 0) return [];
    if (this.#fast) return this.#fast.tokenize(text);
    return this.#tok.encode(text, { add_special_tokens: false }).tokens;
  }

  /** The tokenizer as the `tokenizer.json` string it was made from. */
  toJson(): string {
    return this.#json;
  }
}

/**
 * A tokenizer from the text of a `tokenizer.json`. `source` names it in error messages.
 * Throws SyntaxError for invalid JSON and TypeError for a file that is not a tokenizer, each
 * with a one-line message.
 */
export function tokenizerFromJson(
  json: string,
  source = "tokenizer.json",
  opts: TokenizerFromJsonOptions = {},
): HfTokenizer {
  const obj = parseJson(json, source);
  const filled = checkTokenizerObject(obj, source);
  let config: Record<string, unknown> = {};
  if (opts.configJson !== undefined) {
    const configSource = opts.configSource ?? "tokenizer_config.json";
    const c = parseJson(opts.configJson, configSource);
    if (!isObject(c)) {
      throw new TypeError(
        `${configSource}: expected a JSON object at the top level, got ${kindOf(c)}`,
      );
    }
    config = c;
  }
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(filled, config);
  } catch (e) {
    throw new TypeError(`${source}: ${errorLine(e)}`);
  }
  const fast = (opts.fastPath ?? true) && !configNeedsLibrary(config, filled)
    ? trainedTokenizerFromObject(filled)
    : null;
  return new HfTokenizer(tok, json, config, source, fast);
}

/**
 * Loads `tokenizer.json` from a file, or from a folder holding one; a `tokenizer_config.json`
 * beside it is read too. Needs `--allow-read`.
 */
export async function loadTokenizer(pathOrDir: string): Promise<HfTokenizer> {
  let path = pathOrDir;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
    if (info.isDirectory) {
      path = joinPath(path, "tokenizer.json");
      info = await Deno.stat(path);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${path}: no such tokenizer file`);
    }
    throw e;
  }
  if (!info.isFile) throw new TypeError(`${path}: not a file`);
  const json = await Deno.readTextFile(path);
  const configPath = joinPath(dirName(path), "tokenizer_config.json");
  let configJson = await readIfThere(configPath);
  // a special_tokens_map.json beside it names the special tokens too (as in transformers,
  // the config's own entries first)
  const mapPath = joinPath(dirName(path), "special_tokens_map.json");
  const mapJson = await readIfThere(mapPath);
  if (mapJson !== undefined) {
    const map = parseJson(mapJson, mapPath);
    if (!isObject(map)) {
      throw new TypeError(
        `${mapPath}: expected a JSON object at the top level, got ${kindOf(map)}`,
      );
    }
    const config = configJson === undefined ? {} : parseJson(configJson, configPath);
    if (isObject(config)) configJson = JSON.stringify({ ...map, ...config });
  }
  return tokenizerFromJson(json, path, { configJson, configSource: configPath });
}

async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Writes `tok` as a `tokenizer.json` at `path` atomically (temporary file, then rename), and
 * the `tokenizer_config.json` it was loaded with (if any) beside it, so the copy decodes as the
 * original does.
 */
export async function saveTokenizer(tok: TextTokenizer, path: string): Promise<void> {
  if (tok instanceof HfTokenizer && Object.keys(tok.config).length > 0) {
    await writeFileAtomic(
      joinPath(dirName(path), "tokenizer_config.json"),
      JSON.stringify(tok.config, null, 2) + "\n",
    );
  }
  await writeFileAtomic(path, tok.toJson());
}

/** The ids of a tokenizer's padding, start and end tokens (those it has). */
export interface SpecialTokenIds {
  /** Padding (`<pad>`, `[PAD]`, …). */
  pad?: number;
  /** Start of a sequence (`<s>`, `[CLS]`, …). */
  bos?: number;
  /** End of a sequence (`</s>`, `[SEP]`, `<|endoftext|>`, …). */
  eos?: number;
}

/**
 * Token strings that mean padding, start and end in widely used tokenizers (T5, BART/RoBERTa,
 * Marian, BERT, GPT-2, LLaMA), tried in this order.
 */
export const KNOWN_SPECIAL_TOKENS: Readonly<Record<keyof SpecialTokenIds, readonly string[]>> = {
  pad: ["<pad>", "[PAD]", "<|pad|>", "<|padding|>"],
  bos: ["<s>", "[CLS]", "<|startoftext|>", "<bos>", "<|begin_of_text|>"],
  eos: ["</s>", "[SEP]", "<|endoftext|>", "<eos>", "<|end_of_text|>", "<|eos|>"],
};

/**
 * The padding, start and end token ids of `tok`: those its `tokenizer_config.json` (or
 * `special_tokens_map.json`) names as `pad_token`, `bos_token`, `eos_token`, else the first of
 * {@linkcode KNOWN_SPECIAL_TOKENS} it holds as a special token. A token the config names but
 * the vocabulary lacks is a TypeError naming the file.
 */
export function specialTokenIds(tok: TextTokenizer): SpecialTokenIds {
  const hf = tok instanceof HfTokenizer ? tok : null;
  const out: SpecialTokenIds = {};
  for (const role of ["pad", "bos", "eos"] as const) {
    const named = hf ? tokenContent(hf.config[`${role}_token`]) : undefined;
    if (named !== undefined) {
      const id = tok.tokenToId(named);
      if (id === undefined) {
        throw new TypeError(
          `${hf!.source}: ${role}_token ${
            JSON.stringify(named)
          } of its config is not in the vocabulary`,
        );
      }
      out[role] = id;
      continue;
    }
    for (const t of KNOWN_SPECIAL_TOKENS[role]) {
      const id = tok.tokenToId(t);
      if (id !== undefined && (!hf || hf.specialTokens.has(t))) {
        out[role] = id;
        break;
      }
    }
  }
  return out;
}

/** A config's special token: a string, or an added-token object's `content`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string" && v !== "") return v;
  if (isObject(v) && typeof v.content === "string" && v.content !== "") return v.content;
  return undefined;
}

/** Options of {@linkcode fetchTokenizerFromHub}. */
export interface HubFetchOptions {
  /** Branch, tag or commit. Default: `main`. */
  revision?: string;
  /**
   * Folder of the download cache. Default: `$WEBSEQ_CACHE/hub`, else
   * `$XDG_CACHE_HOME/webseq/hub`, else `$HOME/.cache/webseq/hub`.
   */
  cacheDir?: string;
  /** The Hub's address. Default: `https://huggingface.co`. */
  endpoint?: string;
  /** The fetch function to use. Default: `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Access token for private or gated models. Default: `$HF_TOKEN` when set. */
  token?: string;
  /** Download again even when the cache holds the files. Default: false. */
  force?: boolean;
  /** Give up a request after this many milliseconds. Default: 60000. */
  timeoutMs?: number;
}

/** Where the cache keeps a Hub model's tokenizer.json (revision "main" unless `opts` says). */
export function hubCachePath(modelId: string, opts: HubFetchOptions = {}): string {
  return joinPath(
    opts.cacheDir ?? defaultCacheDir(),
    `models--${modelId.replace("/", "--")}`,
    (opts.revision ?? "main").replaceAll("/", "--"),
    "tokenizer.json",
  );
}

/**
 * Downloads `tokenizer.json` (and `tokenizer_config.json` when the model has one) of a Hub model
 * into the cache, then loads it. Files already in the cache are used without the network.
 * Files are checked before they enter the cache and are written atomically.
 * Needs `--allow-net` (for the endpoint), `--allow-read`, `--allow-write` (cache) and
 * `--allow-env` (default cache folder, `HF_TOKEN`).
 */
export async function fetchTokenizerFromHub(
  modelId: string,
  opts: HubFetchOptions = {},
): Promise<HfTokenizer> {
  if (!/^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/.test(modelId) || modelId.includes("..")) {
    throw new TypeError(`Invalid Hub model id "${modelId}": expected "name" or "owner/name"`);
  }
  const revision = opts.revision ?? "main";
  if (revision.length === 0 || revision.includes("..") || /[\s\\]/.test(revision)) {
    throw new TypeError(`Invalid Hub revision "${revision}"`);
  }
  const endpoint = (opts.endpoint ?? "https://huggingface.co").replace(/\/+$/, "");
  const tokPath = hubCachePath(modelId, opts);
  const dir = dirName(tokPath);
  if (!opts.force && await isFile(tokPath)) return await loadTokenizer(tokPath);

  const doFetch = opts.fetch ?? globalThis.fetch;
  const token = opts.token ?? envVar("HF_TOKEN");
  const headers: Record<string, string> = { "user-agent": "webseq" };
  if (token) headers.authorization = `Bearer ${token}`;
  const get = async (file: string): Promise<{ url: string; text?: string }> => {
    const url = `${endpoint}/${modelId}/resolve/${encodeURIComponent(revision)}/${file}`;
    let res: Response;
    try {
      res = await doFetch(url, { headers, signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000) });
    } catch (e) {
      // Deno checks --allow-net at every redirect: the Hub sends large files to other hosts
      const host = /Requires net access to "([^"]+)"/.exec(errorLine(e))?.[1];
      if (host) {
        throw new Error(
          `Cannot download ${url}: it redirects to ${host}, which --allow-net does not name (add it: --allow-net=${
            new URL(endpoint).host
          },${host})`,
        );
      }
      throw new Error(`Cannot download ${url}: ${errorLine(e)}`);
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return { url };
    }
    if (!res.ok) {
      await res.body?.cancel();
      const hint = res.status === 401 || res.status === 403
        ? " (private or gated model: set HF_TOKEN or pass a token)"
        : "";
      throw new Error(`Cannot download ${url}: HTTP ${res.status} ${res.statusText}${hint}`);
    }
    try {
      return { url, text: await res.text() };
    } catch (e) {
      throw new Error(`Cannot download ${url}: ${errorLine(e)}`);
    }
  };

  const tokRes = await get("tokenizer.json");
  if (tokRes.text === undefined) {
    throw new Deno.errors.NotFound(
      `Hub model "${modelId}" has no tokenizer.json at revision "${revision}" (HTTP 404 from ${tokRes.url})`,
    );
  }
  const cfgRes = await get("tokenizer_config.json");
  // Check both before anything enters the cache.
  tokenizerFromJson(tokRes.text, tokRes.url, {
    configJson: cfgRes.text,
    configSource: cfgRes.url,
  });
  await Deno.mkdir(dir, { recursive: true });
  const cfgPath = joinPath(dir, "tokenizer_config.json");
  if (cfgRes.text !== undefined) await writeFileAtomic(cfgPath, cfgRes.text);
  else await Deno.remove(cfgPath).catch(() => {});
  // tokenizer.json last: its presence marks a complete download.
  await writeFileAtomic(tokPath, tokRes.text);
  return await loadTokenizer(tokPath);
}

/** Options of {@linkcode resolveTokenizer}. */
export interface ResolveTokenizerOptions extends HubFetchOptions {
  /** Whether a spec that is not a local path may be fetched from the Hub. Default: false. */
  allowNetwork?: boolean;
}

/**
 * A tokenizer from a local file or folder, or else (when `allowNetwork`) from a Hub model id.
 */
export async function resolveTokenizer(
  spec: string,
  opts: ResolveTokenizerOptions = {},
): Promise<HfTokenizer> {
  let exists = true;
  try {
    await Deno.stat(spec);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    exists = false;
  }
  if (exists) return await loadTokenizer(spec);
  // a path (not an "owner/name" Hub id) that is not there
  if (/^(\.{0,2}\/|~)|\.json$|\/.*\//.test(spec)) {
    throw new Deno.errors.NotFound(`${spec}: no such tokenizer file`);
  }
  // a Hub tokenizer fetched before loads from the cache, network or not
  let cachedPath: string | null = null;
  try {
    cachedPath = hubCachePath(spec, opts); // throws without a cache folder (no HOME)
    if (!(await isFile(cachedPath))) cachedPath = null;
  } catch {
    cachedPath = null;
  }
  if (cachedPath && !opts.force) return await loadTokenizer(cachedPath);
  if (!opts.allowNetwork) {
    throw new Deno.errors.NotFound(
      `${spec}: no such tokenizer file (to fetch a Hub model's tokenizer, allow the network)`,
    );
  }
  return await fetchTokenizerFromHub(spec, opts);
}

// --- validation ---------------------------------------------------------------------------

function checkTokenizerObject(obj: unknown, source: string): Record<string, unknown> {
  if (!isObject(obj)) {
    throw new TypeError(`${source}: expected a JSON object at the top level, got ${kindOf(obj)}`);
  }
  if (!("model" in obj)) throw new TypeError(`${source}: missing "model"`);
  const model = obj.model;
  if (!isObject(model)) {
    throw new TypeError(`${source}: "model" must be an object, got ${kindOf(model)}`);
  }
  let type = model.type as string | undefined;
  if (type !== undefined && typeof type !== "string") {
    throw new TypeError(`${source}: "model.type" must be a string, got ${kindOf(type)}`);
  }
  if (type === undefined) {
    // Older files leave the type out; tell it from the fields as the library does.
    if (Array.isArray(model.vocab)) type = "Unigram";
    else if ("merges" in model) type = "BPE";
    else if (isObject(model.vocab)) type = "WordPiece";
    else throw new TypeError(`${source}: "model" has no "type"`);
  }
  if (!MODEL_TYPES.includes(type)) {
    throw new TypeError(
      `${source}: unknown model type "${type}" (supported: ${MODEL_TYPES.join(", ")})`,
    );
  }
  if (type === "Unigram") {
    if (!Array.isArray(model.vocab)) {
      throw new TypeError(`${source}: "model.vocab" of a Unigram model must be an array`);
    }
    model.vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== "string" || typeof e[1] !== "number") {
        throw new TypeError(`${source}: "model.vocab[${i}]" must be a [token, score] pair`);
      }
    });
  } else {
    if (!isObject(model.vocab)) {
      throw new TypeError(`${source}: "model.vocab" of a ${type} model must be an object`);
    }
    for (const [t, id] of Object.entries(model.vocab)) {
      if (!Number.isInteger(id) || (id as number) < 0) {
        throw new TypeError(
          `${source}: "model.vocab" maps ${JSON.stringify(t)} to ${JSON.stringify(id)}, not an id`,
        );
      }
    }
  }
  if (type === "BPE") checkMerges(model.merges, model.vocab as Record<string, number>, source);
  const added = obj.added_tokens ?? [];
  if (!Array.isArray(added)) {
    throw new TypeError(`${source}: "added_tokens" must be an array, got ${kindOf(added)}`);
  }
  added.forEach((t, i) => {
    if (
      !isObject(t) || typeof t.content !== "string" || !Number.isInteger(t.id) ||
      (t.id as number) < 0
    ) {
      throw new TypeError(
        `${source}: "added_tokens[${i}]" needs a string "content" and an integer "id"`,
      );
    }
  });
  const filled: Record<string, unknown> = {
    ...obj,
    model: { ...model, type },
    added_tokens: added,
  };
  for (const part of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) {
    const v = obj[part] ?? null;
    if (v !== null && (!isObject(v) || typeof v.type !== "string")) {
      throw new TypeError(`${source}: "${part}" must be null or an object with a "type"`);
    }
    filled[part] = v;
  }
  return filled;
}

function checkMerges(merges: unknown, vocab: Record<string, number>, source: string): void {
  if (!Array.isArray(merges)) {
    throw new TypeError(`${source}: "model.merges" of a BPE model must be an array`);
  }
  for (let i = 0; i < merges.length; i++) {
    const m = merges[i];
    let pair: unknown[];
    if (typeof m === "string") pair = m.split(" ");
    else if (Array.isArray(m)) pair = m;
    else pair = [];
    if (pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
      throw new TypeError(
        `${source}: "model.merges[${i}]" must be "a b" or ["a", "b"], got ${
          JSON.stringify(m).slice(0, 60)
        }`,
      );
    }
    for (const part of pair as string[]) {
      if (!Object.hasOwn(vocab, part)) {
        throw new TypeError(
          `${source}: "model.merges[${i}]" uses ${JSON.stringify(part)}, which is not in the vocab`,
        );
      }
    }
  }
}

/** JSON.parse with a one-line SyntaxError naming `source`, line and column. */
function parseJson(text: string, source: string): unknown {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (e) {
    const err = locateJsonError(text);
    if (err === null) {
      throw new SyntaxError(`${source}: invalid JSON: ${errorLine(e).slice(0, 120)}`);
    }
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < err.pos && i < text.length; i++) {
      if (text.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    }
    const col = err.pos - lineStart + 1;
    throw new SyntaxError(`${source}: invalid JSON at line ${line}, column ${col}: ${err.reason}`);
  }
}

const JSON_SCALAR = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;

/** Where and why `text` is not JSON (a small validating scanner); null when it is JSON. */
function locateJsonError(text: string): { pos: number; reason: string } | null {
  const n = text.length;
  const stack: string[] = [];
  let i = 0;
  const skipWs = () => {
    while (i < n && " \t\n\r".includes(text[i])) i++;
  };
  const end = () => ({ pos: i, reason: "unexpected end of input" });
  /** Reads a string at text[i] === '"'; returns an error or null. */
  const readString = (): { pos: number; reason: string } | null => {
    i++;
    while (i < n) {
      const c = text[i];
      if (c === '"') {
        i++;
        return null;
      }
      if (c === "\\") {
        const e = text[i + 1];
        if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
        else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else return { pos: i, reason: "bad escape in string" };
      } else if (c < " ") {
        return { pos: i, reason: "control character in string (unescaped line break?)" };
      } else i++;
    }
    return { pos: i, reason: "unterminated string" };
  };
  let state: "value" | "key" | "after" = "value";
  for (;;) {
    skipWs();
    if (state === "value") {
      if (i >= n) return end();
      const c = text[i];
      if (c === "{" || c === "[") {
        stack.push(c);
        i++;
        skipWs();
        if (text[i] === (c === "{" ? "}" : "]")) {
          i++;
          stack.pop();
          state = "after";
        } else state = c === "{" ? "key" : "value";
      } else if (c === '"') {
        const err = readString();
        if (err) return err;
        state = "after";
      } else {
        JSON_SCALAR.lastIndex = i;
        const m = JSON_SCALAR.exec(text);
        if (!m) return { pos: i, reason: `unexpected character ${JSON.stringify(c)}` };
        i += m[0].length;
        state = "after";
      }
    } else if (state === "key") {
      if (i >= n) return end();
      if (text[i] !== '"') return { pos: i, reason: "expected a double-quoted property name" };
      const err = readString();
      if (err) return err;
      skipWs();
      if (i >= n) return end();
      if (text[i] !== ":") return { pos: i, reason: "expected ':' after a property name" };
      i++;
      state = "value";
    } else {
      if (stack.length === 0) {
        return i < n ? { pos: i, reason: "unexpected text after the JSON value" } : null;
      }
      if (i >= n) return end();
      const top = stack[stack.length - 1];
      const close = top === "{" ? "}" : "]";
      if (text[i] === ",") {
        i++;
        state = top === "{" ? "key" : "value";
      } else if (text[i] === close) {
        i++;
        stack.pop();
      } else return { pos: i, reason: `expected ',' or '${close}'` };
    }
  }
}

// --- small helpers ------------------------------------------------------------------------

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : `a ${typeof v}`;
}

function dirName(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function defaultCacheDir(): string {
  try {
    return webseqCacheDir("hub");
  } catch {
    throw new Error("No cache folder: set WEBSEQ_CACHE or HOME, or pass cacheDir");
  }
}
