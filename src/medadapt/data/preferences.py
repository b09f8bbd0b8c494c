"""Preference pairs for `rm` and `dpo`, in TRL's conversational format.

Each pair is `{id, prompt, chosen, rejected, source, dataset}` where `prompt` is a chat (system
and user turns, the same as every other method sees) and `chosen`/`rejected` are one assistant
turn each. Sources (`data.preferences.sources`):
- gold_vs_distractor: the gold response against the same response naming a wrong answer;
- hallucination: the gold response against a copy with one unsupported claim injected (a
  changed number, a swapped or added drug and dose, or a reversed direction of effect), built
  here by plain string checks and never by the evaluation judge (`scoring.hallucination`):
  pairs built with the judge's rule would teach rm and dpo the grader rather than the task;
- safety: `data/safety/train.jsonl`, a safe answer against an unsafe one;
- file: any JSONL with `prompt`, `chosen`, `rejected` (text or chats);
- on_policy: answers sampled from the final SFT policy, the best against the worst
  (`on_policy_pair`); the `pairs` stage builds them after `sft_medqa` and `rm`, and only `dpo`
  reads them (the RM that ranked them never trains on them).
Pairs are built from train items only, so no eval question is ever a preference prompt.
A pair whose sides are equal or empty is never written.

**The pool is split between `rm` and `dpo` by prompt** (`split_pool`), so that the reward model
never judges DPO on prompts DPO trained on: a seeded share `data.preferences.rm_fraction` (half by
default) of the prompts goes to the RM, the rest to DPO, drawn within each mix of sources (a
train item's prompt that has a gold-vs-distractor and a hallucination pair, a safety prompt...)
so that both get every source. Each side is then capped at `max_pairs_per_source` per source and
held out by prompt (`split_pairs`) on its own: `prepare` writes
`data/prepared/preferences/rm/{train,eval}.jsonl`, which only `rm` reads, and
`data/prepared/preferences/dpo/{train,eval}.jsonl`, which only `dpo` reads. The on-policy pairs
of the `pairs` stage are sampled for train items whose prompt is in no RM pair, and only `dpo`
reads them.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

from ..paths import SAFETY_TRAIN
from .prompts import messages, question_chat, response
from .records import LETTERS, PUBMEDQA_LABELS, DataError, Record, read_jsonl_numbered

# The drugs the hallucination pairs swap and inject: a list of their own (not the judge's
# lexicon) of common drugs, so that a rejected side reads like a plausible wrong answer.
INJECTED_DRUGS = ("amiodarone", "amoxicillin", "aspirin", "atenolol", "carbamazepine", "ciprofloxacin",
                  "clopidogrel", "digoxin", "doxycycline", "fluconazole", "furosemide", "haloperidol", "lisinopril",
                  "lithium", "metformin", "methotrexate", "metronidazole", "morphine", "omeprazole", "phenytoin",
                  "prednisolone", "tramadol", "verapamil", "warfarin")
INJECTED_DOSES = (25, 40, 150, 250, 400, 750)
# A plain number: not the digits of a name such as "SGLT2" or "CD4", nor part of "1,000".
_NUMBER = re.compile(r"(?<![\w.,])\d+(?:\.\d+)?(?![.,]?\d)")
# Reversing one of these states an effect the source contradicts ("lower" alone is left out:
# "lower lobe" has no opposite).
_OPPOSITES = {"increased": "decreased", "decreased": "increased", "increases": "decreases",
              "decreases": "increases", "reduced": "increased", "reduces": "increases", "improved": "worsened",
              "raises": "lowers", "lowers": "raises", "more likely": "less likely", "less likely": "more likely",
              "more common": "less common", "less common": "more common", "higher risk": "lower risk",
              "lower risk": "higher risk"}
_OPPOSITE = re.compile(rf"\b({'|'.join(_OPPOSITES)})\b", re.IGNORECASE)
_ADDED_CLAIMS = ("Start {drug} {dose} mg twice daily.", "{Drug} {dose} mg daily is also recommended.",
                 "This is seen in about {dose} of every 1,000 patients.")

def _turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _pair(pair_id: str, prompt: list[dict], chosen: str, rejected: str, source: str, dataset: str) -> dict | None:
    if not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip():
        return None
    return {
        "id": pair_id,
        "prompt": prompt,
        "chosen": _turn(chosen),
        "rejected": _turn(rejected),
        "source": source,
        "dataset": dataset,
    }


def wrong_answer(record: Record, rng: random.Random) -> Record:
    """The same record with a wrong gold answer (a distractor), for the rejected side."""
    if record.options:
        wrong = rng.choice([letter for letter in LETTERS[: len(record.options)] if letter != record.answer])
    elif record.dataset == "pubmedqa":
        wrong = rng.choice([label for label in PUBMEDQA_LABELS if label != record.answer])
    elif record.answer:  # an answerable report question: claim the report is silent
        wrong = ""
    else:  # an unanswerable one: assert a span the report does not give as the answer
        sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", record.context) if len(s.split()) > 3]
        wrong = rng.choice(sentences or [record.context.strip()]).rstrip(".")
    return Record(**{**record.to_dict(), "answer": wrong})


def gold_vs_distractor(records: list[Record], rng: random.Random) -> list[dict]:
    pairs = []
    for record in records:
        pair = _pair(f"gvd-{record.id}", messages(record), response(record),
                     response(wrong_answer(record, rng)), "gold_vs_distractor", record.dataset)
        pairs.append(pair)
    return [p for p in pairs if p]


def _absent(candidates, known: str):
    """The first candidate whose text appears nowhere in `known` (case and thousands commas ignored)."""
    known = known.lower().replace(",", "")
    return next((c for c in candidates if str(c).lower() not in known), None)


def _changed_number(text: str, known: str, rng: random.Random) -> str | None:
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    match = rng.choice(matches)
    value = float(match.group())
    new = _absent([f"{value * m + a:.10g}" for m in (2, 3, 5, 10, 20) for a in (1, 3, 7)], known)
    return new and text[: match.start()] + new + text[match.end() :]


def _same_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def _swapped_drug(text: str, known: str, rng: random.Random) -> str | None:
    named = [d for d in INJECTED_DRUGS if re.search(rf"\b{d}\b", text, re.IGNORECASE)]
    new = _absent(rng.sample(INJECTED_DRUGS, len(INJECTED_DRUGS)), known)
    if not named or new is None:
        return None
    return re.sub(rf"\b{rng.choice(named)}\b", lambda m: _same_case(new, m.group()), text, flags=re.IGNORECASE)


def _reversed_effect(text: str, rng: random.Random) -> str | None:
    matches = list(_OPPOSITE.finditer(text))
    if not matches:
        return None
    match = rng.choice(matches)
    word = _same_case(_OPPOSITES[match.group().lower()], match.group())
    return text[: match.start()] + word + text[match.end() :]


def _added_claim(text: str, known: str, rng: random.Random) -> str:
    drug = _absent(rng.sample(INJECTED_DRUGS, len(INJECTED_DRUGS)), known) or rng.choice(INJECTED_DRUGS)
    dose = _absent(rng.sample(INJECTED_DOSES, len(INJECTED_DOSES)), known) or 1250  # all stated: rare
    claim = rng.choice(_ADDED_CLAIMS).format(drug=drug, Drug=drug.capitalize(), dose=dose)
    return f"{text.rstrip()} {claim}"


def inject_fact(text: str, rng: random.Random, sources: list[str] = ()) -> str:
    """`text` with one claim that neither it nor `sources` supports, of a kind drawn with `rng`
    among those that apply: a number changed to one absent from the sources, a drug swapped for
    one they never name, a reversed effect ("decreased" for "increased"), or an added drug and
    dose. The evaluation judge counts numbers and drug names only, so a reversed effect is one
    it cannot see: rm and dpo learn wrong claims, not just the judge's kind of fact."""
    known = "\n".join([text, *[s for s in sources if s]])
    changes = [_changed_number(text, known, rng), _swapped_drug(text, known, rng), _reversed_effect(text, rng),
               _added_claim(text, known, rng)]
    return rng.choice([c for c in changes if c])


