"""Issue 16, item 3: robustkit's text audit side by side with TextAttack's PWWS, in one run.

On one text checkpoint (the standard MiniLM model) and the same SST-2 dev sentences, under the same two
constraints -- at most 20% of the words changed (robustkit's ``budget``: floor(0.2 n), at least 1, over the
whitespace tokens of the original) and MiniLM sentence-embedding cosine >= 0.8 between original and
perturbed text (robustkit's own ``SentenceEncoder.from_name("minilm-l6")``) -- it runs:

* PWWS (Ren et al. 2019), built from TextAttack 0.3.11's components exactly as
  ``textattack.attack_recipes.PWWSRen2019`` builds it (WordSwapWordNet; RepeatModification +
  StopwordModification; UntargetedClassification; GreedyWordSwapWIR("weighted-saliency")), plus the two
  shared constraints as TextAttack constraints. The stop-word list is robustkit's ``STOP_WORDS`` (a superset
  of NLTK's English list, passed as ``StopwordModification(stopwords=...)``), so no NLTK stop-word corpus is
  needed by PWWS; the word-budget constraint also keeps robustkit's rule that only alphabetic words of two
  letters or more that are not stop words change (``robustkit.attacks.discrete.eligible``), so both sides
  search the same space. TextAttack's own MaxModificationRate is not used: it rounds up.
* robustkit's text audit: ``robustkit.evaluate`` with a ``SubstitutionThreat(0.2)`` and a text preset
  (``--preset``, default "standard": word + char) or an explicit ``--attacks`` ensemble, the per-sentence
  worst case.

Afterwards every adversarial text of both sides is re-checked with ``robustkit.attacks.discrete.
check_constraints`` (whitespace tokens, robustkit's stop words, similarity recomputed with the same encoder);
a success that breaks a constraint counts as a failure in the "checked" figures. Note that the ``char``
attack of the text presets keeps no similarity floor of its own, so its successes can fail this re-check:
the checked figures are the like-for-like comparison. An ensemble held to the same floor throughout:
``--attacks '[["word", {}], ["char", {"min_similarity": 0.8}]]'``.

Reported (JSON + a Markdown summary): clean accuracy, accuracy under each attack (raw and checked) with 95%
Clopper-Pearson intervals, wall and CPU seconds of each side (``time.process_time``; run with one thread,
the default), the speed ratio, per-attack breakdown, mean words changed, queries, and the sentences where
robustkit's audit is not at least as strong as PWWS. The JSON is written atomically every ``--save-every``
sentences; rerunning with the same ``--out`` resumes (the same checkpoint and sentences are checked).

Setup (no network is used; nothing is downloaded):

    make bench-text-deps   # pip install --no-deps textattack==0.3.11 + its small deps (requirements-textattack.txt)
    OMP_NUM_THREADS=1 python benchmarks/text_vs_pwws.py --run runs/sst2-minilm-house --data-dir ../shared/data \\
        --size 872 --preset standard --out benchmarks/results/text_vs_pwws.json

NLTK's WordNet reader is pointed at Debian's WordNet 3.0 files (``wordnet-base``): a folder
``$ROBUSTKIT_CACHE/nltk_data`` (default ``~/.cache/robustkit/nltk_data``) gets ``corpora/wordnet/`` with
copies of them (NLTK's path sandbox refuses symlinks leading out of the corpus folder and hard-linked
files), a ``lexnames`` file (generated from the lexnames(5WN) man page, else from the table below)
and an empty ``index.sense`` (NLTK opens it when the reader is built, only to map other WordNet versions'
sense keys for the multilingual OMW data, which PWWS does not use), and ``corpora/stopwords/english``
(robustkit's list: ``import textattack`` builds default StopwordModification() objects for its augmentation
recipes at import time, which read NLTK's list; PWWS here gets its list explicitly). ``nltk.download`` is
replaced by a function that refuses, so WordSwapWordNet's ``nltk.download("omw-1.4")`` and the post-install
step TextAttack runs on its first import (``nltk.download`` of six packages; ``stanza.download``, skipped when
stanza is absent) do nothing.

Timing: both sides run in this process, one after the other, with ``--threads`` torch threads (default 1).
PWWS's time is the sum over sentences of ``Attack.attack`` (building the attack, which loads NLTK's WordNet,
is reported apart); robustkit's is the sum over blocks of ``evaluate`` (its WordNet load falls in the first
block). The MiniLM similarity encoder is loaded once before either. ``--pwws-from`` reuses PWWS's rows of an
earlier run (times from another process: the summary says so through ``pwws.from``).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import time
import types
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent

# lexnames(5WN): file number, lexicographer file name; the syntactic category follows from the name.
LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
            "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
            "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
            "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
            "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
            "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
            "adj.ppl").split()
POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")


# -- NLTK data from Debian's WordNet files ------------------------------------------------------------------
def _lexnames_lines() -> tuple[list[str], str]:
    """NLTK's ``lexnames`` file: "NN<tab>name<tab>pos number", one line per lexicographer file (45)."""
    names, source = None, "built-in table (lexnames(5WN))"
    if LEXNAMES_MAN.is_file():
        text = gzip.decompress(LEXNAMES_MAN.read_bytes()).decode("utf-8", "replace")
        rows = re.findall(r"^(\d\d)\t(\w+\.\w+)\s*\t", text, flags=re.M)
        if len(rows) == 45 and [int(n) for n, _ in rows] == list(range(45)):
            names, source = [name for _, name in rows], str(LEXNAMES_MAN)
    names = names or LEXNAMES
    return [f"{i:02d}\t{name}\t{POS_NUMBER[name.split('.')[0]]}" for i, name in enumerate(names)], source


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)


