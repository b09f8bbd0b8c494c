"""The hallucination rule: a generated answer that states a fact its sources do not contain.

A *fact* is a number (a count, dose, size, percentage or lab value: `9`, `2.5`, `40%`,
`500 mg`, `500mg` all count by their numeric value; digits inside a name such as `SGLT2`
do not) or a drug name from `drug_names.txt` (about 370 generic names; a British or
international name such as paracetamol or adrenaline counts as its US generic name,
acetaminophen or epinephrine); where the item has a context (a radiology report, a study's
abstract), also a finding or clinical event the answer asserts (`FINDINGS`: an effusion, a
fracture, a dilated duct, a stroke, a hysterectomy...). An answer hallucinates when it states at
least one fact found nowhere in the question, context, options, gold answer or gold rationale.
`evaluate` applies it to the whole generated answer (answer line and explanation).

Numbers compare by value (`0.50` equals `0.5`; `1,000` equals `1000`); a number stated with fewer
decimals is supported by a source number it rounds (`23` by `22.8`, `17.4` by `17.38`); and
arithmetic on source figures is supported, as the labelling rules say (`derived_numbers`: the
difference of two, `8` points for 15.3% vs 7.3%, and a ratio read as a relative change, a `44%`
reduction for a risk ratio of 0.56). A number the answer ends on, cut off by the token budget
("dilated to 1" for a report's 13 mm), is no claim. Drug names compare by whole lowercase word.
Findings are checked only against a context, because a report or an abstract is the whole record
of what was seen or measured, while an exam item's rationale leaves out most of what is true; a
finding counts as asserted unless its clause denies it first ("no effusion", "without
dilatation"), and is supported when the context or rationale asserts it (the question only asks).

The rule is only judged where the item has a gold rationale (`judge`): without a reference,
every correct dose or drug the question does not state would be flagged. `hallucination_rates`
reports the rate per answer and per fact (unsupported facts / facts stated), so that a longer
answer, which states more facts, does not weigh more for it, and the facts stated per answer, so
that an answer that states nothing, which cannot hallucinate, is seen as such. The preference
pairs of `rm` and `dpo` are built without this module (`data/preferences.py`), so no method is
trained on the judge but `grpo`, by design (its hallucination penalty, `training/rewards.py`), so
this rate does not judge `method=grpo` independently. Its precision and recall on labelled answers: `medadapt judges`
(`commands/judges.py`, `reports/judges.json`). The revision of issue 19 (arithmetic, cut-off
numbers, findings) was made on the `dev` part of `data/judges/hallucination.jsonl` and measured
once on its `test` part, written before the revision.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from itertools import combinations

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


# Findings and clinical events an answer can assert about a report or a study, one name each:
# general radiology and trial-outcome vocabulary, written after reading the misses of the dev
# part of data/judges/hallucination.jsonl (never its test part), so some of its words are there.
# Checked against a context only (see the module's docstring).
FINDINGS = frozenset("""
abscess adenopathy aneurysm appendicolith arrhythmia ascites atelectasis bleeding bronchiectasis calcification
calculus cardiomegaly cavitation cholecystitis cirrhosis collection compression consolidation contusion cyst
delirium dementia diarrhea dilated dislocation dissection diverticulitis edema effacement effusion embolism
emphysema enhancement enlargement erosion fibrillation fibrosis fistula fluid fracture gallstone hematoma
hemorrhage hepatomegaly herniation hospitalization hydrocephalus hydronephrosis hypoglycemia hypotension
hysterectomy ileus infarct infection intussusception ischemia laceration lymphadenopathy mass metastasis
nausea nodule obstruction occlusion opacity perforation pneumonia pneumoperitoneum pneumothorax rash
readmission reoperation rupture seizure sepsis shift splenomegaly steatosis stenosis stone stranding stricture
stroke subluxation thickening thrombosis thrombus torsion transfusion varices volvulus vomiting
""".split())  # noqa: SIM905 (a block of words reads better than 100 quoted ones)
# Other spellings and forms of a name above.
FINDING_FORMS = {
    "haemorrhage": "hemorrhage", "haematoma": "hematoma", "oedema": "edema", "ischaemia": "ischemia",
    "hypoglycaemia": "hypoglycemia", "diarrhoea": "diarrhea", "hospitalisation": "hospitalization",
    "dilatation": "dilated", "dilation": "dilated", "dilatated": "dilated", "enlarged": "enlargement",
    "thickened": "thickening", "calcified": "calcification", "herniated": "herniation", "fractured": "fracture",
    "perforated": "perforation", "obstructed": "obstruction", "infarction": "infarct", "infarcted": "infarct",
    "compressed": "compression", "compressing": "compression", "compresses": "compression",
    "compress": "compression", "metastases": "metastasis", "calculi": "calculus", "emboli": "embolism",
    "embolus": "embolism", "thrombi": "thrombus", "opacities": "opacity", "bled": "bleeding",
    "hemorrhagic": "hemorrhage", "seizures": "seizure",
}
# A clause's denial of what follows it: "no free air", "without dilatation", "negative for".
_DENIED = re.compile(r"\b(no|not|without|negative|nor|absent|absence|free of|resolved)\b|n't\b", re.IGNORECASE)
_FINDING_CLAUSE = re.compile(r"[.;:!?\n]|,|\b(?:but|whereas|although|though|while)\b", re.IGNORECASE)


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


def derived_numbers(values: set[float]) -> set[float]:
    """What plain arithmetic on source figures gives: the difference of two ("fell by 8 points"
    for 15.3% vs 7.3%) and a ratio read as a relative change (a risk ratio of 0.56 is a 44%
    reduction, 1.83 is 83% more)."""
    differences = {round(abs(a - b), 6) for a, b in combinations(sorted(values), 2)}
    relative = {round(100 * abs(1 - r), 6) for r in values if 0 < r < 2 and r != 1}
    return differences | relative


def _without_cut_off_number(text: str, source: str) -> str:
    """`text` less the number it ends on when that is the start of a longer source figure: an
    answer cut off by the token budget mid-number ("dilated to 1" for 13 mm) claims nothing with it."""
    match = re.search(r"(\d[\d,.]*)$", (text or "").rstrip())
    if match and any(s != match.group(1) and s.startswith(match.group(1)) for s in NUMBER.findall(source)):
        return text.rstrip()[: match.start()]
    return text


def _finding(word: str) -> str | None:
    """The name in FINDINGS that `word` is, in any of its forms or as a plural, else None."""
    for form in (word, word.removesuffix("s")):
        name = FINDING_FORMS.get(form, form)
        if name in FINDINGS:
            return name
    return None


def asserted_findings(text: str) -> set[str]:
    """The findings `text` states as present: a finding its clause denies first ("no effusion",
    "without free air or abscess") is not asserted."""
    found = set()
    for clause in _FINDING_CLAUSE.split(text or ""):
        for match in _WORD.finditer((clause or "").lower()):
            name = _finding(match.group())
            if name and not _DENIED.search(clause[: match.start()]):
                found.add(name)
    return found


def unsupported_facts(explanation: str, sources: list[str], context: list[str] | None = None) -> list[str]:
    """Facts in `explanation` that no source states, as readable strings. `context`, where the
    item has one (the report or abstract, with the rationale), is what findings are checked against."""
    source = "\n".join(s for s in sources if s)
    explanation = _without_cut_off_number(explanation, source)
    source_numbers = numbers(source)
    supported = source_numbers | derived_numbers(source_numbers)
    missing_numbers = [n for n, d in _decimals(explanation).items() if not _rounds_to(n, d, supported)]
    missing_drugs = drugs(explanation) - drugs(source)
    missing_findings = set()
    if context is not None:
        missing_findings = asserted_findings(explanation) - asserted_findings("\n".join(c for c in context if c))
    return sorted(f"{n:g}" for n in missing_numbers) + sorted(missing_drugs) + sorted(missing_findings)


def hallucinates(explanation: str, sources: list[str]) -> bool:
    return bool(unsupported_facts(explanation, sources))


def stated_facts(text: str, findings: bool = False) -> list[str]:
    """Every fact `text` states, as readable strings (the denominator of the per-fact rate); the
    findings it asserts too where the item has a context (`findings`)."""
    asserted = sorted(asserted_findings(text)) if findings else []
    return sorted(f"{n:g}" for n in numbers(text)) + sorted(drugs(text)) + asserted


def judge(output: str, sources: list[str], rationale: str | None, context: str | None = None) -> dict | None:
    """One generated answer's judgement, `{facts, unsupported}` (how many facts it states, and
    those no source states), or None (not judged) when the item has no gold rationale: the rule
    needs a reference to tell an invented fact from a correct one the question happens not to
    state. `sources` are the question, context, options and gold answer; the rationale is added.
    `context` (a report, an abstract), where the item has one, is what findings are checked against."""
    if not (rationale or "").strip():
        return None
    reference = [context, rationale] if (context or "").strip() else None
    return {"facts": len(stated_facts(output, reference is not None)),
            "unsupported": unsupported_facts(output, [*sources, rationale], reference)}


def hallucination_rates(judgements: list[dict | None], samples: int = 1000, seed: int = 0) -> dict:
    """The rate per answer (answers with an unsupported fact / judged answers) and per fact
    (unsupported facts / facts stated), each `{value, low, high, n}`; the facts stated per judged
    answer (mean, bootstrap interval), beside them because an answer that states no checkable
    fact can never be flagged: a rate of 0 with 0.01 facts per answer means "says nothing", not
    "never invents"; and how many answers were judged and not judged. The per-fact interval
    resamples answers, not facts: the facts of one answer are not independent."""
    judged = [j for j in judgements if j is not None]
    counts = np.array([[len(j["unsupported"]), j["facts"]] for j in judged], dtype=float).reshape(-1, 2)
    return {
        "per_answer": rate([bool(j["unsupported"]) for j in judged], samples, seed),
        "per_fact": _ratio_rate(counts, samples, seed),
        "facts_per_answer": rate([j["facts"] for j in judged], samples, seed, binary=False),
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
