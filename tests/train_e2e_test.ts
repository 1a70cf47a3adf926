/**
 * End to end through the library: train a very small model on part of the
 * built-in corpus, interrupt it, resume it, and check that the final weights
 * equal an uninterrupted run's bit for bit (CPU backend); then evaluate and
 * generate from the run folder.
 */
import assert from "node:assert/strict";
import { RUN_LOCK_FILE, train } from "../train/trainer.ts";
import { lockRunFolder } from "../train/run_lock.ts";
import { CPU } from "../tensor/cpu_backend.ts";
import { readSafetensors, writeSafetensors } from "../train/safetensors.ts";
import { readJsonl, runPath } from "../train/run_folder.ts";
import { loadRun } from "../train/load_model.ts";
import { generateText } from "../train/generate.ts";
import { GPU, NO_GPU } from "./_gpu.ts";
import { smallData } from "./_small_run.ts";
import { clearMatmulTuning } from "../ops/matmul.ts";
import { wordPieceJson } from "./_hf_tokenizers.ts";

function baseOptions(d: { train: string; valid: string; config: string }, out: string) {
  return {
    data: d.train,
    valid: d.valid,
    out,
    configFile: d.config,
    vocabSize: 120,
    maxLength: 32,
    epochs: 2,
    batchSize: 16,
    lr: 3e-3,
    seed: 3,
    bleuLimit: 8,
    sampleCount: 2,
    quiet: true,
    backend: CPU,
  };
}

