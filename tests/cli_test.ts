/**
 * The command line as a user runs it: real `deno run` processes with the
 * documented permissions, exit codes 0/1/2, one-line errors naming the file,
 * line or field, and JSON output.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;
const CLI = `${ROOT}cli.ts`;

async function webseq(
  args: string[],
  perms: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...perms, CLI, ...args],
    cwd: ROOT,
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A one-step CPU benchmark of the tiny preset on a tiny batch. */
const TINY_BENCH = [
  "bench",
  "--preset",
  "tiny",
  "--steps",
  "1",
  "--batch-size",
  "2",
  "--src-len",
  "6",
  "--tgt-len",
  "5",
  "--device",
  "cpu",
  "--json",
];

function oneLineError(stderr: string): string {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, `expected a one-line error, got:\n${stderr}`);
  return lines[0];
}

Deno.test("webseq --help lists the commands; an unknown command is a usage error", async () => {
  const help = await webseq(["--help"], []);
  assert.equal(help.code, 0);
  for (const c of ["train", "generate", "eval", "bleu", "tokenizer", "bench", "info"]) {
    assert.match(help.stdout, new RegExp(c));
  }
  const bad = await webseq(["frobnicate"], []);
  assert.equal(bad.code, 2);
  assert.match(oneLineError(bad.stderr), /unknown command "frobnicate"/);
  // no command: the help on stderr, exit 2; `help CMD` is `CMD --help`
  const none = await webseq([], []);
  assert.deepEqual([none.code, none.stdout, none.stderr], [2, "", help.stdout]);
  const helpBleu = await webseq(["help", "bleu"], []);
  assert.deepEqual([helpBleu.code, helpBleu.stdout], [
    0,
    (await webseq(["bleu", "--help"], [])).stdout,
  ]);
  assert.match(helpBleu.stdout, /webseq bleu/);
  assert.equal((await webseq(["help", "--help"], [])).code, 0);
  const helpBad = await webseq(["help", "frobnicate"], []);
  assert.equal(helpBad.code, 2);
  assert.match(oneLineError(helpBad.stderr), /unknown command "frobnicate"/);
});

Deno.test("every subcommand prints help with examples and permissions and exits 0", async () => {
  for (const c of ["train", "generate", "eval", "bleu", "tokenizer", "bench", "info"]) {
    const r = await webseq([c, "--help"], ["--allow-read", "--allow-env"]);
    assert.equal(r.code, 0, `${c} --help`);
    assert.match(r.stdout, /Examples?:/i, `${c} help has examples`);
    assert.match(r.stdout, /Permissions|--allow-/, `${c} help names permissions`);
  }
});

