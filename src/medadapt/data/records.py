"""The one normalised record every loader produces and every later stage reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

LETTERS = "ABCDEFGHIJ"
PUBMEDQA_LABELS = ("yes", "no", "maybe")
UNANSWERABLE = "not stated in the report"


class DataError(ValueError):
    """Malformed input: the message names the file, the line (or key) and the field."""

    def __init__(self, path: str | Path, where: str | int | None, field: str | None, problem: str):
        location = str(path)
        if where is not None:
            location += f", line {where}" if isinstance(where, int) else f", {where}"
        if field:
            location += f", field '{field}'"
        super().__init__(f"{location}: {problem}")


@dataclass(frozen=True)
class Record:
    id: str
    dataset: str  # pubmedqa | medmcqa | medqa | radqa
    question: str
    context: str | None  # abstract or report text, None for exam questions
    options: list[str] | None  # option texts in letter order, None for open answers
    answer: str  # a letter, yes/no/maybe, or the answer span ("" when unanswerable)
    rationale: str | None  # the gold explanation, where the source has one

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> Record:
        return cls(**row)

    @property
    def label(self) -> str:
        """The class used for stratified splits and balanced demonstrations."""
        if self.dataset == "radqa":
            return "unanswerable" if not self.answer else "answerable"
        return self.answer

    @property
    def answer_text(self) -> str:
        """The gold answer as the response states it."""
        if self.dataset == "radqa" and not self.answer:
            return UNANSWERABLE
        return self.answer


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Sorted-key JSON lines, written to a temporary file first: a failure leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl_numbered(path)]


def read_jsonl_numbered(path: Path) -> list[tuple[int, dict]]:
    """JSON lines with their 1-based line numbers; a bad line is a DataError naming both."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "no such file")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(path, number, None, f"not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(path, number, None, "expected a JSON object")
            rows.append((number, row))
    if not rows:
        raise DataError(path, None, None, "the file is empty")
    return rows


def read_records(path: Path) -> list[Record]:
    return [Record.from_dict(row) for row in read_jsonl(path)]