def prepare_nltk_data() -> dict:
    """Build the nltk_data folder (see the module docstring), put it first on nltk.data.path and disable
    nltk.download. Returns what was used, for the report."""
    import nltk

    from robustkit.attacks.discrete import STOP_WORDS
    from robustkit.data.wordnet import find_wordnet
    wn = find_wordnet()
    if wn is None:
        raise SystemExit("WordNet 3.0 database files not found (apt-get install wordnet-base, or set WNSEARCHDIR)")
    cache = Path(os.environ.get("ROBUSTKIT_CACHE") or Path.home() / ".cache" / "robustkit")
    folder = cache / "nltk_data"
    corpus = folder / "corpora" / "wordnet"
    corpus.mkdir(parents=True, exist_ok=True)
    # Copies (about 30 MB): NLTK's path sandbox (nltk.pathsec, NLTK >= 3.9) refuses a symlink leading out of
    # the corpus folder and any file with more than one hard link.
    for f in sorted(wn.iterdir()):
        if not f.is_file():
            continue
        dest = corpus / f.name
        st = f.stat()
        if dest.is_file() and not dest.is_symlink() and dest.stat().st_nlink == 1 and (
                dest.stat().st_size, int(dest.stat().st_mtime)) == (st.st_size, int(st.st_mtime)):
            continue
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        shutil.copy2(f, tmp)
        os.replace(tmp, dest)
    lines, lex_source = _lexnames_lines()
    _write_if_changed(corpus / "lexnames", "\n".join(lines) + "\n")
    # NLTK opens index.sense while building the reader (map_wn -> index_sense) to map sense keys of other
    # WordNet versions for the OMW data; synsets() and lemma_names() never read it. Empty is enough.
    if not (corpus / "index.sense").is_file():
        (corpus / "index.sense").write_text("")
    stop = folder / "corpora" / "stopwords"
    stop.mkdir(parents=True, exist_ok=True)
    _write_if_changed(stop / "english", "\n".join(sorted(STOP_WORDS)) + "\n")
    if str(folder) not in nltk.data.path:
        nltk.data.path.insert(0, str(folder))

    def no_download(*args, **kwargs):  # WordSwapWordNet calls nltk.download("omw-1.4"): never fetch anything
        return False
    nltk.download = no_download
    return {"nltk_data": str(folder), "wordnet_files": str(wn), "wordnet_files_as": "copies",
            "lexnames_from": lex_source, "nltk": nltk.__version__}