Deno.test("train reports bad input in one line with a non-zero exit", async () => {
  const dir = await Deno.makeTempDir();
  const perms = ["--allow-read", `--allow-write=${dir}`, "--allow-env"];
  try {
    let r = await webseq([
      "train",
      "--data",
      `${dir}/missing.tsv`,
      "--out",
      `${dir}/r`,
      "--device",
      "cpu",
    ], perms);
    assert.equal(r.code, 1);
    assert.match(oneLineError(r.stderr), /missing\.tsv/);

    // a Hub id without network permission: refused, naming it, no request made
    r = await webseq(
      ["train", "--tokenizer", "acme/tok", "--out", `${dir}/r`, "--device", "cpu"],
      perms,
    );
    assert.equal(r.code, 1);
    assert.match(oneLineError(r.stderr), /acme\/tok.*allow the network/);

    r = await webseq(["train", "--epochs", "many"], perms);
    assert.equal(r.code, 2);
    assert.match(oneLineError(r.stderr), /--epochs/);

    r = await webseq(["train", "--bogus"], perms);
    assert.equal(r.code, 2);

    // usage errors: a negative number reaches the range check; an unknown preset; options the
    // run folder decides
    const usage: [string[], RegExp][] = [
      [["--batch-size", "-3"], /--batch-size must be at least 1, got -3/],
      [["--init-from", dir, "--preset", "small"], /--preset does not apply with --init-from/],
      [["--resume", "--tokenizer", "t.json"], /--tokenizer does not apply with --resume/],
      [["--resume", "--vocab-size", "99"], /--vocab-size does not apply with --resume/],
      [["--tokenizer", "t.json", "--vocab-size", "99"], /--vocab-size is for a tokenizer trained/],
      [["--format", "xml"], /--format must be csv, tsv or jsonl, got "xml"/],
      [["--seed", "4294967296"], /--seed must be at most 4294967295/],
    ];
    for (const [args, re] of usage) {
      r = await webseq(["train", "--out", `${dir}/r`, ...args], perms);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(oneLineError(r.stderr), re);
    }
    r = await webseq(["train", "--out", ""], perms);
    assert.equal(r.code, 2);
    assert.match(oneLineError(r.stderr), /--out needs a folder name/);
    r = await webseq(
      ["train", "--config", `${dir}/none.json`, "--out", `${dir}/r`, "--device", "cpu"],
      perms,
    );
    assert.equal(r.code, 1);
    assert.match(oneLineError(r.stderr), /none\.json: no such file/);

    // bench --torch is checked before the benchmark runs
    r = await webseq(["bench", "--torch", "/nonexistent/python"], perms);
    assert.equal(r.code, 2);
    assert.match(oneLineError(r.stderr), /--torch \/nonexistent\/python needs --allow-run/);
    r = await webseq(["bench", "--torch", "/nonexistent/python"], [...perms, "--allow-run"]);
    assert.equal(r.code, 2);
    assert.match(oneLineError(r.stderr), /--torch: \/nonexistent\/python does not exist/);
    await Deno.writeTextFile(`${dir}/bad.json`, '{"d_model": 16,');
    r = await webseq(["bench", "--config", `${dir}/bad.json`], perms);
    assert.equal(r.code, 1);
    assert.match(oneLineError(r.stderr), /bad\.json: invalid JSON/);
    for (const cmd of ["train", "bench"]) {
      r = await webseq([cmd, "--tune", "sometimes"], perms);
      assert.equal(r.code, 2);
      assert.match(oneLineError(r.stderr), /--tune must be auto, on or off, got "sometimes"/);
      r = await webseq([cmd, "--tune-tiles", "t128x128k8_8x8d,t12x8"], perms);
      assert.equal(r.code, 2);
      assert.match(oneLineError(r.stderr), /--tune-tiles: "t12x8" is not a tile name/);
      r = await webseq([cmd, "--tune-cache", ""], perms);
      assert.equal(r.code, 2);
      assert.match(oneLineError(r.stderr), /--tune-cache needs a file name or off/);
      r = await webseq([cmd, "--preset", "huge"], perms);
      assert.equal(r.code, 2);
      assert.match(oneLineError(r.stderr), /--preset must be tiny, small, base, got "huge"/);
      r = await webseq([cmd, "--activations", "some"], perms);
      assert.equal(r.code, 2);
      assert.match(oneLineError(r.stderr), /--activations must be kept or recomputed, got "some"/);
      r = await webseq([cmd, "--f16-accumulate", "f16"], perms);
      assert.equal(r.code, 2);
      assert.match(oneLineError(r.stderr), /--f16-accumulate f16 needs --precision f16/);
      r = await webseq([cmd, "--precision", "f16", "--f16-accumulate", "f16/48"], perms);
      assert.equal(r.code, 2);
      assert.match(
        oneLineError(r.stderr),
        /--f16-accumulate must be f32, f16, f16\/32, f16\/64, got "f16\/48"/,
      );
    }

    await Deno.writeTextFile(`${dir}/bad.csv`, 'source,target\n"a, b",c\n"unclosed,d\n');
    r = await webseq(
      ["train", "--data", `${dir}/bad.csv`, "--out", `${dir}/r`, "--device", "cpu"],
      perms,
    );
    assert.equal(r.code, 1);
    assert.match(oneLineError(r.stderr), /bad\.csv:3/);

    await Deno.writeTextFile(`${dir}/cfg.json`, JSON.stringify({ d_model: 30, n_heads: 4 }));
    r = await webseq(
      [
        "train",
        "--config",
        `${dir}/cfg.json`,
        "--out",
        `${dir}/r`,
        "--device",
        "cpu",
        "--max-steps",
        "1",
      ],
      perms,
    );
    assert.equal(r.code, 1);
    assert.match(oneLineError(r.stderr), /d_model/);
    // nothing half-written
    await assert.rejects(() => Deno.stat(`${dir}/r/model.safetensors`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train, eval, generate and bench work end to end on the CPU", async () => {
  const dir = await Deno.makeTempDir();
  const perms = ["--allow-read", `--allow-write=${dir}`, "--allow-env"];
  try {
    await Deno.writeTextFile(
      `${dir}/cfg.json`,
      JSON.stringify({
        d_model: 16,
        n_heads: 2,
        d_ff: 32,
        n_encoder_layers: 1,
        n_decoder_layers: 1,
        max_position: 40,
      }),
    );
    const lines = (await Deno.readTextFile(`${ROOT}data/corpus/valid.tsv`)).split("\n");
    await Deno.writeTextFile(`${dir}/small.tsv`, lines.slice(0, 41).join("\n") + "\n");
    let r = await webseq([
      "train",
      "--data",
      `${dir}/small.tsv`,
      "--out",
      `${dir}/run`,
      "--config",
      `${dir}/cfg.json`,
      "--epochs",
      "1",
      "--batch-size",
      "8",
      "--vocab-size",
      "100",
      "--max-length",
      "24",
      "--device",
      "cpu",
      "--bleu-limit",
      "4",
      "--json",
    ], perms);
    assert.equal(r.code, 0, r.stderr);
    const epochLine = JSON.parse(r.stdout.trim().split("\n").pop()!);
    assert.ok(Number.isFinite(epochLine.valid_loss));

    r = await webseq([
      "eval",
      "--run",
      `${dir}/run`,
      "--data",
      `${dir}/small.tsv`,
      "--bleu",
      "--bleu-limit",
      "4",
      "--device",
      "cpu",
      "--json",
    ], ["--allow-read", "--allow-env"]);
    assert.equal(r.code, 0, r.stderr);
    const ev = JSON.parse(r.stdout);
    for (
      const k of [
        "loss",
        "perplexity",
        "accuracy",
        "top5_accuracy",
        "tokens",
        "bleu_sentence",
        "bleu_corpus",
      ]
    ) {
      assert.equal(typeof ev[k], "number", k);
    }
    assert.ok(Math.abs(ev.perplexity - Math.exp(ev.loss)) < 1e-6 * ev.perplexity);
    // the run's recorded --max-length, not the default 64
    assert.deepEqual([ev.max_length, ev.skipped, ev.pairs], [24, 0, 40]);
    // the same pairs from stdin (--data - needs --format)
    const piped = async (extra: string[]) => {
      const c = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--allow-read",
          "--allow-env",
          CLI,
          "eval",
          "--run",
          `${dir}/run`,
          "--data",
          "-",
          "--device",
          "cpu",
          "--json",
          ...extra,
        ],
        cwd: ROOT,
        env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = c.stdin.getWriter();
      await w.write(await Deno.readFile(`${dir}/small.tsv`));
      await w.close();
      const o = await c.output();
      const dec = new TextDecoder();
      return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
    };
    const fromStdin = await piped(["--format", "tsv"]);
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.equal(JSON.parse(fromStdin.stdout).loss, ev.loss);
    const noFormat = await piped([]);
    assert.equal(noFormat.code, 2);
    assert.match(oneLineError(noFormat.stderr), /--data - \(stdin\) needs --format/);

    r = await webseq([
      "generate",
      "--run",
      `${dir}/run`,
      "--text",
      "5 Mart 2021",
      "--max-new-tokens",
      "6",
      "--device",
      "cpu",
    ], ["--allow-read", "--allow-env"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split("\n").length, 2);

    r = await webseq([
      "eval",
      "--run",
      `${dir}/nope`,
      "--data",
      `${dir}/small.tsv`,
      "--device",
      "cpu",
    ], ["--allow-read", "--allow-env"]);
    assert.equal(r.code, 1);
    assert.match(oneLineError(r.stderr), /nope/);
    for (
      const [args, re] of [
        [["--smoothing", "3"], /--smoothing applies to BLEU: add --bleu/],
        [["--run", ""], /--run needs a value/],
        [["--format", "parquet"], /--format must be csv, tsv or jsonl/],
      ] as [string[], RegExp][]
    ) {
      r = await webseq(
        ["eval", "--run", `${dir}/run`, "--data", `${dir}/small.tsv`, ...args],
        ["--allow-read", "--allow-env"],
      );
      assert.equal(r.code, 2, args.join(" "));
      assert.match(oneLineError(r.stderr), re);
    }

    r = await webseq(TINY_BENCH, ["--allow-read", "--allow-env"]);
    assert.equal(r.code, 0, r.stderr);
    const line = JSON.parse(r.stdout.trim().split("\n").pop()!);
    assert.equal(line.kind, "train");
    assert.ok(line.tokens_per_s > 0 && line.step_ms > 0 && line.peak_bytes > 0);
    assert.match(line.device, /cpu/);

    r = await webseq(["info", "--json"], ["--allow-env"]);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.ok("auto_device" in info);
    assert.equal(info.webgpu_backend, Deno.env.get("DENO_WEBGPU_BACKEND") || null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Ctrl-C (SIGINT) during training writes a checkpoint, exits 130, and --resume continues", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lines = (await Deno.readTextFile(`${ROOT}data/corpus/train.tsv`)).split("\n");
    await Deno.writeTextFile(`${dir}/data.tsv`, lines.slice(0, 401).join("\n") + "\n");
    const args = [
      "run",
      "--quiet",
      "--allow-read",
      `--allow-write=${dir}`,
      "--allow-env",
      CLI,
      "train",
      "--data",
      `${dir}/data.tsv`,
      "--out",
      `${dir}/run`,
      "--preset",
      "tiny",
      "--epochs",
      "50",
      "--batch-size",
      "8",
      "--vocab-size",
      "120",
      "--no-shuffle",
      "--device",
      "cpu",
      "--bleu-limit",
      "0",
    ];
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT,
      env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // wait until the first training step is under way, then interrupt
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!/epoch 1\/50 .*\d+\/\d+/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    child.kill("SIGINT");
    while (!(await reader.read()).done) { /* drain */ }
    const status = await child.status;
    assert.equal(status.code, 130, seen);
    const state = JSON.parse(await Deno.readTextFile(`${dir}/run/trainer_state.json`));
    assert.ok(state.step >= 1);
    await Deno.stat(`${dir}/run/model.safetensors`);
    const r = await webseq(
      // no --data: the run recorded it
      [
        "train",
        "--out",
        `${dir}/run`,
        "--resume",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--bleu-limit",
        "0",
      ],
      ["--allow-read", `--allow-write=${dir}`, "--allow-env"],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /resuming/);
    // resumed with the recorded data and --no-shuffle (neither given again)
    const resumed = JSON.parse(await Deno.readTextFile(`${dir}/run/trainer_state.json`));
    assert.equal(resumed.options.shuffle, false);
    assert.equal(resumed.options.data, `${dir}/data.tsv`);
    // another value than the run recorded is a usage error (exit 2), in one line
    const other = await webseq(
      ["train", "--out", `${dir}/run`, "--resume", "--lr", "0.5", "--device", "cpu"],
      ["--allow-read", `--allow-write=${dir}`, "--allow-env"],
    );
    assert.equal(other.code, 2);
    assert.match(oneLineError(other.stderr), /was trained with --lr 0\.001, not --lr 0\.5/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench --torch runs the baseline on the same workload and prints a compare line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // a stand-in interpreter: echoes its arguments in a PyTorch-shaped line
    const fake = `${dir}/python`;
    await Deno.writeTextFile(
      fake,
      `#!/bin/sh\nprintf '{"impl":"pytorch","kind":"train","device":"cpu:fake","argv":"%s","tokens_per_s":100,"peak_bytes":1000}\\n' "$*"\n`,
    );
    await Deno.chmod(fake, 0o755);
    let r = await webseq([...TINY_BENCH, "--torch", fake], [
      "--allow-read",
      "--allow-env",
      `--allow-run=${fake}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const [mine, theirs, cmp] = lines.slice(-3);
    assert.equal(mine.impl, "webseq");
    assert.match(
      theirs.argv,
      /torch_baseline\.py --preset tiny --batch-size 2 --src-len 6 --tgt-len 5 --steps 1 --warmup-steps 2 --warmup-ms 0 --device cpu$/,
    );
    assert.equal(cmp.kind, "compare");
    assert.ok(Math.abs(cmp.tokens_per_s_ratio - mine.tokens_per_s / 100) < 1e-9);
    assert.ok(cmp.memory_ratio > 0);

    await Deno.writeTextFile(fake, `#!/bin/sh\necho "ModuleNotFoundError: torch" >&2\nexit 3\n`);
    r = await webseq([...TINY_BENCH, "--torch", fake], [
      "--allow-read",
      "--allow-env",
      `--allow-run=${fake}`,
    ]);
    assert.equal(r.code, 1);
    assert.match(oneLineError(r.stderr), /exited 3: ModuleNotFoundError: torch/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
