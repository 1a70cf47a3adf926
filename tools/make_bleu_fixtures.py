#!/usr/bin/python3
"""Generates the reference fixtures under tests/testdata/bleu/.

    /usr/bin/python3 tools/make_bleu_fixtures.py            # NLTK + torch fixtures
    SACREBLEU_SRC=/path/to/sacrebleu /usr/bin/python3 tools/make_bleu_fixtures.py

Writes:
  nltk_bleu.json        NLTK sentence_bleu / corpus_bleu, smoothing methods 0-7
  cli_*.txt, cli_expected.json   a small file pair and NLTK's answer for `webseq bleu`
  token_metrics.json    torch CrossEntropyLoss (ignore_index, label_smoothing), accuracy, top-k
  sacrebleu.json        sacreBLEU 13a tokens, BLEU and chrF (only when sacrebleu is importable:
                        installed, or its source checkout named by SACREBLEU_SRC)

Needs Debian's python3-nltk and python3-torch (`apt-get install -y python3-nltk python3-torch`).
sacreBLEU is not packaged by Debian; the pip package or a source checkout of
github.com/mjpost/sacrebleu both work (its optional dependencies are stubbed out).
"""

import json
import math
import os
import random
import sys
import types
import warnings

import nltk
from nltk.translate.bleu_score import (
    SmoothingFunction,
    brevity_penalty,
    closest_ref_length,
    corpus_bleu,
    modified_precision,
    sentence_bleu,
)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "testdata", "bleu")
METHODS = 8