Deno.test("train() resumed after an interruption ends with the same weights as an uninterrupted run", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const full = await train(baseOptions(d, `${dir}/full`));
    assert.equal(full.stopped, "completed");
    assert.equal(full.steps, 12);

    const ctl = new AbortController();
    const part = await train({
      ...baseOptions(d, `${dir}/part`),
      signal: ctl.signal,
      onStep: (s) => {
        if (s === 4) ctl.abort();
      },
    });
    assert.equal(part.stopped, "interrupted");
    assert.equal(part.steps, 4);
    // the run folder alone: its recorded data, length, seed and settings continue it
    const resumed = await train({ out: `${dir}/part`, resume: true, quiet: true, backend: CPU });
    assert.equal(resumed.steps, 12);

    const a = await readSafetensors(runPath(`${dir}/full`, "model"));
    const b = await readSafetensors(runPath(`${dir}/part`, "model"));
    assert.deepEqual(Object.keys(a.tensors).sort(), Object.keys(b.tensors).sort());
    for (const [name, t] of Object.entries(a.tensors)) {
      assert.deepEqual(b.tensors[name].data, t.data, `${name} differs after resume`);
    }
    const oa = await readSafetensors(runPath(`${dir}/full`, "optimizer"));
    const ob = await readSafetensors(runPath(`${dir}/part`, "optimizer"));
    for (const [name, t] of Object.entries(oa.tensors)) {
      assert.deepEqual(ob.tensors[name].data, t.data, name);
    }
    // and the same metrics: the interrupted epoch's train loss covers all its batches
    const keys = ["epoch", "step", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy"];
    const metricsOf = async (run: string) =>
      ((await readJsonl(runPath(`${dir}/${run}`, "metrics"))) as Record<string, unknown>[])
        .map((m) => keys.map((k) => m[k]));
    assert.deepEqual(await metricsOf("part"), await metricsOf("full"));

    // the run folder holds what CONTRACTS §7 lists, plus the report and the best model
    for (
      const f of [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "metrics.jsonl",
        "samples.jsonl",
        "report.html",
        "best/model.safetensors",
      ]
    ) {
      await Deno.stat(`${dir}/full/${f}`);
    }
    // best/ holds the weights of the step trainer_state.json records as best
    const best = await readSafetensors(`${dir}/full/best/model.safetensors`);
    const fullState = JSON.parse(await Deno.readTextFile(runPath(`${dir}/full`, "trainerState")));
    assert.equal(best.metadata?.webseq_step, String(fullState.best_step));
    const metrics = (await readJsonl(runPath(`${dir}/full`, "metrics"))) as Record<
      string,
      number
    >[];
    assert.equal(metrics.length, 2);
    for (const m of metrics) {
      for (
        const k of [
          "train_loss",
          "valid_loss",
          "valid_accuracy",
          "valid_top5_accuracy",
          "valid_perplexity",
        ]
      ) {
        assert.ok(Number.isFinite(m[k]), `${k} is finite`);
      }
      assert.ok(m.valid_bleu_corpus >= 0 && m.valid_bleu_corpus <= 1);
    }
    assert.ok(metrics[1].train_loss < metrics[0].train_loss, "training loss decreases");
    const report = await Deno.readTextFile(`${dir}/full/report.html`);
    assert.match(report, /<svg/);

    // the run folder loads and generates
    const run = await loadRun(`${dir}/full`, { backend: CPU });
    const res = await generateText(run.model, run.tokenizer!, ["12 Mart 2020"], {
      maxNewTokens: 8,
    });
    assert.equal(res.sequences.length, 1);
    assert.equal(typeof res.sequences[0][0].text, "string");
    run.model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() --save-steps: a crash within an epoch resumes from the step checkpoint to an uninterrupted run's weights", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    // 6 steps an epoch: checkpoints at steps 4 (within epoch 1), 6 (its end), 8, 10 (epoch 2)
    const full = await train({ ...baseOptions(d, `${dir}/full`), saveSteps: 4 });
    assert.equal(full.steps, 12);
    const writes: boolean[] = [];
    await assert.rejects(
      () =>
        train({
          ...baseOptions(d, `${dir}/part`),
          saveSteps: 4,
          onCheckpointWrite: (w) => writes.push(w),
          onStep: (s) => {
            if (s === 9) throw new Error("power cut");
          },
        }),
      /power cut/,
    );
    assert.deepEqual(writes, [true, false, true, false, true, false]); // steps 4, 6, 8
    const st = JSON.parse(await Deno.readTextFile(runPath(`${dir}/part`, "trainerState")));
    assert.deepEqual([st.step, st.epoch, st.batch_in_epoch, st.options.save_steps], [8, 1, 2, 4]);
    const resumed = await train({ out: `${dir}/part`, resume: true, quiet: true, backend: CPU });
    assert.equal(resumed.steps, 12);
    const a = await readSafetensors(runPath(`${dir}/full`, "model"));
    const b = await readSafetensors(runPath(`${dir}/part`, "model"));
    for (const [name, t] of Object.entries(a.tensors)) {
      assert.deepEqual(b.tensors[name].data, t.data, `${name} differs after resume`);
    }
    // one metrics line per epoch, the same as the uninterrupted run's
    const losses = async (run: string) =>
      ((await readJsonl(runPath(`${dir}/${run}`, "metrics"))) as Record<string, number>[])
        .map((m) => [m.step, m.train_loss, m.train_accuracy, m.valid_loss]);
    assert.deepEqual(await losses("part"), await losses("full"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() --resume keeps the recorded patience: a resumed run stops early where an uninterrupted one does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    // lr 0: the validation loss never improves after epoch 1
    const o = { ...baseOptions(d, ""), lr: 0, bleuLimit: 0 };
    const whole = await train({ ...o, out: `${dir}/whole`, epochs: 5, patience: 2 });
    assert.deepEqual([whole.stopped, whole.epochs], ["early_stopping", 3]);
    const part = await train({ ...o, out: `${dir}/part`, epochs: 2, patience: 2 });
    assert.deepEqual([part.stopped, part.epochs], ["completed", 2]);
    const more = { out: `${dir}/part`, resume: true, quiet: true, backend: CPU, epochs: 5 };
    const resumed = await train(more);
    assert.deepEqual([resumed.stopped, resumed.epochs], ["early_stopping", 3]);
    // a run that stopped early stays stopped when resumed with more epochs
    const again = await train({ ...more, epochs: 8 });
    assert.deepEqual([again.stopped, again.epochs, again.steps], ["early_stopping", 3, 18]);
    const st = JSON.parse(await Deno.readTextFile(runPath(`${dir}/part`, "trainerState")));
    assert.deepEqual([st.options.patience, st.options.bleu_limit], [2, 0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() --max-steps within an epoch keeps its running statistics: resumed, the epoch's train loss covers all its batches", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const o = { ...baseOptions(d, ""), bleuLimit: 0, sampleInterval: 0 };
    await train({ ...o, out: `${dir}/full` });
    await train({ ...o, out: `${dir}/part`, maxSteps: 3 });
    await train({ out: `${dir}/part`, resume: true, quiet: true, backend: CPU, epochs: 2 });
    // (the weights differ: the first 3 steps ran the 3-step run's learning-rate schedule)
    const whole = async (run: string) =>
      ((await readJsonl(runPath(`${dir}/${run}`, "metrics"))) as Record<string, number>[])
        .filter((m) => Number.isInteger(m.epoch))
        .map((m) => [m.epoch, m.step, m.train_tokens]);
    assert.deepEqual(await whole("part"), await whole("full"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() never writes a diverged model over the last checkpoint or into best/, whatever --save-steps and --log-every", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const out = `${dir}/r`;
    // a good first epoch (6 steps), then the recorded learning rate made absurd
    await train({ ...baseOptions(d, out), epochs: 1, bleuLimit: 0 });
    const good = await Deno.readFile(runPath(out, "model"));
    const best = await Deno.readFile(`${out}/best/model.safetensors`);
    const state = JSON.parse(await Deno.readTextFile(runPath(out, "trainerState")));
    state.options.lr = 1e38;
    state.options.max_grad_norm = 0;
    await Deno.writeTextFile(runPath(out, "trainerState"), JSON.stringify(state));
    // step checkpoints every 2 steps, the loss read only every 10: the checkpoints themselves
    // must refuse the diverged weights
    await assert.rejects(
      () =>
        train({
          out,
          resume: true,
          epochs: 3,
          logEvery: 10,
          saveSteps: 2,
          quiet: true,
          backend: CPU,
        }),
      new RegExp(
        `non-finite .*; the last checkpoint in ${out} \\(step 6\\) is intact — try a lower --lr`,
      ),
    );
    assert.deepEqual(await Deno.readFile(runPath(out, "model")), good);
    assert.deepEqual(await Deno.readFile(`${out}/best/model.safetensors`), best);
    assert.equal(JSON.parse(await Deno.readTextFile(runPath(out, "trainerState"))).step, 6);
    assert.equal((await readJsonl(runPath(out, "metrics"))).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() notices an abort from a timer (as a signal listener) within the epoch, not at its end", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const ctl = new AbortController();
    const writes: boolean[] = [];
    // 24 steps an epoch; each made to take 30 ms; the abort comes from a macrotask, as a
    // Ctrl-C listener's would: it can only run when the step loop gives the event loop a turn
    const r = await train({
      ...baseOptions(d, `${dir}/r`),
      batchSize: 4,
      bleuLimit: 0,
      sampleInterval: 0,
      signal: ctl.signal,
      onCheckpointWrite: (w) => writes.push(w),
      onStep: (s) => {
        if (s === 2) setTimeout(() => ctl.abort(), 0);
        const t = performance.now();
        while (performance.now() - t < 30) { /* a slow step */ }
      },
    });
    assert.equal(r.stopped, "interrupted");
    assert.ok(r.steps < 24, `stopped at step ${r.steps}`);
    // its one checkpoint, announced before and after (the CLI defers a second Ctrl-C's exit)
    assert.deepEqual(writes, [true, false]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() refuses to overwrite a run and to resume nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    await assert.rejects(
      () => train({ ...baseOptions(d, `${dir}/none`), resume: true }),
      /nothing to resume/,
    );
    // the refused run leaves no folder behind (the lock made it)
    await assert.rejects(() => Deno.stat(`${dir}/none`), Deno.errors.NotFound);
    await train({ ...baseOptions(d, `${dir}/r`), epochs: 1, bleuLimit: 0 });
    await assert.rejects(() => Deno.stat(`${dir}/r/${RUN_LOCK_FILE}`), Deno.errors.NotFound);
    await assert.rejects(
      () => train({ ...baseOptions(d, `${dir}/r`), epochs: 1 }),
      /already holds a run/,
    );
    // a run folder another trainer holds is refused (here this process holds it)
    const held = await lockRunFolder(`${dir}/r`);
    await assert.rejects(
      () => train({ ...baseOptions(d, `${dir}/r`), resume: true }),
      new RegExp(
        `^RunLockedError: ${dir}/r is in use by another webseq train \\(pid ${Deno.pid}, `,
      ),
    );
    await held.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() --resume takes the run's recorded settings and refuses others; an epoch logged but not checkpointed is not logged twice", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const out = `${dir}/r`;
    await train({ ...baseOptions(d, out), epochs: 1, bleuLimit: 0 });
    const st = JSON.parse(await Deno.readTextFile(runPath(out, "trainerState")));
    assert.deepEqual(
      [st.options.data, st.options.valid, st.options.lr, st.options.seed, st.options.epochs],
      [d.train, d.valid, 3e-3, 3, 1],
    );
    assert.deepEqual([st.options.max_length, st.options.shuffle, st.options.warmup], [32, true, 0]);
    assert.deepEqual([st.options.data_pairs, st.options.valid_pairs], [96, 16]);
    const again = { out, resume: true, quiet: true, backend: CPU, bleuLimit: 0 } as const;
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ lr: 5e-3 }, /was trained with --lr 0.003, not --lr 0.005: leave --lr out/],
      [
        { data: d.valid },
        /valid\.tsv holds 16 pairs, but .* was trained on the 96 of .*train\.tsv/,
      ],
      [
        { valid: d.train },
        /train\.tsv holds 96 pairs, but .* was trained on the 16 of .*valid\.tsv/,
      ],
      [{ seed: 4 }, /--seed 3, not --seed 4/],
      [{ maxLength: 24 }, /--max-length 32, not --max-length 24/],
      [{ shuffle: false }, /was trained with shuffling, not --no-shuffle/],
      [{ weightDecay: 0 }, /--weight-decay 0.01, not --weight-decay 0/],
      [{ dropout: 0.3 }, /trained with dropout 0.1, not 0.3/],
      [{ configFile: d.config }, /--config does not apply with --resume/],
      [{ preset: "tiny" }, /--preset does not apply with --resume/],
      [{ vocabSize: 120 }, /--vocab-size does not apply with --resume/],
    ];
    for (const [extra, why] of refused) {
      await assert.rejects(() => train({ ...again, epochs: 2, ...extra }), why);
    }
    assert.deepEqual(JSON.parse(await Deno.readTextFile(runPath(out, "trainerState"))), st);

    // epoch 2's metrics and samples written, its checkpoint not (a failed write): the resumed
    // run drops them and logs epoch 2 once
    await Deno.writeTextFile(
      runPath(out, "metrics"),
      JSON.stringify({ epoch: 2, step: st.step + 6, train_loss: 9 }) + "\n",
      { append: true },
    );
    await Deno.writeTextFile(
      runPath(out, "samples"),
      JSON.stringify({ epoch: 2, source: "stale", reference: "x", output: "y" }) + "\n",
      { append: true },
    );
    const r = await train({ ...again, epochs: 2, sampleCount: 1 });
    assert.equal(r.epochs, 2);
    const metrics = (await readJsonl(runPath(out, "metrics"))) as Record<string, number>[];
    assert.deepEqual(metrics.map((m) => m.epoch), [1, 2]);
    assert.ok(metrics[1].train_loss !== 9);
    const samples = (await readJsonl(runPath(out, "samples"))) as Record<string, unknown>[];
    assert.ok(samples.every((x) => x.source !== "stale"));

    // a state from before the data was recorded: --data is needed
    const old = JSON.parse(await Deno.readTextFile(runPath(out, "trainerState")));
    delete old.options.data;
    await Deno.writeTextFile(runPath(out, "trainerState"), JSON.stringify(old));
    await assert.rejects(
      () => train({ ...again, epochs: 3 }),
      /trainer_state\.json does not record the run's data: give --data \(and --valid/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() --resume: an interrupt on an epoch's last step still logs that epoch; an older state and moved data resume to the same weights; --max-steps keeps the recorded epochs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const weights = async (out: string) => (await readSafetensors(runPath(out, "model"))).tensors;
    const sameWeights = async (a: string, b: string) => {
      const [x, y] = [await weights(a), await weights(b)];
      for (const [name, t] of Object.entries(x)) assert.deepEqual(y[name].data, t.data, name);
    };
    const epochsOf = async (out: string) =>
      ((await readJsonl(runPath(out, "metrics"))) as Record<string, number>[]).map((m) => m.epoch);
    await train(baseOptions(d, `${dir}/full`));
    assert.deepEqual(await epochsOf(`${dir}/full`), [1, 2]);
    const cut = async (out: string, at: number) => {
      const ctl = new AbortController();
      const r = await train({
        ...baseOptions(d, out),
        signal: ctl.signal,
        onStep: (s) => s === at && ctl.abort(),
      });
      assert.equal(r.stopped, "interrupted");
    };
    const again = { resume: true, quiet: true, backend: CPU } as const;

    // Ctrl-C on epoch 1's last step (6 steps an epoch): epoch 1 is evaluated and logged first
    await cut(`${dir}/edge`, 6);
    assert.deepEqual(await epochsOf(`${dir}/edge`), [1]);
    await train({ ...again, out: `${dir}/edge` });
    assert.deepEqual(await epochsOf(`${dir}/edge`), [1, 2]);
    await sameWeights(`${dir}/full`, `${dir}/edge`);

    // a state written before the settings were recorded (its schedule holds lr, warmup and
    // the total steps): --data and --valid given again, the rest from the state
    await cut(`${dir}/old`, 4);
    const path = runPath(`${dir}/old`, "trainerState");
    const st = JSON.parse(await Deno.readTextFile(path));
    const { batch_size, grad_accum, max_grad_norm, label_smoothing, precision } = st.options;
    st.options = { batch_size, grad_accum, max_grad_norm, label_smoothing, precision };
    await Deno.writeTextFile(path, JSON.stringify(st));
    await train({ ...again, out: `${dir}/old`, data: d.train, valid: d.valid, maxLength: 32 });
    await sameWeights(`${dir}/full`, `${dir}/old`);

    // the data moved: a copy with as many pairs continues the run; another file is refused
    await cut(`${dir}/moved`, 4);
    await Deno.copyFile(d.train, `${dir}/moved.tsv`);
    await Deno.writeTextFile(`${dir}/short.tsv`, "source\ttarget\na\tb\nc\td\n");
    await assert.rejects(
      () => train({ ...again, out: `${dir}/moved`, data: `${dir}/short.tsv` }),
      /short\.tsv holds 2 pairs, but .* was trained on the 96 of .*train\.tsv: leave --data out/,
    );
    await train({ ...again, out: `${dir}/moved`, data: `${dir}/moved.tsv` });
    await sameWeights(`${dir}/full`, `${dir}/moved`);

    // --max-steps on resume keeps the recorded 2 epochs (not the default 10)
    await cut(`${dir}/long`, 4);
    const r = await train({ ...again, out: `${dir}/long`, maxSteps: 100 });
    assert.deepEqual([r.steps, r.epochs, r.stopped], [12, 2, "completed"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() with a pretrained tokenizer takes its pad, end and start ids; no pad, pad = eos or a smaller vocab_size are refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "1", "2", "3"];
    const tokDir = async (name: string, vocab: string[], specials: string[]) => {
      await Deno.mkdir(`${dir}/${name}`);
      await Deno.writeTextFile(`${dir}/${name}/tokenizer.json`, wordPieceJson(vocab, specials));
      return `${dir}/${name}`;
    };
    const bert = await tokDir(
      "bert",
      ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", ...words],
      ["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
    );
    const t5 = await tokDir("t5", ["<pad>", "</s>", "<unk>", ...words], ["<pad>", "</s>", "<unk>"]);
    const gpt2 = await tokDir("gpt2", ["!", "[UNK]", ...words, "<|endoftext|>"], [
      "[UNK]",
      "<|endoftext|>",
    ]);
    const { configFile: _c, vocabSize: _v, ...common } = baseOptions(d, "");
    const run = (out: string, tokenizer: string, extra: Record<string, unknown> = {}) =>
      train({ ...common, out: `${dir}/${out}`, tokenizer, epochs: 1, maxSteps: 1, ...extra });
    const ids = async (out: string) => {
      const c = JSON.parse(await Deno.readTextFile(runPath(`${dir}/${out}`, "config")));
      return [
        c.pad_token_id,
        c.bos_token_id,
        c.eos_token_id,
        c.decoder_start_token_id,
        c.vocab_size,
      ];
    };
    await run("b", bert);
    assert.deepEqual(await ids("b"), [0, 3, 4, 3, 16]);
    // T5: no start token, the decoder starts with pad
    await run("t", t5);
    assert.deepEqual(await ids("t"), [0, 0, 1, 0, 14]);
    // GPT-2: no padding token
    await assert.rejects(
      () => run("g", gpt2),
      /gpt2 has no padding token \(<pad>, \[PAD\].*\): name one as pad_token in its tokenizer_config\.json, or give --config with pad_token_id/,
    );
    await assert.rejects(() => Deno.stat(`${dir}/g`), Deno.errors.NotFound);
    // ... unless a config file gives one; its vocab_size may round the tokenizer's up
    const cfg = async (name: string, fields: Record<string, unknown>) => {
      const base = JSON.parse(await Deno.readTextFile(d.config));
      await Deno.writeTextFile(`${dir}/${name}.json`, JSON.stringify({ ...base, ...fields }));
      return `${dir}/${name}.json`;
    };
    await run("g2", gpt2, { configFile: await cfg("g2", { pad_token_id: 1, vocab_size: 32 }) });
    assert.deepEqual(await ids("g2"), [1, 1, 13, 1, 32]);
    await assert.rejects(
      async () => run("g3", gpt2, { configFile: await cfg("g3", { pad_token_id: 13 }) }),
      /g3\.json: field "pad_token_id" \(13\) must differ from eos_token_id/,
    );
    await assert.rejects(
      async () => run("g4", bert, { configFile: await cfg("g4", { vocab_size: 12 }) }),
      /g4\.json: field "vocab_size" \(12\) is below the tokenizer's 16 tokens/,
    );
    // a config file's eos that is not the tokenizer's own: kept, and said where it came from
    const logs: string[] = [];
    const g5 = await cfg("g5", { eos_token_id: 3 });
    await run("g5", bert, { configFile: g5, quiet: false, log: (l: string) => logs.push(l) });
    assert.deepEqual(await ids("g5"), [0, 3, 3, 3, 16]);
    assert.ok(
      logs.includes(
        `special tokens: pad 0, eos 3, decoder start 3 (eos from ${g5}, the rest from ${bert})`,
      ),
      logs.join("\n"),
    );
    assert.ok(
      logs.includes(
        `note: ${g5} sets eos_token_id 3, but ${bert}'s eos token is 4: the model uses 3 (leave the field out to take the tokenizer's)`,
      ),
      logs.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() --resume refuses a checkpoint whose files are of different steps, and clears cut-short temporary files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const out = `${dir}/r`;
    await train({ ...baseOptions(d, out), epochs: 1, bleuLimit: 0, sampleInterval: 0 });
    const state = JSON.parse(await Deno.readTextFile(runPath(out, "trainerState")));
    const model = await readSafetensors(runPath(out, "model"));
    assert.equal(model.metadata.webseq_step, String(state.step));
    const opt = await readSafetensors(runPath(out, "optimizer"));
    assert.equal(opt.metadata.webseq_step, String(state.step));
    // a crash left the model of a later step beside the state (and a temporary file)
    const original = await Deno.readFile(runPath(out, "model"));
    const tensors = Object.fromEntries(
      Object.entries(model.tensors).map((
        [k, t],
      ) => [k, { dtype: "F32" as const, shape: t.shape, data: t.data as Float32Array }]),
    );
    await writeSafetensors(runPath(out, "model"), tensors, {
      format: "pt",
      webseq_step: String(state.step + 2),
    });
    // writes a crash cut short (the resumed run holds the folder's lock: no one else writes there)
    const gone = `${out}/.model.safetensors.tmp-4194399-abc`;
    await Deno.writeTextFile(gone, "partial");
    const gone2 = `${out}/.optimizer.safetensors.tmp-${Deno.ppid}-abc`;
    await Deno.writeTextFile(gone2, "partial");
    const again = {
      out,
      resume: true,
      quiet: true,
      backend: CPU,
      bleuLimit: 0,
      epochs: 2,
    } as const;
    await assert.rejects(
      () => train(again),
      new RegExp(
        `model\\.safetensors is of step ${
          state.step + 2
        } but .*trainer_state\\.json of step ${state.step} \\(a checkpoint write was cut short\\)`,
      ),
    );
    // the files as written: the resume goes on, and the temporary files are gone
    await Deno.writeFile(runPath(out, "model"), original);
    await train(again);
    await assert.rejects(() => Deno.stat(gone), Deno.errors.NotFound);
    await assert.rejects(() => Deno.stat(gone2), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train() on an ids file: an id outside the vocabulary names its file and line, and no run folder is made", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    await train({ ...baseOptions(d, `${dir}/text`), epochs: 1, bleuLimit: 0 });
    const ids = `${dir}/ids.jsonl`;
    const row = (s: number[], t: number[]) => JSON.stringify({ source_ids: s, target_ids: t });
    await Deno.writeTextFile(
      ids,
      [row([5, 6], [7, 8]), row([5, 6, 9], [7]), row([5, 99999], [7]), row([4], [5])].join("\n"),
    );
    await assert.rejects(
      () =>
        train({
          data: ids,
          out: `${dir}/ids`,
          initFrom: `${dir}/text`,
          epochs: 1,
          quiet: true,
          backend: CPU,
        }),
      /ids\.jsonl:3: source id item 1 = 99999 is outside the vocabulary \[0, \d+\)/,
    );
    await assert.rejects(() => Deno.stat(`${dir}/ids`), Deno.errors.NotFound);
    // a config file's vocab_size is kept: an id beyond it is refused by line, not grown into
    const small = `${dir}/ids_small.jsonl`;
    await Deno.writeTextFile(small, [row([5, 6], [7, 8]), row([5, 60], [7])].join("\n"));
    const cfg = `${dir}/v50.json`;
    await Deno.writeTextFile(
      cfg,
      JSON.stringify({ ...JSON.parse(await Deno.readTextFile(d.config)), vocab_size: 50 }),
    );
    const idsRun = { out: `${dir}/ids2`, epochs: 1, quiet: true, backend: CPU, bleuLimit: 0 };
    await assert.rejects(
      () => train({ ...idsRun, data: small, configFile: cfg }),
      new RangeError(`${small}:2: source id item 1 = 60 is outside the vocabulary [0, 50)`),
    );
    // ids with the pad or eos id (the dataset adds those) are refused by line
    await Deno.writeTextFile(small, [row([5, 6], [7, 8]), row([5, 6], [0, 7])].join("\n"));
    await assert.rejects(
      () => train({ ...idsRun, data: small }),
      /ids_small\.jsonl:2: target id item 0 = 0 is the pad id/,
    );
    // text beside pre-tokenized training data: no tokenizer, named by its line
    await Deno.writeTextFile(small, [row([5, 6], [7, 8]), row([5, 9], [7])].join("\n"));
    await assert.rejects(
      () => train({ ...idsRun, data: small, valid: d.valid }),
      new RangeError(
        `${d.valid}:2: a text pair, but there is no tokenizer (the training data is pre-tokenized): give ids (source_ids, target_ids), or train on text`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a non-finite loss stops training with a clear error and leaves the last checkpoint intact", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    await train({ ...baseOptions(d, `${dir}/r`), epochs: 3, maxSteps: 6, bleuLimit: 0 });
    const before = await Deno.readFile(runPath(`${dir}/r`, "model"));
    const state = await Deno.readTextFile(runPath(`${dir}/r`, "trainerState"));
    // the run's recorded peak learning rate, made absurd
    const recorded = JSON.parse(state);
    recorded.options.lr = 1e30;
    await Deno.writeTextFile(runPath(`${dir}/r`, "trainerState"), JSON.stringify(recorded));
    const absurd = await Deno.readTextFile(runPath(`${dir}/r`, "trainerState"));
    await assert.rejects(
      // --epochs alone: the recorded --max-steps 6 no longer ends the run
      () =>
        train({ out: `${dir}/r`, epochs: 3, resume: true, quiet: true, backend: CPU, logEvery: 1 }),
      (err: Error) =>
        err.name === "NonFiniteLossError" && /non-finite at step \d+/.test(err.message),
    );
    assert.deepEqual(await Deno.readFile(runPath(`${dir}/r`, "model")), before);
    assert.equal(await Deno.readTextFile(runPath(`${dir}/r`, "trainerState")), absurd);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--init-from starts from a run's weights; early stopping ends a run that stops improving", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    await train({ ...baseOptions(d, `${dir}/a`), epochs: 1, bleuLimit: 0 });
    // lr 0: the weights never change, so validation never improves after the first epoch
    const { configFile: _c, vocabSize: _v, ...fromRun } = baseOptions(d, `${dir}/b`);
    const s = await train({
      ...fromRun,
      initFrom: `${dir}/a`,
      lr: 0,
      epochs: 6,
      patience: 2,
      bleuLimit: 0,
    });
    assert.equal(s.stopped, "early_stopping");
    assert.equal(s.epochs, 3);
    const a = await readSafetensors(runPath(`${dir}/a`, "model"));
    const b = await readSafetensors(runPath(`${dir}/b`, "model"));
    for (const [name, t] of Object.entries(a.tensors)) {
      assert.deepEqual(b.tensors[name].data, t.data, name);
    }
    assert.equal(
      await Deno.readTextFile(runPath(`${dir}/b`, "tokenizer")),
      await Deno.readTextFile(runPath(`${dir}/a`, "tokenizer")),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gradient accumulation over 2 micro-batches of 8 equals one batch of 16 (no dropout)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = await smallData(dir);
    const common = { epochs: 1, bleuLimit: 0, dropout: 0, shuffle: false, sampleInterval: 0 };
    await train({ ...baseOptions(d, `${dir}/big`), ...common, batchSize: 16 });
    await train({ ...baseOptions(d, `${dir}/acc`), ...common, batchSize: 8, gradAccum: 2 });
    const a = await readSafetensors(runPath(`${dir}/big`, "model"));
    const b = await readSafetensors(runPath(`${dir}/acc`, "model"));
    for (const [name, t] of Object.entries(a.tensors)) {
      // k_proj biases have a mathematically zero gradient (softmax shift invariance); AdamW
      // normalises their round-off, so they move by ±lr either way: nothing to compare
      if (name.endsWith("k_proj.bias")) continue;
      const x = t.data as Float32Array, y = b.tensors[name].data as Float32Array;
      let worst = 0, scale = 1e-6;
      for (let i = 0; i < x.length; i++) {
        worst = Math.max(worst, Math.abs(x[i] - y[i]));
        scale = Math.max(scale, Math.abs(x[i]));
      }
      assert.ok(worst <= 2e-4 * scale, `${name}: ${worst}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "train() on WebGPU learns, resumes after an interruption to the same weights, and evaluates",
  ignore: NO_GPU,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const d = await smallData(dir);
      const gpuOpts = (out: string) => ({
        ...baseOptions(d, out),
        backend: GPU!,
        epochs: 1,
        maxSteps: 4,
        bleuLimit: 4,
        sampleCount: 1,
      });
      const full = await train(gpuOpts(`${dir}/full`));
      assert.equal(full.steps, 4);
      assert.ok(Number.isFinite(full.valid!.loss));
      const ctl = new AbortController();
      await train({
        ...gpuOpts(`${dir}/part`),
        signal: ctl.signal,
        onStep: (s) => s === 2 && ctl.abort(),
      });
      await train({ out: `${dir}/part`, backend: GPU!, quiet: true, resume: true });
      const a = await readSafetensors(runPath(`${dir}/full`, "model"));
      const b = await readSafetensors(runPath(`${dir}/part`, "model"));
      for (const [name, t] of Object.entries(a.tensors)) {
        assert.deepEqual(b.tensors[name].data, t.data, `${name} differs after resume on WebGPU`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "train() with --tune on logs the tuning and ends with the same weights as --tune off",
  ignore: NO_GPU,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const d = await smallData(dir);
      const logs: string[] = [];
      const cache = `${dir}/tuning.json`;
      const run = (out: string, tune: "on" | "off") =>
        train({
          ...baseOptions(d, `${dir}/${out}`),
          backend: GPU!,
          epochs: 1,
          maxSteps: 3,
          bleuLimit: 0,
          sampleInterval: 0,
          quiet: false,
          log: (s: string) => logs.push(s),
          tune,
          tuneVariants: ["t32x32k16_4x4", "t64x64k8_4x4d"],
          // the row kernels only: tiled ones take minutes to compile on GL llvmpipe, and their
          // sums differ by rounding (the weights are compared below)
          tuneAttentionKernels: ["rows"],
          tuneCache: cache,
        });
      await run("off", "off");
      assert.ok(!logs.some((l) => l.startsWith("kernels: tuned")), "tune off tuned");
      await assert.rejects(() => Deno.stat(cache), Deno.errors.NotFound);
      await run("on", "on");
      // the pause is announced before it starts, then summed up
      const begin = logs.findIndex((l) =>
        /^kernels: timing the candidate kernels of [1-9]\d* matmul shapes on this adapter \(once: the choices are cached; --tune off skips this\)$/
          .test(l)
      );
      const attention = logs.findIndex((l) =>
        /^kernels: timing the attention kernels of [1-9]\d* geometries$/.test(l)
      );
      const done = logs.findIndex((l) => l.startsWith("kernels: tuned "));
      assert.ok(begin >= 0 && begin < attention && attention < done, logs.join("\n"));
      assert.ok(
        logs.some((l) =>
          /^kernels: tuned [1-9]\d* matmul shapes and [1-9]\d* attention geometries in [\d.]+ s/
            .test(l)
        ),
        logs.join("\n"),
      );
      assert.ok(logs.includes(`kernels: tuned choices saved to ${cache}`), logs.join("\n"));
      // the cache keeps the attention choices beside the matmul ones
      const saved = JSON.parse(await Deno.readTextFile(cache));
      const keys = Object.values(saved.adapters as Record<string, Record<string, string>>)
        .flatMap((t) => Object.keys(t));
      assert.ok(keys.some((k) => k.startsWith("attention|fwd|")), keys.join(", "));
      assert.ok(keys.some((k) => k.startsWith("attention|bwd|")), keys.join(", "));
      // a later run on the same adapter takes the saved choices and measures nothing
      clearMatmulTuning();
      const before = logs.length;
      await run("again", "on");
      const later = logs.slice(before);
      assert.ok(
        later.some((l) => /^kernels: [1-9]\d* tuned choices for this adapter from /.test(l)),
        later.join("\n"),
      );
      assert.ok(!later.some((l) => l.startsWith("kernels: tuned ")), later.join("\n"));
      assert.ok(!later.some((l) => l.startsWith("kernels: timing ")), later.join("\n"));
      const a = await readSafetensors(runPath(`${dir}/off`, "model"));
      const b = await readSafetensors(runPath(`${dir}/on`, "model"));
      for (const [name, t] of Object.entries(a.tensors)) {
        assert.deepEqual(b.tensors[name].data, t.data, `${name} differs with tuning`);
      }
    } finally {
      clearMatmulTuning();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("train() fetches a Hub tokenizer (local server on 127.0.0.1) when the network is allowed", async () => {
  const dir = await Deno.makeTempDir();
  const tokJson = await Deno.readTextFile(
    new URL("./testdata/tokenizer/trained.json", import.meta.url),
  );
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    seen.push(path);
    return path === "/acme/tok/resolve/main/tokenizer.json"
      ? new Response(tokJson)
      : new Response("not found", { status: 404 });
  });
  try {
    const d = await smallData(dir);
    const endpoint = `http://127.0.0.1:${server.addr.port}`;
    const s = await train({
      ...baseOptions(d, `${dir}/r`),
      tokenizer: "acme/tok",
      hub: { endpoint, cacheDir: `${dir}/cache` },
      maxSteps: 1,
      epochs: 1,
      bleuLimit: 0,
    });
    assert.equal(s.steps, 1);
    assert.ok(seen.includes("/acme/tok/resolve/main/tokenizer.json"));
    assert.equal(
      JSON.parse(await Deno.readTextFile(runPath(`${dir}/r`, "tokenizer"))).model.type,
      JSON.parse(tokJson).model.type,
    );
    await assert.rejects(
      () =>
        train({
          ...baseOptions(d, `${dir}/r2`),
          tokenizer: "acme/missing",
          hub: { endpoint, cacheDir: `${dir}/cache` },
        }),
      /acme\/missing/,
    );
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
