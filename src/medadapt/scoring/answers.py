"""Reading a generated answer: the one parser every method's output goes through.

Every method answers `Answer: <answer>` then `Explanation: <why>` (data/prompts.py asks for it);
`parse_answer` reads the answer in the record's label space (a letter, yes/no/maybe, a span or
"" for unanswerable), or None when a careful reader could not take one answer from it.
`evaluate`, the on-policy pair ranking of `pairs` and the rewards of online RL all read answers
here, so a fix to the parser is a fix to all of them.
"""

from __future__ import annotations

import re

from ..data.records import LETTERS, Record

_ANSWER = re.compile(r"answer\s*[:\-]\s*(.*)", re.IGNORECASE)


_LETTER = re.compile(r"^\(?([A-J])\b[\).:]?")


_UNANSWERABLE = re.compile(r"not (stated|mentioned|reported|described|given)|cannot be determined|unanswerable", re.I)


def answer_line(output: str) -> str | None:
    """The text after `Answer:` (first line), or the first non-empty line if the tag is missing."""
    match = _ANSWER.search(output)
    if match:  # the first line after the tag, unless the explanation comes first
        line = match.group(1).strip()
        return None if not line or line.lower().startswith("explanation") else line
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[0] if lines else None


def explanation(output: str) -> str:
    """The text after `Explanation:`; else what follows the `Answer:` line; else the whole
    output (a model that ignores the format still explains itself somewhere)."""
    match = re.search(r"explanation\s*:\s*(.*)", output, re.IGNORECASE | re.DOTALL)
    if match:
        return match.group(1).strip()
    tagged = _ANSWER.search(output)
    if tagged:
        return output[tagged.end() :].strip()
    return output.strip()


def parse_answer(output: str, record: Record) -> str | None:
    """The answer in the record's label space (letter, yes/no/maybe, or span); None if unreadable."""
    line = answer_line(output)
    if not line:
        return None
    if record.options:
        return _parse_option(line, record.options)
    if record.dataset == "pubmedqa":
        word = re.match(r"\W*(yes|no|maybe)\b", line, re.IGNORECASE)
        return word.group(1).lower() if word else None
    if _UNANSWERABLE.search(line):
        return ""
    return line.strip().strip(".").strip().strip('"').strip()


def _parse_option(line: str, options: list[str]) -> str | None:
    letters = LETTERS[: len(options)]
    match = _LETTER.match(line.strip())
    if match and match.group(1) in letters:
        return match.group(1)
    lowered = line.lower().strip(" .")
    for index, option in enumerate(options):
        if lowered == option.lower().strip(" ."):
            return letters[index]
    return None