def dump(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def nan_none(x):
    """JSON has no NaN: torch's nan (mean over no tokens) is written as null."""
    return None if math.isnan(x) else x


def all_methods(fn, sf):
    """Runs fn(smoothing_function) for methods 0..7; an exception becomes None."""
    out = []
    for m in range(METHODS):
        try:
            v = fn(getattr(sf, f"method{m}"))
            out.append(float(v))
        except (AssertionError, IndexError, ZeroDivisionError, ValueError):
            out.append(None)
    return out


# ---------------------------------------------------------------- NLTK BLEU

PAPER_HYP1 = ("It is a guide to action which ensures that the military always obeys the "
              "commands of the party").split()
PAPER_HYP2 = ("It is to insure the troops forever hearing the activity guidebook that "
              "party direct").split()
PAPER_REF1 = ("It is a guide to action that ensures that the military will forever heed "
              "Party commands").split()
PAPER_REF2 = ("It is the guiding principle which guarantees the military forces always "
              "being under the command of the Party").split()
PAPER_REF3 = ("It is the practical guide for the army always to heed the directions of "
              "the party").split()


def hand_sentence_cases():
    r = [PAPER_REF1, PAPER_REF2, PAPER_REF3]
    cat1 = "the cat is on the mat".split()
    cat2 = "there is a cat on the mat".split()
    return [
        ("nltk doc hyp1, 3 refs", r, PAPER_HYP1),
        ("nltk doc hyp2, 3 refs (no 3/4-gram match)", r, PAPER_HYP2),
        ("nltk doc hyp1, 1 ref", [PAPER_REF1], PAPER_HYP1),
        ("the the the", [cat1, cat2], "the the the the the the the".split()),
        ("identical", [cat1], list(cat1)),
        ("empty hypothesis", [cat1], []),
        ("empty hypothesis, empty reference", [[]], []),
        ("empty reference", [[]], ["a", "b"]),
        ("one token, matching", [cat1], ["cat"]),
        ("one token, not matching", [cat1], ["dog"]),
        ("two tokens", [cat1], ["the", "cat"]),
        ("three tokens", [cat1], ["the", "cat", "is"]),
        ("four tokens", [cat1], ["the", "cat", "is", "on"]),
        ("five tokens, 4-gram miss", [cat1], ["on", "the", "cat", "is", "mat"]),
        ("no overlap", [cat1], "a b c d e f".split()),
        ("length tie picks shorter ref", [["a"] * 13, ["a"] * 11], ["a"] * 12),
        ("mteval bp example", [["a"] * 11, ["a"] * 8], ["a"] * 7),
        ("hyp longer than refs", [cat1], cat1 + cat1),
        ("clipping across refs", [["a", "a", "b"], ["a", "b", "b"]], ["a", "a", "b", "b", "b"]),
        ("unicode tokens", [["naïve", "café", "😀", "日本"]], ["café", "😀", "日本", "naïve"]),
        ("tokens with commas", [["a,b", "c"]], ["a,b", "c", "a", "b,c"]),
        ("short ref, long hyp", [["x"]], ["x", "y", "x", "y", "x"]),
    ]


def random_sentence(rng, vocab, lo, hi):
    return [rng.choice(vocab) for _ in range(rng.randint(lo, hi))]


def nltk_bleu_cases():
    rng = random.Random(20240501)
    sf = SmoothingFunction()
    cases = []

    def add_sentence(name, refs, hyp, weights=None, auto_reweigh=False, sfx=None, params=None):
        kw = {}
        if weights is not None:
            kw["weights"] = tuple(weights)
        smooth = sfx or sf
        res = all_methods(
            lambda f: sentence_bleu(refs, hyp, smoothing_function=f, auto_reweigh=auto_reweigh, **kw),
            smooth)
        c = {"name": name, "kind": "sentence", "references": refs, "hypothesis": hyp, "bleu": res}
        if weights is not None:
            c["weights"] = list(weights)
        if auto_reweigh:
            c["auto_reweigh"] = True
        if params:
            c["params"] = params
        cases.append(c)

    def add_corpus(name, lrefs, hyps, weights=None, sfx=None, params=None):
        kw = {}
        if weights is not None:
            kw["weights"] = tuple(weights)
        smooth = sfx or sf
        res = all_methods(lambda f: corpus_bleu(lrefs, hyps, smoothing_function=f, **kw), smooth)
        c = {"name": name, "kind": "corpus", "references": lrefs, "hypotheses": hyps, "bleu": res}
        if weights is not None:
            c["weights"] = list(weights)
        if params:
            c["params"] = params
        cases.append(c)

    for name, refs, hyp in hand_sentence_cases():
        add_sentence(name, refs, hyp)

    # Weights other than BLEU-4, and auto_reweigh.
    r = [PAPER_REF1, PAPER_REF2, PAPER_REF3]
    for w in [(0.5, 0.5), (1 / 3, 1 / 3, 1 / 3), (0.2,) * 5, (0.1, 0.3, 0.5, 0.1), (1.0,),
              (0.25,) * 6]:
        add_sentence(f"nltk doc hyp1, weights {len(w)}", r, PAPER_HYP1, weights=w)
        add_sentence(f"nltk doc hyp2, weights {len(w)}", r, PAPER_HYP2, weights=w)
    for hyp in (["the"], ["the", "cat"], ["the", "cat", "sat"], ["on", "the", "mat"]):
        add_sentence(f"auto_reweigh {len(hyp)}", [["the", "cat", "sat", "on", "the", "mat"]], hyp,
                     auto_reweigh=True)

    # Non-default smoothing parameters.
    sf2 = SmoothingFunction(epsilon=0.2, alpha=3, k=2)
    params = {"epsilon": 0.2, "alpha": 3, "k": 2}
    add_sentence("params hyp1", r, PAPER_HYP1, sfx=sf2, params=params)
    add_sentence("params hyp2", r, PAPER_HYP2, sfx=sf2, params=params)

    # Random sentence cases: small vocabularies give many partial overlaps.
    for i in range(170):
        vocab = [f"w{j}" for j in range(rng.choice([3, 5, 8, 12]))]
        nrefs = rng.choice([1, 1, 2, 3])
        refs = [random_sentence(rng, vocab, 0 if rng.random() < 0.05 else 1, 14)
                for _ in range(nrefs)]
        if rng.random() < 0.5:  # hypothesis derived from a reference: high overlap
            hyp = list(rng.choice(refs))
            for _ in range(rng.randint(0, 3)):
                op = rng.random()
                if op < 0.4 and hyp:
                    hyp[rng.randrange(len(hyp))] = rng.choice(vocab + ["zz"])
                elif op < 0.7 and hyp:
                    del hyp[rng.randrange(len(hyp))]
                else:
                    hyp.insert(rng.randint(0, len(hyp)), rng.choice(vocab))
        else:
            hyp = random_sentence(rng, vocab, 0, 14)
        add_sentence(f"random sentence {i}", refs, hyp)

    # Corpus cases.
    add_corpus("nltk doc corpus", [[PAPER_REF1, PAPER_REF2, PAPER_REF3],
                                   ["he was interested in world history because he read the book".split()]],
               [PAPER_HYP1, "he read the book because he was interested in world history".split()])
    add_corpus("corpus with empty hypothesis", [[PAPER_REF1], [PAPER_REF2]], [PAPER_HYP1, []])
    add_corpus("corpus ending with empty hypothesis", [[PAPER_REF2], [PAPER_REF1]], [PAPER_HYP2, []])
    add_corpus("corpus of one-token hypotheses", [[["a", "b"]], [["c"]], [["d", "e", "f"]]],
               [["a"], ["c"], ["e"]])
    add_corpus("corpus all empty", [[["a"]], [["b", "c"]]], [[], []])
    add_corpus("corpus weights 2", [[PAPER_REF1], [PAPER_REF3]], [PAPER_HYP1, PAPER_HYP2],
               weights=(0.5, 0.5))
    add_corpus("corpus weights 5", [[PAPER_REF1], [PAPER_REF3]], [PAPER_HYP1, PAPER_HYP2],
               weights=(0.2,) * 5)
    add_corpus("corpus params", [[PAPER_REF1, PAPER_REF2], [PAPER_REF3]],
               [PAPER_HYP2, PAPER_HYP1], sfx=sf2, params=params)
    for i in range(40):
        vocab = [f"w{j}" for j in range(rng.choice([4, 6, 10]))]
        n = rng.randint(1, 6)
        lrefs, hyps = [], []
        for _ in range(n):
            nrefs = rng.choice([1, 1, 2])
            refs = [random_sentence(rng, vocab, 1, 12) for _ in range(nrefs)]
            if rng.random() < 0.6:
                hyp = list(refs[0])
                if hyp and rng.random() < 0.7:
                    hyp[rng.randrange(len(hyp))] = rng.choice(vocab)
                if hyp and rng.random() < 0.3:
                    hyp.pop()
            else:
                hyp = random_sentence(rng, vocab, 0, 10)
            lrefs.append(refs)
            hyps.append(hyp)
        add_corpus(f"random corpus {i}", lrefs, hyps)

    # Helper functions.
    helpers = {"modified_precision": [], "closest_ref_length": [], "brevity_penalty": []}
    for refs, hyp in [([PAPER_REF1, PAPER_REF2, PAPER_REF3], PAPER_HYP1),
                      ([PAPER_REF1, PAPER_REF2, PAPER_REF3], PAPER_HYP2),
                      (["the cat is on the mat".split(), "there is a cat on the mat".split()],
                       "the the the the the the the".split()),
                      ([["a", "b"]], ["a"]), ([["a"]], [])]:
        for n in range(1, 6):
            p = modified_precision(refs, hyp, n)
            helpers["modified_precision"].append(
                {"references": refs, "hypothesis": hyp, "n": n,
                 "numerator": p.numerator, "denominator": p.denominator})
    for lens, h in [([12, 15, 17], 12), ([13, 2], 12), ([13, 11], 12), ([11, 13], 12),
                    ([11, 8], 7), ([11, 8, 6, 7], 7), ([5], 0), ([0], 3)]:
        helpers["closest_ref_length"].append(
            {"ref_lengths": lens, "hyp_len": h,
             "expected": closest_ref_length([["a"] * k for k in lens], h)})
    for r_, h in [(12, 12), (28, 12), (13, 12), (8, 7), (5, 0), (0, 3), (10, 11), (100, 1)]:
        helpers["brevity_penalty"].append(
            {"closest_ref_len": r_, "hyp_len": h, "expected": float(brevity_penalty(r_, h))})

    return {
        "generator": "tools/make_bleu_fixtures.py",
        "reference": f"nltk {nltk.__version__} nltk.translate.bleu_score (Python {sys.version.split()[0]})",
        "note": "bleu[m] is the score with SmoothingFunction().method{m}; null where NLTK raises",
        "cases": cases,
        "helpers": helpers,
    }


# ---------------------------------------------------------------- CLI fixture

def cli_fixture():
    rng = random.Random(7)
    vocab = "the a cat dog sat on mat rug is was big small".split()
    refs_a, refs_b, hyps = [], [], []
    for i in range(12):
        ra = random_sentence(rng, vocab, 3, 10)
        rb = random_sentence(rng, vocab, 3, 10)
        h = list(ra)
        if i % 3 == 1 and h:
            h[rng.randrange(len(h))] = rng.choice(vocab)
        if i % 4 == 2:
            h = random_sentence(rng, vocab, 1, 6)
        if i == 5:
            h = []
        refs_a.append(ra)
        refs_b.append(rb)
        hyps.append(h)
    # Extra whitespace must not matter (whitespace tokenization).
    hyp_lines = [("  " + "   ".join(h) + " ") if i == 3 else " ".join(h) for i, h in enumerate(hyps)]
    for name, lines in [("cli_refs_a.txt", [" ".join(r) for r in refs_a]),
                        ("cli_refs_b.txt", [" ".join(r) for r in refs_b]),
                        ("cli_hyps.txt", hyp_lines),
                        ("cli_hyps_short.txt", hyp_lines[:-2])]:
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    sf = SmoothingFunction()
    expected = {}
    for label, lrefs in [("one_ref", [[ra] for ra in refs_a]),
                         ("two_refs", [[ra, rb] for ra, rb in zip(refs_a, refs_b)])]:
        for m in (0, 1, 4, 7):
            f = getattr(sf, f"method{m}")
            sent = [float(sentence_bleu(r, h, smoothing_function=f)) for r, h in zip(lrefs, hyps)]
            expected[f"{label}_method{m}"] = {
                "sentence": sent,
                "sentence_mean": math.fsum(sent) / len(sent),
                "corpus": float(corpus_bleu(lrefs, hyps, smoothing_function=f)),
            }
    dump("cli_expected.json", {"reference": f"nltk {nltk.__version__}", "expected": expected})


# ---------------------------------------------------------------- torch token metrics

def token_metric_fixtures():
    import torch

    rng = random.Random(99)
    cases = []
    for i, (N, V, ignore, ls, dtype) in enumerate([
        (7, 5, 0, 0.0, "float64"), (7, 5, 0, 0.1, "float64"), (12, 11, -100, 0.0, "float64"),
        (12, 11, -100, 0.2, "float64"), (9, 17, 3, 0.05, "float64"), (16, 8, 0, 0.0, "float32"),
        (16, 8, 0, 0.1, "float32"), (5, 3, 1, 0.5, "float64"), (20, 32, 0, 0.1, "float64"),
        (6, 4, 0, 0.0, "float64"),
    ]):
        scale = 8.0 if i == 8 else 3.0  # one case with large logits
        logits = [rng.gauss(0.0, scale) for _ in range(N * V)]
        if dtype == "float32":
            logits = torch.tensor(logits, dtype=torch.float32).tolist()  # round to f32 values
        targets = [rng.randrange(V) for _ in range(N)]
        for j in range(N):  # ignored positions (and ignore index equal to a class id)
            if rng.random() < 0.25:
                targets[j] = ignore
        if i == 9:
            targets = [ignore] * N  # all ignored: torch gives nan
        tdt = torch.float64 if dtype == "float64" else torch.float32
        x = torch.tensor(logits, dtype=tdt).reshape(N, V)
        t = torch.tensor(targets, dtype=torch.long)
        ce = torch.nn.CrossEntropyLoss(ignore_index=ignore, label_smoothing=ls)(x, t).item()
        ce_plain = torch.nn.CrossEntropyLoss(ignore_index=ignore)(x, t).item()
        ce_sum = torch.nn.CrossEntropyLoss(ignore_index=ignore, reduction="sum",
                                           label_smoothing=ls)(x, t).item()
        mask = t != ignore
        count = int(mask.sum().item())
        pred = x.argmax(dim=-1)
        correct = int(((pred == t) & mask).sum().item())
        topk = {}
        for k in (1, 2, 3, 5):
            kk = min(k, V)
            idx = x.topk(kk, dim=-1).indices
            hit = (idx == t.unsqueeze(-1)).any(dim=-1) & mask
            topk[str(k)] = int(hit.sum().item())
        cases.append({
            "N": N, "V": V, "ignore_index": ignore, "label_smoothing": ls, "dtype": dtype,
            "logits": logits, "targets": targets, "loss": nan_none(ce), "loss_sum": ce_sum,
            "loss_no_smoothing": nan_none(ce_plain), "count": count, "correct": correct,
            "topk_correct": topk,
            "perplexity": math.exp(ce_plain) if count else None,
        })
    dump("token_metrics.json", {"reference": f"torch {torch.__version__} nn.CrossEntropyLoss",
                                "cases": cases})


# ---------------------------------------------------------------- sacreBLEU (optional)

def import_sacrebleu():
    try:
        import sacrebleu  # noqa: F401
        from sacrebleu.metrics.bleu import BLEU
        from sacrebleu.metrics.chrf import CHRF
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
        return BLEU, CHRF, Tokenizer13a, f"sacrebleu {sacrebleu.__version__}"
    except ImportError:
        pass
    src = os.environ.get("SACREBLEU_SRC")
    if not src:
        return None
    pkg_dir = os.path.join(src, "sacrebleu") if os.path.isdir(os.path.join(src, "sacrebleu")) else src
    for name in ["portalocker", "tabulate", "colorama", "lxml", "lxml.etree"]:
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
    sys.modules["tabulate"].tabulate = lambda *a, **k: ""
    pkg = types.ModuleType("sacrebleu")
    pkg.__path__ = [pkg_dir]
    sys.modules["sacrebleu"] = pkg
    if not os.path.exists(os.path.join(pkg_dir, "version.py")):
        ver = types.ModuleType("sacrebleu.version")
        ver.__version__ = "2.x"
        sys.modules["sacrebleu.version"] = ver
    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.chrf import CHRF
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    return BLEU, CHRF, Tokenizer13a, f"sacrebleu source checkout ({os.environ.get('SACREBLEU_REV', 'unknown rev')})"


def sacrebleu_fixtures():
    got = import_sacrebleu()
    if got is None:
        print("sacrebleu not importable (set SACREBLEU_SRC): sacrebleu.json left as is")
        return
    BLEU, CHRF, Tokenizer13a, label = got
    tok = Tokenizer13a()
    tok_inputs = [
        "Hello, world!", "The cat sat on the mat.", "It costs $3.50, or 3,000 yen.",
        "Well-known 1990-2000 range-based", "a.b,c 1.2,3 x.5 5.y", "&quot;quoted&quot; &amp; &lt;tag&gt;",
        "Don't stop (now) [or] {ever}: ok; fine?", "   leading and trailing   ", "<skipped> word",
        "line-\nbreak and\nnewline", "e-mail: someone@example.com / path\\to\\file", "~tilde ^caret _u_ `bq`",
        "naïve café — “quotes” 😀.", "end with period .", "123-456-7890", "...", "a..b,,c", "",
        "tab\tseparated\u00a0nbsp", "x\u3000y\u2003z", "1,2.3-4", "#hash %pct *star +plus =eq |bar",
    ]
    tokens = [{"input": s, "expected": tok(s)} for s in tok_inputs]

    rng = random.Random(5)
    words = "The cat sat on the mat . , ! ? 3.5 well-known Hello world it's a dog (big) \"quoted\"".split()

    def rs(lo, hi):
        return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))

    bleu_cases = []
    for i in range(14):
        n = rng.randint(1, 6)
        nrefs = 1 if i % 3 else 2
        refs = [[rs(2, 12) for _ in range(nrefs)] for _ in range(n)]
        hyps = []
        for r in refs:
            if rng.random() < 0.6:
                ws = r[0].split()
                if ws and rng.random() < 0.7:
                    ws[rng.randrange(len(ws))] = rng.choice(words)
                hyps.append(" ".join(ws))
            else:
                hyps.append(rs(0, 10))
        bleu_cases.append({"references": refs, "hypotheses": hyps})
    bleu_cases.append({"references": [["The cat is on the mat."], ["Hello world!"]],
                       "hypotheses": ["The cat sat on the mat.", "Hello, world!"]})
    bleu_cases.append({"references": [["a b c d"], ["e f"]], "hypotheses": ["a b x y", ""]})
    bleu_cases.append({"references": [["a b"]], "hypotheses": ["c d"]})
    bleu_cases.append({"references": [["A B C D E"]], "hypotheses": ["a b c d e"]})

    configs = [
        {}, {"lowercase": True}, {"tokenize": "none"}, {"smooth_method": "floor"},
        {"smooth_method": "add-k"}, {"smooth_method": "none"}, {"effective_order": True},
        {"smooth_method": "floor", "smooth_value": 0.3}, {"max_ngram_order": 2},
    ]
    for c in bleu_cases:
        c["bleu"] = []
        for cfg in configs:
            m = BLEU(**cfg)
            streams = [list(x) for x in zip(*c["references"])]
            s = m.corpus_score(c["hypotheses"], streams)
            c["bleu"].append({"config": cfg, "score": s.score, "counts": list(s.counts),
                              "totals": list(s.totals), "precisions": list(s.precisions),
                              "bp": s.bp, "sys_len": s.sys_len, "ref_len": s.ref_len,
                              "signature": str(m.get_signature())})
        m = BLEU(effective_order=True)
        c["sentence_bleu"] = [m.sentence_score(h, list(r)).score
                              for h, r in zip(c["hypotheses"], c["references"])]
        c["chrf"] = []
        for cfg in [{}, {"word_order": 2}, {"beta": 1}, {"lowercase": True}, {"whitespace": True},
                    {"eps_smoothing": True}, {"char_order": 3}]:
            m = CHRF(**cfg)
            streams = [list(x) for x in zip(*c["references"])]
            c["chrf"].append({"config": cfg,
                              "score": m.corpus_score(c["hypotheses"], streams).score,
                              "sentence": [m.sentence_score(h, list(r)).score
                                           for h, r in zip(c["hypotheses"], c["references"])],
                              "signature": str(m.get_signature())})
    dump("sacrebleu.json", {"reference": label, "tokenize_13a": tokens, "cases": bleu_cases})


def main():
    warnings.simplefilter("ignore")
    os.makedirs(OUT, exist_ok=True)
    dump("nltk_bleu.json", nltk_bleu_cases())
    cli_fixture()
    token_metric_fixtures()
    sacrebleu_fixtures()


if __name__ == "__main__":
    main()