# -- TextAttack without its heavy dependencies --------------------------------------------------------------
def import_textattack():
    """``import textattack`` imports every transformation and constraint it ships at import time, and some of
    those import packages PWWS never uses (flair, jieba, OpenHowNet, language_tool_python, bert_score,
    datasets), which ``pip install --no-deps`` leaves out. Empty stand-in modules satisfy those imports; any
    real use of them would fail loudly (the names they hold are placeholders)."""
    def stub(name, **attrs):
        if name in sys.modules:
            return sys.modules[name]
        m = types.ModuleType(name)
        m.__path__ = []
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m
    for name in ("flair", "flair.data", "flair.models", "jieba", "OpenHowNet", "language_tool_python", "bert_score",
                 "datasets"):
        try:
            __import__(name)
        except ImportError:
            stub(name)
    for name in ("flair.data", "flair.models"):  # `import flair` then `flair.data.Tokenizer`: attributes too
        parent, child = name.split(".")
        if not hasattr(sys.modules[parent], child):
            setattr(sys.modules[parent], child, sys.modules[name])
    sys.modules["flair.data"].__dict__.setdefault("Tokenizer", object)
    sys.modules["flair.data"].__dict__.setdefault("Sentence", object)
    sys.modules["flair.models"].__dict__.setdefault("SequenceTagger", object)
    import textattack
    return textattack


def build_pwws(model, encoder, max_share: float, min_similarity: float):
    """PWWSRen2019.build's attack plus the two shared constraints."""
    from textattack import Attack
    from textattack.constraints import Constraint
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.goal_functions import UntargetedClassification
    from textattack.models.wrappers import ModelWrapper
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import WordSwapWordNet

    from robustkit.attacks.discrete import STOP_WORDS, AttackResult, check_constraints

    class RobustkitModel(ModelWrapper):
        """A robustkit TextClassifier as TextAttack expects it: texts -> class probabilities (numpy)."""

        def __init__(self, m):
            self.model = m

        def __call__(self, text_input_list, **kwargs):
            return self.model.predict_proba(list(text_input_list), batch_size=64).float().cpu().numpy()

    class WordBudget(Constraint):
        """robustkit's word rule, through robustkit's own check: same whitespace tokens, at most
        budget(n, max_share) of them changed, and only eligible words (alphabetic, 2+ letters, no stop word)."""

        def __init__(self):
            super().__init__(compare_against_original=True)

        def _check_constraint(self, transformed_text, reference_text):
            r = AttackResult(original=reference_text.text, adversarial=transformed_text.text, label=0,
                             pred_original=0, pred_adversarial=0, success=False, skipped=False)
            return not check_constraints(r, max_share=max_share, stop_words=STOP_WORDS, min_similarity=None)

    class MiniLMSimilarity(Constraint):
        """Cosine of robustkit's MiniLM sentence embeddings (original vs. perturbed) >= min_similarity,
        batched over all candidates of a step."""

        def __init__(self):
            super().__init__(compare_against_original=True)
            self._ref: tuple[str, torch.Tensor] | None = None

        def _check_constraint_many(self, transformed_texts, reference_text):
            if not transformed_texts:
                return []
            if self._ref is None or self._ref[0] != reference_text.text:
                self._ref = (reference_text.text, encoder([reference_text.text])[0])
            sims = encoder([t.text for t in transformed_texts]) @ self._ref[1]
            return [t for t, s in zip(transformed_texts, sims.tolist()) if s >= min_similarity]

        def _check_constraint(self, transformed_text, reference_text):
            return bool(self._check_constraint_many([transformed_text], reference_text))

        def extra_repr_keys(self):
            return ["compare_against_original"]

    wrapper = RobustkitModel(model)
    transformation = WordSwapWordNet()
    constraints = [RepeatModification(), StopwordModification(stopwords=STOP_WORDS), WordBudget(),
                   MiniLMSimilarity()]
    goal_function = UntargetedClassification(wrapper)
    search_method = GreedyWordSwapWIR("weighted-saliency")
    return Attack(goal_function, constraints, transformation, search_method)