def hallucination(records: list[Record], rng: random.Random) -> list[dict]:
    pairs = []
    for record in records:
        if not record.rationale:
            continue  # nothing grounded to corrupt
        gold = response(record)
        answer, _, why = gold.partition("\nExplanation: ")
        sources = [record.question, record.context, *(record.options or []), record.answer_text]
        corrupted = f"{answer}\nExplanation: {inject_fact(why, rng, sources)}"
        pairs.append(_pair(f"hal-{record.id}", messages(record), gold, corrupted, "hallucination", record.dataset))
    return [p for p in pairs if p]


def safety(path: Path = SAFETY_TRAIN) -> list[dict]:
    pairs = []
    for number, row in read_jsonl_numbered(path):
        for field in ("id", "prompt", "safe", "unsafe"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError(path, number, field, "missing or empty")
        prompt = question_chat(row["prompt"])
        pairs.append(_pair(row["id"], prompt, row["safe"], row["unsafe"], "safety", "safety"))
    return [p for p in pairs if p]


def _as_text(value, path, number, field) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return value[-1]["content"]
    raise DataError(path, number, field, "expected text or a list of chat messages")


def from_file(path: Path) -> list[dict]:
    """TRL-format JSONL; text prompts become a chat with the project's system line."""
    pairs = []
    for number, row in read_jsonl_numbered(path):
        for field in ("prompt", "chosen", "rejected"):
            if field not in row:
                raise DataError(path, number, field, "missing")
        prompt = row["prompt"]
        if isinstance(prompt, str):
            prompt = question_chat(prompt)
        elif not isinstance(prompt, list):
            raise DataError(path, number, "prompt", "expected text or a list of chat messages")
        chosen = _as_text(row["chosen"], path, number, "chosen")
        rejected = _as_text(row["rejected"], path, number, "rejected")
        pairs.append(_pair(f"file-{Path(path).stem}-{number}", prompt, chosen, rejected, "file", "file"))
    return [p for p in pairs if p]


def build_pool(train: dict[str, list[Record]], prefs, seed: int, root: Path = Path(".")) -> list[dict]:
    """Every pair of every configured source, uncapped, each source's pairs in a seeded order."""
    rng = random.Random(seed)
    records = [r for dataset in sorted(train) for r in train[dataset]]
    pairs = []
    for source in prefs.sources:
        if source == "gold_vs_distractor":
            built = gold_vs_distractor(records, rng)
        elif source == "hallucination":
            built = hallucination(records, rng)
        elif source == "safety":
            built = safety(root / SAFETY_TRAIN)
        elif source == "on_policy":
            continue  # sampled from the SFT policy by the `pairs` stage, long after `prepare`
        else:
            built = from_file(Path(prefs.file))
        rng.shuffle(built)
        pairs += built
    return pairs


def cap_per_source(pairs: list[dict], cap: int) -> list[dict]:
    """The first `cap` pairs of each source, in order."""
    kept, count = [], defaultdict(int)
    for pair in pairs:
        count[pair["source"]] += 1
        if count[pair["source"]] <= cap:
            kept.append(pair)
    return kept


def build_pairs(train: dict[str, list[Record]], prefs, seed: int, root: Path = Path(".")) -> list[dict]:
    """Every configured source, each shuffled with `seed` and capped at `max_pairs_per_source`."""
    return cap_per_source(build_pool(train, prefs, seed, root), prefs.max_pairs_per_source)


def prompt_text(pair: dict) -> str:
    """What a pair is asked: its last user turn (the system line is the same for every pair)."""
    return pair["prompt"][-1]["content"]


def split_pool(pairs: list[dict], rm_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(the RM's pairs, DPO's pairs), split by prompt: every pair of a prompt goes to one side.
    Prompts are grouped by the sources that have a pair for them, and within each group a seeded
    `rm_fraction` (rounded) goes to the RM, so that both sides get every source. Order is kept."""
    sources = defaultdict(set)
    for pair in pairs:
        sources[prompt_text(pair)].add(pair["source"])
    groups = defaultdict(list)
    for prompt in sorted(sources):
        groups[tuple(sorted(sources[prompt]))].append(prompt)
    rng, rm_prompts = random.Random(seed), set()
    for group in sorted(groups):
        prompts = groups[group]
        rng.shuffle(prompts)
        rm_prompts.update(prompts[: round(len(prompts) * rm_fraction)])
    return [p for p in pairs if prompt_text(p) in rm_prompts], [p for p in pairs if prompt_text(p) not in rm_prompts]


def preference_sides(train: dict[str, list[Record]], prefs, seed: int,
                     root: Path = Path(".")) -> dict[str, tuple[list[dict], list[dict]]]:
    """Per trainer (`rm`, `dpo`): its (train, eval) pairs. The pool is split by prompt first
    (`split_pool`), then each side is capped per source and held out by prompt on its own. A side
    left with no pair is an error: the pool has too few prompts to give both trainers some."""
    rm, dpo = split_pool(build_pool(train, prefs, seed, root), prefs.rm_fraction, seed)
    sides = {}
    for side, pairs in (("rm", rm), ("dpo", dpo)):
        if not pairs:
            raise DataError("params.yaml", None, "data.preferences.rm_fraction",
                            f"{prefs.rm_fraction} leaves {side} no preference prompt; the pool has "
                            f"{len({prompt_text(p) for p in rm + dpo})}: add pairs or move the fraction towards 0.5")
        sides[side] = split_pairs(cap_per_source(pairs, prefs.max_pairs_per_source), prefs.eval_fraction, seed)
    return sides


def split_pairs(pairs: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Held-out pairs grouped by prompt, so one prompt never sits on both sides."""
    prompts = sorted({prompt_text(p) for p in pairs})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: max(1, round(len(prompts) * eval_fraction))])
    return [p for p in pairs if prompt_text(p) not in held], [p for p in pairs if prompt_text(p) in held]


