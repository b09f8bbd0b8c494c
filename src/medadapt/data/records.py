"""The one normalised record every loader produces and every later stage reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError

LETTERS = "ABCDEFGHIJ"
PUBMEDQA_LABELS = ("yes", "no", "maybe")
UNANSWERABLE = "not stated in the report"
# The longest line (JSON lines) or record (JSON files, hub rows) read, in characters. A QA item
# is a few KB (a PubMedQA abstract, a radiology report); a 50 MB row was once accepted and took
# minutes and gigabytes downstream, so anything this long is an error, not an item.
MAX_RECORD_CHARS = 1_000_000


def location(path: str | Path, where: str | int | None) -> str:
    """`path`, `path, line 3` or `path, key 123`: how every message names a place in a file."""
    if where is None:
        return str(path)
    return f"{path}, line {where}" if isinstance(where, int) else f"{path}, {where}"


class DataError(UserError, ValueError):
    """Malformed input: the message names the file, the line (or key) and the field."""

    def __init__(self, path: str | Path, where: str | int | None, field: str | None, problem: str):
        place = location(path, where)
        if field:
            place += f", field '{field}'"
        super().__init__(f"{place}: {problem}")


@dataclass(frozen=True)
class Record:
    id: str
    dataset: str  # pubmedqa | medmcqa | medqa | radqa
    question: str
    context: str | None  # abstract or report text, None for exam questions
    options: list[str] | None  # option texts in letter order, None for open answers
    answer: str  # a letter, yes/no/maybe, or the answer span ("" when unanswerable)
    rationale: str | None  # the gold explanation, where the source has one
    # every gold answer text (RadQA: the SQuAD script scores the best of them; `answer` is the
    # first; empty when unanswerable); None for datasets with one gold answer
    answers: list[str] | None = None

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


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(path, None, None, "is a folder, expected a data file")
    if not path.exists():
        raise DataError(path, None, None, "no such file")


def _decoded(path: Path, data: bytes, where: int | None) -> str:
    """UTF-8 text; other bytes are a DataError naming the line (of the file, or of `data`)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = where if where is not None else data.count(b"\n", 0, error.start) + 1
        raise DataError(path, line, None, f"not UTF-8 text (byte 0x{data[error.start]:02x}); "
                                          "re-encode the file as UTF-8") from None


def read_text(path: Path) -> str:
    """A whole data file as UTF-8 text; a folder, a missing file or other bytes is a DataError."""
    path = Path(path)
    _check_file(path)
    try:
        return _decoded(path, path.read_bytes(), None)
    except OSError as error:
        raise DataError(path, None, None, f"cannot read ({error.strerror})") from None


def read_jsonl_numbered(path: Path) -> list[tuple[int, dict]]:
    """JSON lines with their 1-based line numbers; a bad line is a DataError naming both.

    Raises DataError for a folder, a missing or empty file, bytes that are not UTF-8, a line
    longer than MAX_RECORD_CHARS, a line that is not JSON or not a JSON object.
    """
    path = Path(path)
    _check_file(path)
    rows = []
    with path.open("rb") as handle:  # bytes, so that a decoding error can name its line
        for number, raw in enumerate(handle, start=1):
            line = _decoded(path, raw, number)
            if not line.strip():
                continue
            if len(line) > MAX_RECORD_CHARS:
                raise DataError(path, number, None, f"{len(line):,} characters, over the limit of "
                                                    f"{MAX_RECORD_CHARS:,} per record (MAX_RECORD_CHARS)")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(path, number, None, f"not valid JSON ({error.msg})") from None
            except RecursionError:  # json's decoder recurses once per level of nesting
                raise DataError(path, number, None, "JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise DataError(path, number, None, "expected a JSON object")
            rows.append((number, row))
    if not rows:
        raise DataError(path, None, None, "the file is empty")
    return rows


def read_records(path: Path) -> list[Record]:
    return [Record.from_dict(row) for row in read_jsonl(path)]
