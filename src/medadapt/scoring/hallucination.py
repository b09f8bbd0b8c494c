"""The hallucination rule: a generated answer that states a fact its sources do not contain.

A *fact* is a number (a count, dose, size, percentage or lab value: `9`, `2.5`, `40%`,
`500 mg`, `500mg` all count by their numeric value; digits inside a name such as `SGLT2`
do not) or a drug name from `drug_names.txt` (about 370 generic names; a British or
international name such as paracetamol or adrenaline counts as its US generic name,
acetaminophen or epinephrine). An answer hallucinates when it states at least one fact found
nowhere in the question, context, options, gold answer or gold rationale. `evaluate` applies it
to the whole generated answer (answer line and explanation). Numbers compare by value (`0.50`
equals `0.5`; `1,000` equals `1000`), and a number stated with fewer decimals is supported by a
source number it rounds (`23` by `22.8`, `17.4` by `17.38`); drug names by whole lowercase word.

The rule is only judged where the item has a gold rationale (`judge`): without a reference,
every correct dose or drug the question does not state would be flagged. `hallucination_rates`
reports the rate per answer and per fact (unsupported facts / facts stated), so that a longer
answer, which states more facts, does not weigh more for it. The preference pairs of `rm` and
`dpo` are built without this module (`data/preferences.py`), so neither is trained on the
judge; `grpo` is, by design (its hallucination penalty, `training/rewards.py`), so this rate does
not judge `method=grpo` independently. Its precision and recall on labelled answers:
`medadapt judges` (`commands/judges.py`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

import numpy as np

from .stats import rate

# A number may carry a unit ("500mg", "9mm") but not stand inside a name ("SGLT2", "CD30").
NUMBER = re.compile(r"(?<![A-Za-z\d.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?!\d)")
_WORD = re.compile(r"[a-z]+")  # "heparin-induced" names heparin


# British / international names -> the US generic name the lexicon also holds, so that a
# synonym of a source's drug is no new fact.
SYNONYMS = {
    "adrenaline": "epinephrine", "noradrenaline": "norepinephrine", "paracetamol": "acetaminophen",
    "salbutamol": "albuterol", "frusemide": "furosemide", "lignocaine": "lidocaine", "glibenclamide": "glyburide",
    "pethidine": "meperidine", "rifampicin": "rifampin", "ciclosporin": "cyclosporine",
    "cyclosporin": "cyclosporine", "aciclovir": "acyclovir", "valaciclovir": "valacyclovir",
    "cefalexin": "cephalexin", "thyroxine": "levothyroxine", "phenobarbitone": "phenobarbital",
    "amoxycillin": "amoxicillin", "sulphasalazine": "sulfasalazine", "oestradiol": "estradiol",
    "mesalazine": "mesalamine", "valproic": "valproate", "acetylsalicylic": "aspirin",
    "suxamethonium": "succinylcholine", "beclometasone": "beclomethasone", "eformoterol": "formoterol",
    "sulphamethoxazole": "sulfamethoxazole", "chlorphenamine": "chlorpheniramine", "gtn": "nitroglycerin",
}


@lru_cache(maxsize=1)
def drug_names() -> frozenset[str]:
    text = files("medadapt.scoring").joinpath("drug_names.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def numbers(text: str) -> set[float]:
    return {float(match.replace(",", "")) for match in NUMBER.findall(text or "")}


def _decimals(text: str) -> dict[float, int]:
    """Each number of `text` with the fewest decimals it is written with."""
    found = {}
    for match in NUMBER.findall(text or ""):
        value, decimals = float(match.replace(",", "")), len(match.partition(".")[2])
        found[value] = min(decimals, found.get(value, decimals))
    return found


def _rounds_to(value: float, decimals: int, sources: set[float]) -> bool:
    """Whether a source number rounded to `decimals` places gives `value` ("23" for 22.8)."""
    tolerance = 0.5 * 10**-decimals + 1e-9
    return any(abs(value - source) <= tolerance for source in sources)


def drugs(text: str) -> set[str]:
    words = _WORD.findall((text or "").lower())
    return {SYNONYMS.get(word, word) for word in words} & drug_names()


def unsupported_facts(explanation: str, sources: list[str]) -> list[str]:
    """Facts in `explanation` that no source states, as readable strings."""
    source = "\n".join(s for s in sources if s)
    source_numbers = numbers(source)
    missing_numbers = [n for n, d in _decimals(explanation).items() if not _rounds_to(n, d, source_numbers)]
    missing_drugs = drugs(explanation) - drugs(source)
    return sorted(f"{n:g}" for n in missing_numbers) + sorted(missing_drugs)


def hallucinates(explanation: str, sources: list[str]) -> bool:
    return bool(unsupported_facts(explanation, sources))


def stated_facts(text: str) -> list[str]:
    """Every fact `text` states, as readable strings (the denominator of the per-fact rate)."""
    return sorted(f"{n:g}" for n in numbers(text)) + sorted(drugs(text))


def judge(output: str, sources: list[str], rationale: str | None) -> dict | None:
    """One generated answer's judgement, `{facts, unsupported}` (how many facts it states, and
    those no source states), or None (not judged) when the item has no gold rationale: the rule
    needs a reference to tell an invented fact from a correct one the question happens not to
    state. `sources` are the question, context, options and gold answer; the rationale is added."""
    if not (rationale or "").strip():
        return None
    return {"facts": len(stated_facts(output)), "unsupported": unsupported_facts(output, [*sources, rationale])}


def hallucination_rates(judgements: list[dict | None], samples: int = 1000, seed: int = 0) -> dict:
    """The rate per answer (answers with an unsupported fact / judged answers) and per fact
    (unsupported facts / facts stated), each `{value, low, high, n}`, and how many answers were
    judged and not judged. The per-fact interval resamples answers, not facts: the facts of one
    answer are not independent."""
    judged = [j for j in judgements if j is not None]
    counts = np.array([[len(j["unsupported"]), j["facts"]] for j in judged], dtype=float).reshape(-1, 2)
    return {
        "per_answer": rate([bool(j["unsupported"]) for j in judged], samples, seed),
        "per_fact": _ratio_rate(counts, samples, seed),
        "judged": len(judged),
        "not_judged": len(judgements) - len(judged),
    }


def _ratio_rate(counts: np.ndarray, samples: int, seed: int) -> dict:
    """sum(column 0) / sum(column 1) with a percentile bootstrap interval over rows."""
    total = counts.sum(0)
    if total[1] == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    index = np.random.default_rng(seed).integers(0, len(counts), size=(samples, len(counts)))
    resampled = counts[index].sum(1)
    ratios = np.divide(resampled[:, 0], resampled[:, 1], out=np.zeros(samples), where=resampled[:, 1] > 0)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"value": round(float(total[0] / total[1]), 4), "low": round(float(low), 4),
            "high": round(float(high), 4), "n": int(total[1])}