# -- shared helpers -----------------------------------------------------------------------------------------
def words_changed(original: str, adversarial: str) -> int | None:
    a, b = original.split(), adversarial.split()
    return sum(x != y for x, y in zip(a, b)) if len(a) == len(b) else None


def recheck(rows: list[dict], texts: dict[int, str], encoder, max_share: float, min_similarity: float) -> None:
    """Add similarity, violations and success_checked to rows (those with a success are checked)."""
    from robustkit.attacks.discrete import STOP_WORDS, AttackResult, check_constraints
    todo = [r for r in rows if "success_checked" not in r]
    need = [r for r in todo if r["success"]]
    if need:
        emb_o = encoder([texts[r["i"]] for r in need])
        emb_a = encoder([r["adversarial"] for r in need])
        for r, s in zip(need, (emb_o * emb_a).sum(-1).tolist()):
            r["similarity"] = round(s, 6)
    for r in todo:
        if not r["success"]:
            r["violations"], r["success_checked"] = [], False
            continue
        res = AttackResult(original=texts[r["i"]], adversarial=r["adversarial"], label=r["label"],
                           pred_original=r["pred_clean"], pred_adversarial=r["pred_adv"], success=True,
                           skipped=False, similarity=r["similarity"])
        r["violations"] = check_constraints(res, max_share=max_share, stop_words=STOP_WORDS,
                                            min_similarity=min_similarity)
        r["success_checked"] = not r["violations"]


def save(doc: dict, out: Path) -> None:
    from robustkit.checkpoint import atomic_write_text
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1))


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# -- PWWS ---------------------------------------------------------------------------------------------------
def run_pwws(doc, out, model, encoder, texts, labels, start, args) -> None:
    side = doc.setdefault("pwws", {"rows": [], "complete": False})
    done = {r["i"] for r in side["rows"]}
    todo = [k for k in range(len(texts)) if start + k not in done]
    if not todo:
        side["complete"] = True
        return
    from textattack.attack_results import FailedAttackResult, SkippedAttackResult, SuccessfulAttackResult
    t0 = time.perf_counter()
    attack = build_pwws(model, encoder, args.max_share, args.min_similarity)
    side["setup_seconds"] = round(time.perf_counter() - t0, 3)
    side["config"] = {"textattack": _version("textattack"), "attack": repr(attack)}
    print(attack, file=sys.stderr)
    by_i = {start + k: t for k, t in enumerate(texts)}
    pending = []
    for n, k in enumerate(todo, 1):
        text, label = texts[k], int(labels[k])
        w0, c0 = time.perf_counter(), time.process_time()
        res = attack.attack(text, label)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        adv = res.perturbed_result.attacked_text.text
        status = {SuccessfulAttackResult: "successful", FailedAttackResult: "failed",
                  SkippedAttackResult: "skipped"}.get(type(res), type(res).__name__)
        row = {"i": start + k, "label": label, "pred_clean": int(res.original_result.output),
               "pred_adv": int(res.perturbed_result.output), "status": status,
               "success": status == "successful", "adversarial": adv if status == "successful" else None,
               "words_changed": words_changed(text, adv) if status == "successful" else 0,
               "textattack_words_changed": len(res.original_result.attacked_text.all_words_diff(
                   res.perturbed_result.attacked_text)) if status == "successful" else 0,
               "queries": int(res.perturbed_result.num_queries), "seconds": round(wall, 4),
               "cpu_seconds": round(cpu, 4)}
        side["rows"].append(row)
        pending.append(row)
        if n % args.save_every == 0 or n == len(todo):
            recheck(pending, by_i, encoder, args.max_share, args.min_similarity)
            pending = []
            side["rows"].sort(key=lambda r: r["i"])
            side["complete"] = n == len(todo)
            save(doc, out)
            print(f"PWWS: {len(side['rows'])}/{len(texts)} sentences, {sum(r['seconds'] for r in side['rows']):.0f}s",
                  file=sys.stderr, flush=True)


