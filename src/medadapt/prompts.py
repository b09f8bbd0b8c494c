"""Prompt templates, chat formatting and the one answer parser, shared by every method.

Two prompt families:
- chat prompts (`messages`) for training and generation: a system line, optional
  demonstrations as earlier user/assistant turns, then the question. Every method answers in
  one format, `Answer: <answer>` then `Explanation: <why>`, so one parser reads them all.
- log-likelihood prompts (`loglik_request`) in lm-evaluation-harness's shapes (`medmcqa`,
  `medqa_4options`, `pubmedqa`): plain text ending in `Answer:`, scored on ` A`/` B`/... or
  ` yes`/` no`/` maybe`; few-shot demonstrations joined by a blank line, as lm-eval does.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import permutations

from .data.records import LETTERS, PUBMEDQA_LABELS, UNANSWERABLE, Record

SYSTEM = (
    "You are a careful medical assistant. Reply with 'Answer:' and your answer on the first line, "
    "then 'Explanation:' and a short justification that uses only facts you are sure of."
)

# A tokenizer without a chat template (a base model, the tiny test model) gets this one, so
# that training and generation format conversations the same way for every model.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Question:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

PUBMEDQA_INSTRUCTIONS = (
    "Answer the research question from the abstract with yes, no or maybe.",
    "Based only on the abstract below, is the answer to the question yes, no or maybe?",
    "Read the study summary and decide: yes, no or maybe.",
    "Using the evidence in this abstract, reply yes, no or maybe to the question.",
)


@dataclass(frozen=True)
class PubmedqaVariant:
    """One PubMedQA prompt of the consistency metric: the abstract's paragraph order and the
    instruction (an index into PUBMEDQA_INSTRUCTIONS; the log-likelihood prompt of 0 has none,
    as lm-eval's has none)."""

    reversed_context: bool
    instruction: int


# Variant 0 is the reference prompt (lm-eval's, for log-likelihood). Every later variant
# changes ONE thing against it, so a flip in answer is attributable to that change.
PUBMEDQA_VARIANTS = (
    PubmedqaVariant(reversed_context=False, instruction=0),  # the reference
    PubmedqaVariant(reversed_context=True, instruction=0),  # paragraph order only
    PubmedqaVariant(reversed_context=False, instruction=1),  # paraphrased instruction only
    PubmedqaVariant(reversed_context=False, instruction=2),  # another paraphrase only
    PubmedqaVariant(reversed_context=False, instruction=3),  # another paraphrase only
)


def pubmedqa_variant(variant: int) -> PubmedqaVariant:
    """The variant's prompt form; an unknown variant is an error, not a silent wrap-around."""
    if not 0 <= variant < len(PUBMEDQA_VARIANTS):
        raise ValueError(f"PubMedQA has prompt variants 0..{len(PUBMEDQA_VARIANTS) - 1}, not {variant}")
    return PUBMEDQA_VARIANTS[variant]


def _paragraphs(record: Record, variant: PubmedqaVariant) -> str:
    paragraphs = record.context.split("\n")
    return "\n".join(paragraphs[::-1] if variant.reversed_context else paragraphs)


def options_block(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))


def user_message(record: Record, variant: int = 0) -> str:
    """The question as the user asks it; `variant` picks a PubMedQA prompt of PUBMEDQA_VARIANTS
    (for the consistency metric); other datasets have one prompt."""
    if record.dataset == "pubmedqa":
        form = pubmedqa_variant(variant)
        instruction = PUBMEDQA_INSTRUCTIONS[form.instruction]
        return f"{instruction}\n\nAbstract:\n{_paragraphs(record, form)}\n\nQuestion: {record.question}"
    if record.dataset == "radqa":
        return (
            "Answer the question with a short span copied from the radiology report, or say "
            f"'{UNANSWERABLE}' if the report does not answer it.\n\n"
            f"Report:\n{record.context}\n\nQuestion: {record.question}"
        )
    return f"Choose the single best option and give its letter.\n\nQuestion: {record.question}\n{options_block(record.options)}"