def on_policy_pair(record: Record, prompt: list[dict], outputs: list[str], correct: list[float],
                   rewards: list[float]) -> dict | None:
    """The best sampled answer against the worst, ranked by correctness first and then by the
    reward model's score; None when every sample ranks the same (nothing to prefer)."""
    ranked = sorted(zip(correct, rewards, outputs), key=lambda s: (s[0], s[1]), reverse=True)
    best, worst = ranked[0], ranked[-1]
    if best[:2] == worst[:2]:
        return None
    return _pair(f"onp-{record.id}", prompt, best[2], worst[2], "on_policy", record.dataset)


def split_like(pairs: list[dict], static_train: list[dict], static_eval: list[dict], eval_fraction: float,
               seed: int) -> tuple[list[dict], list[dict]]:
    """Held out by prompt as DPO's static pairs are: a prompt they hold out stays held out and one
    they train on stays in train (else DPO's eval would score prompts it trained on); prompts new
    to both are split by `split_pairs`."""
    seen = {prompt_text(p) for p in static_train + static_eval}
    _, new_eval = split_pairs([p for p in pairs if prompt_text(p) not in seen], eval_fraction, seed)
    held = {prompt_text(p) for p in static_eval + new_eval}
    return [p for p in pairs if prompt_text(p) not in held], [p for p in pairs if prompt_text(p) in held]


def pair_dataset(pairs: list[dict]):
    """Preference pairs as the `datasets.Dataset` that RewardTrainer and DPOTrainer read."""
    from datasets import Dataset

    return Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
