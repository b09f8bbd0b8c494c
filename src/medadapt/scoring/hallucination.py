"""The hallucination rule: a generated answer that states a fact its sources do not contain.

A *fact* is a number (a count, dose, size, percentage or lab value: `9`, `2.5`, `40%`,
`500 mg`, `500mg` all count by their numeric value; digits inside a name such as `SGLT2`
do not) or a drug name from `drug_names.txt` (about 370
generic names). An answer hallucinates when its explanation states at least one fact found
nowhere in the question, context, options, gold answer or gold rationale. `evaluate` applies it
to the whole generated answer (answer line and explanation). Numbers compare by
value (`0.50` equals `0.5`; `1,000` equals `1000`); drug names by whole lowercase word.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

# A number may carry a unit ("500mg", "9mm") but not stand inside a name ("SGLT2", "CD30").
NUMBER = re.compile(r"(?<![A-Za-z\d.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?!\d)")
_WORD = re.compile(r"[a-z]+")  # "heparin-induced" names heparin


@lru_cache(maxsize=1)
def drug_names() -> frozenset[str]:
    text = files("medadapt.scoring").joinpath("drug_names.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def numbers(text: str) -> set[float]:
    return {float(match.replace(",", "")) for match in NUMBER.findall(text or "")}


def drugs(text: str) -> set[str]:
    return set(_WORD.findall((text or "").lower())) & drug_names()


def unsupported_facts(explanation: str, sources: list[str]) -> list[str]:
    """Facts in `explanation` that no source states, as readable strings."""
    source = "\n".join(s for s in sources if s)
    missing_numbers = numbers(explanation) - numbers(source)
    missing_drugs = drugs(explanation) - drugs(source)
    return sorted(f"{n:g}" for n in missing_numbers) + sorted(missing_drugs)


def hallucinates(explanation: str, sources: list[str]) -> bool:
    return bool(unsupported_facts(explanation, sources))