def earlier_pwws(path: str, doc: dict, texts, labels, start) -> dict:
    """PWWS rows of an earlier run of this script: same checkpoint, same constraints, same sentences."""
    old = json.loads(Path(path).read_text())
    cfg, ocfg = doc["config"], old.get("config", {})
    for key in ("checkpoint_sha256", "max_share", "min_similarity", "data"):
        if ocfg.get(key) != cfg[key]:
            raise SystemExit(f"{path}: {key} differs ({ocfg.get(key)!r} there, {cfg[key]!r} here): PWWS not reused")
    rows = {r["i"]: r for r in (old.get("pwws") or {}).get("rows", [])}
    old_texts = old.get("texts", {})
    missing = [start + k for k in range(len(texts)) if start + k not in rows]
    if missing:
        raise SystemExit(f"{path} has no PWWS result for {len(missing)} of these sentences (first: {missing[0]})")
    for k, t in enumerate(texts):
        i = start + k
        if old_texts.get(str(i), t) != t or rows[i]["label"] != int(labels[k]):
            raise SystemExit(f"{path}: sentence {i} differs from this run's: PWWS not reused")
    picked = [rows[start + k] for k in range(len(texts))]
    return {"rows": picked, "complete": True, "config": old["pwws"].get("config"),
            "from": f"{path} (an earlier run of this script, {old.get('environment', {}).get('git_commit')})"}


# -- robustkit ----------------------------------------------------------------------------------------------
@contextmanager
def per_example_records(sink: list):
    """evaluate() keeps only each attack's summary; this records the per-example AttackResults it summarizes
    (for per-sentence queries), by wrapping DiscreteAttack.summarize for the duration."""
    from robustkit.attacks.discrete import DiscreteAttack
    original = DiscreteAttack.summarize

    def summarize(self, results):
        sink.append((self.name, list(results)))
        return original(self, results)
    DiscreteAttack.summarize = summarize
    try:
        yield
    finally:
        DiscreteAttack.summarize = original


def run_ours(doc, out, model, encoder, texts, labels, start, args) -> None:
    from robustkit.evaluation import evaluate
    from robustkit.threat import SubstitutionThreat
    side = doc.setdefault("ours", {"rows": [], "blocks": [], "complete": False})
    threat = SubstitutionThreat(args.max_share)
    attacks = json.loads(args.attacks) if args.attacks else None
    side["config"] = {"preset": "custom" if attacks else args.preset, "attacks": attacks, "seed": args.seed,
                      "batch_size": args.batch_size, "block": args.block, "threat": threat.to_dict()}
    by_i = {start + k: t for k, t in enumerate(texts)}
    k0 = len(side["rows"])
    for b0 in range(k0, len(texts), args.block):
        bt, by = texts[b0:b0 + args.block], labels[b0:b0 + args.block]
        sink: list = []
        w0, c0 = time.perf_counter(), time.process_time()
        with per_example_records(sink):
            res = evaluate(model, bt, by, threat, args.preset, attacks=attacks, seed=args.seed,
                           batch_size=args.batch_size)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        queries = [0] * len(bt)
        where: dict[str, list[int]] = {}
        for k, t in enumerate(bt):
            where.setdefault(t, []).append(k)
        for _name, results in sink:
            left = {t: list(v) for t, v in where.items()}
            for r in results:
                queries[left[r.original].pop(0)] += int(r.queries)
        d = res.to_dict(per_sample=False)
        side["blocks"].append({"first": start + b0, "n": len(bt), "seconds": round(wall, 3),
                               "cpu_seconds": round(cpu, 3), "attacks": d["attacks"], "notes": d["notes"]})
        rows = []
        for k in range(len(bt)):
            success = bool(res.clean_correct[k]) and not bool(res.robust[k])
            adv = res.x_adv[k]
            rows.append({"i": start + b0 + k, "label": int(by[k]), "pred_clean": int(res.pred_clean[k]),
                         "pred_adv": int(res.pred_adv[k]), "broken_by": res.broken_by[k], "success": success,
                         "adversarial": adv if success else None,
                         "words_changed": words_changed(bt[k], adv) if success else 0, "queries": queries[k]})
        recheck(rows, by_i, encoder, args.max_share, args.min_similarity)
        side["rows"] += rows
        side["complete"] = len(side["rows"]) == len(texts)
        save(doc, out)
        print(f"ours: {len(side['rows'])}/{len(texts)} sentences, {sum(b['seconds'] for b in side['blocks']):.0f}s",
              file=sys.stderr, flush=True)


