"""Reading a generated answer: the one parser every method's output goes through.

Every method answers `Answer: <answer>` then `Explanation: <why>` (data/prompts.py asks for it);
`parse_answer` reads the answer in the record's label space (a letter, yes/no/maybe, a span or
"" for unanswerable), or None when a careful reader could not take one answer from it.
`evaluate`, the on-policy pair ranking of `pairs` and the rewards of online RL all read answers
here, so a fix to the parser is a fix to all of them.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from ..data.records import LETTERS, Record

#
# The answer is what the output states as its answer: the `Answer:` line, or without the tag the
# first line, checked against every other statement of an answer in the output (further `Answer:`
# tags, "the (correct) answer is X"). None when the output states none, echoes the instruction or
# the option list, or states two different answers. data/judges/README.md gives the same rules for
# the labelled generations the parser is measured on (`medadapt judges`).

_TAG = re.compile(r"answer\s*[:\-]\s*", re.IGNORECASE)
_ANSWER = re.compile(r"answer\s*[:\-]\s*(.*)", re.IGNORECASE)  # the tag and the rest of its line
_NEXT_TAG = re.compile(r"\b(?:answer|explanation)\s*:", re.IGNORECASE)  # where a tagged answer ends
_SAYS = re.compile(r"\banswer\b(?!\s*[:\-])", re.IGNORECASE)  # "answer" in prose, not the tag
_IS = re.compile(r"\bis\b\s*:?[ \t]*", re.IGNORECASE)
_LETTER = re.compile(r"^\(?([A-J])\b(\)|[.:])?")
_OPTION_LINE = re.compile(r"^\s*(?:answer\s*:\s*)?\(?([A-J])[.)]\s+\S", re.IGNORECASE | re.MULTILINE)
_PUBMEDQA_WORD = re.compile(r"\W*(yes|no|maybe)\b", re.IGNORECASE)
# The instruction's three choices in a row ("yes, no or maybe", "yes; no; maybe"): an echo.
_PUBMEDQA_ECHO = re.compile(r"\byes\W+no\W+(?:or\W+)?maybe\b", re.IGNORECASE)
# Two choices joined by "or" or "/", or a statement of two choices only ("yes, no").
_PUBMEDQA_TWO = re.compile(r"^\W*(yes|no|maybe)(?:\s*,?\s*(?:or|/)\s*|\W+(?=\w+\W*$))(yes|no|maybe)\b",
                           re.IGNORECASE)
_UNANSWERABLE = re.compile(
    r"not (stated|mentioned|reported|described|given|specified|documented|provided)|no mention\b"
    r"|(does|do|did)(n't| not) (mention|say|state|report|specify|describe|answer)"
    r"|(cannot|can't|can not) be (determined|answered)|unanswerable|not answerable", re.IGNORECASE)
# RadQA's instruction echoed: "a short span copied from the radiology report, or 'not stated in
# the report'", or a span offered "or" the unanswerable phrase.
_RADQA_ECHO = re.compile(r"short span|copied from the (radiology )?report|\bor\W+not stated in the report"
                         r"|not stated in the report\W+or\b", re.IGNORECASE)


def answer_line(output: str) -> str | None:
    """The text after `Answer:` (first line, up to a further `Answer:` or `Explanation:` tag), or
    the first non-empty line if the tag is missing; a repeated tag (`Answer: Answer: no`) counts once."""
    match = _TAG.search(output)
    if match:  # the first line after the tag, unless the explanation comes first
        line = output[match.end():].split("\n", 1)[0]
        while _TAG.match(line):
            line = line[_TAG.match(line).end():]
        line = _NEXT_TAG.split(line, 1)[0].strip()
        return line or None
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
    """The answer in the record's label space (letter, yes/no/maybe, or span; "" where a RadQA
    answer says the report does not answer); None if unreadable, an echo, or two answers."""
    line = answer_line(output)
    if not line:
        return None
    if record.options:
        if _lists_options(output):
            return None
        return _agreed(output, line, lambda text: _parse_option(text, record.options),
                       lambda text: _letters_named(text, record.options))
    if record.dataset == "pubmedqa":
        if any(_PUBMEDQA_ECHO.search(text) for text in _tagged(output) + [line]):
            return None
        return _agreed(output, line, _parse_pubmedqa, lambda text: {_parse_pubmedqa(text)} - {None})
    return _parse_span(line)


def _tagged(output: str) -> list[str]:
    """The text after every `Answer:` tag, each up to the next tag or the end of its line."""
    texts = []
    for match in _TAG.finditer(output):
        text = _NEXT_TAG.split(output[match.end():].split("\n", 1)[0], 1)[0].strip()
        if text:
            texts.append(text)
    return texts


def _said(output: str) -> list[list[str]]:
    """Per "the (correct) answer ... is" in prose, what may follow it: the rest of the line after
    each "is" on that line (a quoted question may come between: the answer to "Is X?" is no), or
    the next non-empty line after a bare "is:"."""
    lines = output.splitlines()
    texts = []
    for number, line in enumerate(lines):
        for says in _SAYS.finditer(line):
            candidates = []
            for verb in _IS.finditer(line, says.end()):
                rest = line[verb.end():].strip()
                if not rest:
                    rest = next((later.strip() for later in lines[number + 1:] if later.strip()), "")
                candidates.append(rest)
            texts.append(candidates)
    return texts


def _agreed(output: str, line: str, read, named) -> str | None:
    """The answer of `line`, or of the output's other statements where `line` gives none, if every
    statement agrees. `read(text)` is a statement's answer or None; `named(text)` is every label a
    statement names, clear or not (letter C with option D's text names C and D)."""
    statements = [line] + _tagged(output)
    for candidates in _said(output):  # per "answer ... is": the first candidate that names a label
        statements += next(([text] for text in candidates if named(text)), [])
    answers = {read(text) for text in statements} - {None}
    labels = set().union(*(named(text) for text in statements))
    if len(answers) != 1 or labels - answers:
        return None
    return answers.pop()


def _parse_pubmedqa(text: str) -> str | None:
    two = _PUBMEDQA_TWO.match(text)
    if two and two.group(1).lower() != two.group(2).lower():
        return None
    word = _PUBMEDQA_WORD.match(text)
    return word.group(1).lower() if word else None


def _parse_span(line: str) -> str | None:
    if _RADQA_ECHO.search(line):
        return None
    if _UNANSWERABLE.search(line):
        return ""
    return line.strip().strip(".").strip().strip('"').strip()


def _lists_options(output: str) -> bool:
    """Two or more lines "A. ..." / "B) ..." with different letters before any explanation: the
    model copying the prompt's option list, not choosing."""
    answer_part = re.split(r"explanation\s*:", output, maxsplit=1, flags=re.IGNORECASE)[0]
    return len(set(_OPTION_LINE.findall(answer_part))) >= 2


def _norm(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s+", " ", text).strip(" .,;:'\"")


def _starts(text: str, prefix: str) -> bool:
    """`text` is `prefix` with more words after it (not more letters of the same word)."""
    return text.startswith(prefix) and (len(text) == len(prefix) or not text[len(prefix)].isalnum())


def _closeness(said: str, option: str) -> float:
    """1 for the option's text; 0.9 for it cut short or with words added; else difflib's ratio
    (a misspelling or a changed word stays above 0.8, another option's text falls well below)."""
    said, option = _norm(said), _norm(option)
    if not said or not option:
        return 0.0
    if said == option:
        return 1.0
    if _starts(said, option) or _starts(option, said):
        return 0.9
    return SequenceMatcher(None, said, option).ratio()


# A letter's text must be at least this close to its own option's text, and no closer to any
# other option's, for the letter to count.
OWN_TEXT_MIN = 0.8


def _text_option(text: str, options: list[str]) -> int | None:
    """The option whose text this is (after case, spacing and end punctuation), else None."""
    said = _norm(text)
    return next((i for i, option in enumerate(options) if said and said == _norm(option)), None)


def _parse_option(line: str, options: list[str]) -> str | None:
    """A letter whose text, if any, is its own option's; an option's text alone; else None.

    "A. <text>", "A) <text>", "(A) <text>": the letter, if <text> is closest to option A's text.
    "A <text>" without the mark may be an article ("A 3-day course of ..."): the whole line is
    tried as an option's text first, then as the letter A with option A's text."""
    letters = LETTERS[: len(options)]
    text = line.strip()
    whole = _text_option(text, options)
    match = _LETTER.match(text)
    if not match or match.group(1) not in letters:
        return None if whole is None else letters[whole]
    letter, marked = match.group(1), bool(match.group(2))
    rest = text[match.end():].strip()
    if not rest.strip(" .,;:)"):
        return letter
    if not marked and whole is not None:
        return letters[whole]
    scores = [_closeness(rest, option) for option in options]
    own = scores[letters.index(letter)]
    # No other option nearer: options with the same text (one real MedMCQA item) keep the letter.
    if own >= OWN_TEXT_MIN and own == max(scores):
        return letter
    return None


def _letters_named(text: str, options: list[str]) -> set[str]:
    """Every letter a statement names: its answer, or a marked letter at its start whatever text
    follows ("D. <option C's text>" names D), or the option its text is closest to after a letter."""
    letters = LETTERS[: len(options)]
    answer = _parse_option(text, options)
    if answer:
        return {answer}
    match = _LETTER.match(text.strip())
    if not match or match.group(1) not in letters or not match.group(2):
        return set()
    named = {match.group(1)}
    rest = text.strip()[match.end():]
    scores = [_closeness(rest, option) for option in options]
    if max(scores) >= OWN_TEXT_MIN:
        named.add(letters[scores.index(max(scores))])
    return named