def response(record: Record) -> str:
    """The gold response: the training target and the demonstration answer."""
    answer = record.answer_text
    if record.options:
        answer = f"{record.answer}. {record.options[LETTERS.index(record.answer)]}"
    text = f"Answer: {answer}"
    if record.rationale:
        text += f"\nExplanation: {record.rationale}"
    return text


def question_chat(text: str) -> list[dict]:
    """A chat of the system line and one user question (safety prompts, preference files)."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def messages(record: Record, demos: list[Record] = (), variant: int = 0) -> list[dict]:
    """A chat: system line, demonstrations as earlier turns (closest last), then the question."""
    chat = [{"role": "system", "content": SYSTEM}]
    for demo in demos:
        chat.append({"role": "user", "content": user_message(demo)})
        chat.append({"role": "assistant", "content": response(demo)})
    chat.append({"role": "user", "content": user_message(record, variant)})
    return chat


def render(tokenizer, chat: list[dict]) -> str:
    """The chat as the model sees it before its answer."""
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


# ---- log-likelihood prompts (lm-evaluation-harness shapes) -----------------------------


@dataclass(frozen=True)
class LoglikRequest:
    context: str  # everything before the continuation
    choices: tuple[str, ...]  # continuations scored, each with a leading space
    gold: int  # index of the gold choice


def loglik_text(record: Record, variant: int = 0) -> str:
    """lm-eval's `doc_to_text` for the record's task; PubMedQA `variant`s > 0 (PUBMEDQA_VARIANTS)
    reverse the paragraphs or put a paraphrased instruction first, for consistency."""
    if record.dataset == "medmcqa":
        return f"Question: {record.question}\nChoices:\n{options_block(record.options)}\nAnswer:"
    if record.dataset == "medqa":
        return f"Question: {record.question}\n{options_block(record.options)}\nAnswer:"
    if record.dataset == "pubmedqa":
        form = pubmedqa_variant(variant)
        text = f"Abstract: {_paragraphs(record, form)}\nQuestion: {record.question}\nAnswer:"
        return f"{PUBMEDQA_INSTRUCTIONS[form.instruction]}\n{text}" if form.instruction else text
    raise ValueError(f"{record.dataset} has no log-likelihood form (open answers are generated)")


def loglik_choices(record: Record) -> tuple[str, ...]:
    if record.dataset == "pubmedqa":
        return PUBMEDQA_LABELS
    return tuple(LETTERS[: len(record.options)])


def loglik_request(record: Record, demos: list[Record] = (), variant: int = 0) -> LoglikRequest:
    """A k-shot request: demonstrations `text + " " + target` joined by blank lines."""
    text = loglik_text(record, variant)  # raises for open-answer datasets
    choices = loglik_choices(record)
    shots = [f"{loglik_text(d)} {d.answer}" for d in demos]
    context = "\n\n".join(shots + [text])
    return LoglikRequest(context, tuple(f" {c}" for c in choices), choices.index(record.answer))


# ---- the one answer parser --------------------------------------------------------------
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


# ---- choice shuffling: option orders for voting (Medprompt) and position-bias checks ----


def option_permutations(n_options: int, count: int, seed: int, item_id: str) -> list[tuple[int, ...]]:
    """`count` distinct option orders, the identity first, seeded per item."""
    identity = tuple(range(n_options))
    others = [p for p in permutations(identity) if p != identity]
    random.Random(f"{seed}-{item_id}").shuffle(others)
    return [identity] + others[: max(count - 1, 0)]


def shuffled(record: Record, order: tuple[int, ...]) -> Record:
    """The record with its options in `order` (new position i shows old option order[i])."""
    options = [record.options[j] for j in order]
    answer = LETTERS[order.index(LETTERS.index(record.answer))]
    return Record(**{**record.to_dict(), "options": options, "answer": answer})


def original_letter(letter: str, order: tuple[int, ...]) -> str:
    """Map a letter chosen under `order` back to the original option's letter."""
    return LETTERS[order[LETTERS.index(letter)]]


def vote(letters: list[str]) -> str:
    """Majority letter; ties go to the earliest vote (the unshuffled order)."""
    counts = {letter: letters.count(letter) for letter in letters}
    best = max(counts.values())
    return next(letter for letter in letters if counts[letter] == best)