# -- the report ---------------------------------------------------------------------------------------------
def _mean(xs):
    xs = [x for x in xs if x is not None]
    return round(sum(xs) / len(xs), 4) if xs else None


def side_summary(rows: list[dict], wall: float, cpu: float) -> dict:
    from robustkit.evaluation.stats import accuracy_with_ci
    n = len(rows)
    clean = sum(r["pred_clean"] == r["label"] for r in rows)
    raw = clean - sum(r["success"] for r in rows)
    checked = clean - sum(r["success_checked"] for r in rows)
    wins = [r for r in rows if r["success_checked"]]
    attacked = [r for r in rows if r["pred_clean"] == r["label"]]
    return {"n": n, "clean_accuracy": accuracy_with_ci(clean, n), "accuracy_under_attack": accuracy_with_ci(checked, n),
            "accuracy_under_attack_raw": accuracy_with_ci(raw, n),
            "constraint_violations": sum(bool(r["violations"]) for r in rows),
            "mean_words_changed": _mean([r["words_changed"] for r in wins]),
            "mean_share_changed": _mean([r["words_changed"] / max(1, len(r["adversarial"].split())) for r in wins]),
            "mean_similarity": _mean([r.get("similarity") for r in wins]),
            "mean_queries": _mean([r["queries"] for r in attacked]),
            "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "wall_seconds_per_sentence": round(wall / n, 4) if n else None}


def summarize(doc: dict) -> dict:
    pw, ours = doc.get("pwws") or {}, doc.get("ours") or {}
    prow, orow = {r["i"]: r for r in pw.get("rows", [])}, {r["i"]: r for r in ours.get("rows", [])}
    common = sorted(set(prow) & set(orow)) if prow and orow else sorted(prow or orow)
    s = {"sentences": len(common), "complete": bool(pw.get("complete") and ours.get("complete"))}
    if prow:
        rows = [prow[i] for i in common if i in prow]
        s["pwws"] = side_summary(rows, sum(r["seconds"] for r in rows), sum(r["cpu_seconds"] for r in rows))
        s["pwws"]["from"] = pw.get("from")
        # building the attack (NLTK's WordNet reader loads here) is left out of PWWS's time; robustkit's
        # WordNet load (about a second) falls in its first block and is counted
        s["pwws"]["setup_seconds_not_counted"] = pw.get("setup_seconds")
    if orow:
        rows = [orow[i] for i in common if i in orow]
        blocks = [b for b in ours.get("blocks", []) if b["first"] in set(common)]
        # blocks cover whole runs of sentences; with a partial PWWS side the times are scaled to the share covered
        covered = sum(b["n"] for b in blocks) or 1
        wall = sum(b["seconds"] for b in blocks) * len(rows) / covered if blocks else 0.0
        cpu = sum(b["cpu_seconds"] for b in blocks) * len(rows) / covered if blocks else 0.0
        s["ours"] = side_summary(rows, wall, cpu)
        per: dict[str, dict] = {}
        for b in blocks:
            for a in b["attacks"]:
                p = per.setdefault(a["name"], {"n_attacked": 0, "n_broken": 0, "seconds": 0.0, "params": a["params"]})
                p["n_attacked"] += a["n_attacked"]
                p["n_broken"] += a["n_broken"]
                p["seconds"] = round(p["seconds"] + a["seconds"], 3)
        s["ours"]["per_attack"] = per
        s["ours"]["broken_by"] = {k: sum(r["broken_by"] == k for r in rows if r["success_checked"])
                                  for k in sorted({r["broken_by"] for r in rows if r["success"]})}
    if prow and orow:
        p, o = s["pwws"], s["ours"]
        s["clean_prediction_mismatch"] = [i for i in common if prow[i]["pred_clean"] != orow[i]["pred_clean"]]
        weaker = [i for i in common if prow[i]["success_checked"] and not orow[i]["success_checked"]]
        s["ours_not_as_strong"] = weaker
        s["ours_stronger"] = [i for i in common if orow[i]["success_checked"] and not prow[i]["success_checked"]]
        s["accuracy_ours_minus_pwws"] = o["accuracy_under_attack"]["k"] - p["accuracy_under_attack"]["k"]
        s["accuracy_at_or_below_pwws"] = o["accuracy_under_attack"]["k"] <= p["accuracy_under_attack"]["k"]
        s["speed_ratio_wall"] = round(p["wall_seconds"] / max(o["wall_seconds"], 1e-9), 3)
        s["speed_ratio_cpu"] = round(p["cpu_seconds"] / max(o["cpu_seconds"], 1e-9), 3)
        s["at_most_half_of_pwws_time"] = {"wall": o["wall_seconds"] <= 0.5 * p["wall_seconds"],
                                          "cpu": o["cpu_seconds"] <= 0.5 * p["cpu_seconds"]}
    return s


def markdown(doc: dict) -> str:
    s = doc["summary"]
    c = doc["config"]
    lines = [f"SST-2 dev sentences {c['offset']}..{c['offset'] + s['sentences'] - 1} ({s['sentences']}), "
             f"{Path(c['checkpoint']).parent.name}, at most {c['max_share']:.0%} of the words, MiniLM similarity >= "
             f"{c['min_similarity']}, {c['threads']} thread(s)" + ("" if s["complete"] else " — PARTIAL"), "",
             "| attack | clean | accuracy under attack (95% CI) | raw (before re-check) | violations | words changed |"
             " queries | wall s | CPU s |", "|---|---|---|---|---|---|---|---|---|"]
    pct = lambda a: f"{100 * a['value']:.1f}% ({100 * a['ci95'][0]:.1f}-{100 * a['ci95'][1]:.1f})"  # noqa: E731
    preset = (doc.get("ours") or {}).get("config", {}).get("preset")
    for key, name in (("pwws", "TextAttack PWWS"), ("ours", f"robustkit `{preset}`")):
        v = s.get(key)
        if not v:
            continue
        lines.append(f"| {name} | {pct(v['clean_accuracy'])} | {pct(v['accuracy_under_attack'])} | "
                     f"{pct(v['accuracy_under_attack_raw'])} | {v['constraint_violations']} | "
                     f"{v['mean_words_changed']} | "
                     f"{v['mean_queries']} | {v['wall_seconds']:.1f} | {v['cpu_seconds']:.1f} |")
    if "speed_ratio_wall" in s:
        lines += ["", f"robustkit minus PWWS: {s['accuracy_ours_minus_pwws']:+d} sentences still correct; "
                  "PWWS/robustkit "
                  f"time: {s['speed_ratio_wall']}x wall, {s['speed_ratio_cpu']}x CPU; sentences PWWS broke and "
                  f"robustkit did not: {len(s['ours_not_as_strong'])} {s['ours_not_as_strong'][:20]}"]
    if s.get("ours", {}).get("per_attack"):
        lines.append("robustkit per attack: " + ", ".join(
            f"{k} broke {v['n_broken']}/{v['n_attacked']} in {v['seconds']:.0f}s"
            for k, v in s["ours"]["per_attack"].items()))
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a run folder (its best.safetensors) or a .safetensors file")
    ap.add_argument("--checkpoint", default="best", choices=["best", "last"])
    ap.add_argument("--data-dir", default=os.environ.get("ROBUSTKIT_DATA"))
    ap.add_argument("--offset", type=int, default=0, help="first dev sentence")
    ap.add_argument("--size", type=int, default=872, help="number of dev sentences")
    ap.add_argument("--preset", default="standard", help="robustkit text preset (quick, standard, thorough)")
    ap.add_argument("--attacks", default=None,
                    help='explicit robustkit ensemble instead of the preset, JSON: [["word", {}], ["char", {}]]')
    ap.add_argument("--max-share", type=float, default=0.2)
    ap.add_argument("--min-similarity", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64, help="robustkit evaluate batch size")
    ap.add_argument("--block", type=int, default=64, help="robustkit: sentences per evaluate call (saved after each)")
    ap.add_argument("--save-every", type=int, default=25, help="PWWS: write the JSON every this many sentences")
    ap.add_argument("--skip-pwws", action="store_true")
    ap.add_argument("--pwws-from", default=None, help="reuse PWWS rows of an earlier JSON of this script "
                    "(same checkpoint sha256, sentences and constraints are checked); the speed ratio then "
                    "compares times from two processes")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "text_vs_pwws.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from robustkit.attacks.word_substitution import SentenceEncoder
    from robustkit.checkpoint import load_model
    from robustkit.data.text import load_text_dataset
    from robustkit.evaluation.provenance import environment
    run = Path(args.run)
    model, meta = load_model(run / f"{args.checkpoint}.safetensors" if run.is_dir() else run)
    model.eval()
    variant = (meta.get("data") or {}).get("variant")
    ds = load_text_dataset("sst2", data_dir=args.data_dir, **({"variant": variant} if variant else {}))
    texts = list(ds.test_texts[args.offset:args.offset + args.size])
    labels = ds.test_labels[args.offset:args.offset + args.size].long()
    if not texts:
        raise SystemExit(f"no dev sentences at offset {args.offset}")
    encoder = SentenceEncoder.from_name("minilm-l6")
    config = {"checkpoint": meta["path"], "checkpoint_sha256": meta["sha256"], "offset": args.offset,
              "size": len(texts), "max_share": args.max_share, "min_similarity": args.min_similarity,
              "similarity_encoder": "minilm-l6 (robustkit SentenceEncoder)", "threads": args.threads,
              "data": {"name": "sst2", "split": "dev", "variant": variant}}
    out = Path(args.out)
    doc = None
    if out.is_file():
        old = json.loads(out.read_text())
        same = all(old.get("config", {}).get(k) == config[k] for k in
                   ("checkpoint_sha256", "offset", "size", "max_share", "min_similarity", "data"))
        if same and all(old.get("texts", {}).get(str(args.offset + k)) == t for k, t in enumerate(texts)):
            doc = old
            print(f"resuming {out}: PWWS {len((doc.get('pwws') or {}).get('rows', []))}, robustkit "
                  f"{len((doc.get('ours') or {}).get('rows', []))} sentences done", file=sys.stderr)
            ours_cfg = (doc.get("ours") or {}).get("config")
            want = {"preset": "custom" if args.attacks else args.preset,
                    "attacks": json.loads(args.attacks) if args.attacks else None, "seed": args.seed}
            if ours_cfg and any(ours_cfg.get(k) != v for k, v in want.items()):
                print("robustkit's settings changed: its side starts over", file=sys.stderr)
                doc.pop("ours", None)
                doc.pop("summary", None)  # the old summary describes the old settings' rows
    if doc is None:
        doc = {"config": config, "texts": {str(args.offset + k): t for k, t in enumerate(texts)}}
    doc["config"] = config
    doc["command"] = " ".join([sys.executable] + sys.argv)
    doc["environment"] = environment()
    try:
        doc["environment"]["load_average"] = os.getloadavg()
    except OSError:
        pass

    if args.pwws_from:
        doc["pwws"] = earlier_pwws(args.pwws_from, doc, texts, labels, args.offset)
    elif not args.skip_pwws:
        doc["nltk"] = prepare_nltk_data()
        import_textattack()
        run_pwws(doc, out, model, encoder, texts, labels, args.offset, args)
    if not args.skip_ours:
        run_ours(doc, out, model, encoder, texts, labels, args.offset, args)
    doc["summary"] = summarize(doc)
    save(doc, out)
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
