"""One loader per dataset: original format -> `Record`, rejecting malformed rows.

Every loader names the file, the line (or key) and the field of a row it rejects. The row
mappers are shared by the file loaders and the hub loader, since the hub releases keep the
original field names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .records import LETTERS, PUBMEDQA_LABELS, DataError, Record, read_jsonl_numbered


def _text(row: dict, field: str, path, where, optional: bool = False) -> str | None:
    value = row.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise DataError(path, where, field, "missing or empty")
    if not isinstance(value, str):
        raise DataError(path, where, field, f"expected text, got {type(value).__name__}")
    return value.strip()


def pubmedqa_record(pmid: str, row: dict, path, where) -> Record:
    """PQA-L row (`ori_pqal.json` value, or the hub's `pqa_labeled` row with nested context)."""
    if not isinstance(row, dict):
        raise DataError(path, where, None, "expected an object")
    if "context" in row and isinstance(row["context"], dict):  # hub layout
        contexts = row["context"].get("contexts")
        row = {"QUESTION": row.get("question"), "CONTEXTS": contexts,
               "final_decision": row.get("final_decision"), "LONG_ANSWER": row.get("long_answer")}
    question = _text(row, "QUESTION", path, where)
    contexts = row.get("CONTEXTS")
    if not isinstance(contexts, list) or not contexts or not all(isinstance(c, str) for c in contexts):
        raise DataError(path, where, "CONTEXTS", "expected a non-empty list of text")
    label = row.get("final_decision")
    if label not in PUBMEDQA_LABELS:
        raise DataError(path, where, "final_decision", f"{label!r} is not one of yes, no, maybe")
    return Record(
        id=f"pubmedqa-{pmid}",
        dataset="pubmedqa",
        question=question,
        context="\n".join(c.strip() for c in contexts),
        options=None,
        answer=label,
        rationale=_text(row, "LONG_ANSWER", path, where, optional=True),
    )


def medmcqa_record(row: dict, path, where, cop_base: int) -> Record:
    """MedMCQA row: question, opa..opd, cop (0- or 1-based by `cop_base`), optional id and exp."""
    options = [_text(row, f"op{letter}", path, where) for letter in "abcd"]
    cop = row.get("cop")
    if isinstance(cop, bool) or not isinstance(cop, int):
        raise DataError(path, where, "cop", f"expected an integer, got {cop!r}")
    index = cop - cop_base
    if not 0 <= index < 4:
        valid = f"{cop_base}..{cop_base + 3}"
        raise DataError(path, where, "cop", f"{cop} out of range {valid} (data.medmcqa_cop_base={cop_base})")
    row_id = row.get("id") or f"{Path(str(path)).stem}-{where}"
    return Record(
        id=f"medmcqa-{row_id}",
        dataset="medmcqa",
        question=_text(row, "question", path, where),
        context=None,
        options=options,
        answer=LETTERS[index],
        rationale=_text(row, "exp", path, where, optional=True),
    )


def medqa_record(row: dict, path, where) -> Record:
    """MedQA US row: question, options {A: .., B: ..}, answer_idx, answer (must agree)."""
    options = row.get("options")
    if not isinstance(options, dict) or len(options) < 2:
        raise DataError(path, where, "options", "expected an object of lettered options")
    letters = sorted(options)
    if letters != list(LETTERS[: len(letters)]):
        raise DataError(path, where, "options", f"letters {letters} are not A, B, C, ... in order")
    texts = [_text(options, letter, path, where) for letter in letters]
    answer_idx = row.get("answer_idx")
    if answer_idx not in options:
        raise DataError(path, where, "answer_idx", f"{answer_idx!r} is not one of {', '.join(letters)}")
    answer = _text(row, "answer", path, where)
    if options[answer_idx].strip() != answer:
        raise DataError(path, where, "answer", f"{answer!r} differs from options[{answer_idx}]")
    row_id = row.get("id") or f"{Path(str(path)).stem}-{where}"
    return Record(
        id=f"medqa-{row_id}",
        dataset="medqa",
        question=_text(row, "question", path, where),
        context=None,
        options=texts,
        answer=answer_idx,
        rationale=_text(row, "rationale", path, where, optional=True),
    )


def radqa_records(squad: dict, path) -> list[Record]:
    """RadQA (SQuAD v2 JSON); each answer span must match the context at its offset."""
    if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
        raise DataError(path, None, "data", "expected SQuAD v2 JSON with a 'data' list")
    records = []
    for a, article in enumerate(squad["data"]):
        for p, paragraph in enumerate(article.get("paragraphs") or []):
            where = f"data[{a}].paragraphs[{p}]"
            _text(paragraph, "context", path, where)  # present and non-empty
            context = paragraph["context"]  # unstripped: answer_start counts from its first character
            for q, qa in enumerate(paragraph.get("qas") or []):
                records.append(_radqa_record(qa, context, path, f"{where}.qas[{q}]"))
    if not records:
        raise DataError(path, None, "data", "no questions found")
    return records


def _radqa_record(qa: dict, context: str, path, where: str) -> Record:
    qa_id = _text(qa, "id", path, where)
    answers = qa.get("answers") or []
    impossible = qa.get("is_impossible", not answers)
    if not isinstance(impossible, bool):
        raise DataError(path, where, "is_impossible", f"expected true or false, got {impossible!r}")
    if not impossible and not answers:
        raise DataError(path, where, "answers", "an answerable question needs an answer")
    for answer in answers:
        text, start = answer.get("text"), answer.get("answer_start")
        if not isinstance(text, str) or not isinstance(start, int):
            raise DataError(path, where, "answers", "each answer needs text and an integer answer_start")
        if not impossible and not text.strip():
            raise DataError(path, where, "answers", "an answerable question has an empty answer text")
        if context[start : start + len(text)] != text:
            raise DataError(path, where, "answer_start", f"span {text!r} is not in the context at {start}")
    return Record(
        id=f"radqa-{qa_id}",
        dataset="radqa",
        question=_text(qa, "question", path, where),
        context=context,
        options=None,
        answer="" if impossible else answers[0]["text"],
        rationale=_text(qa, "rationale", path, where, optional=True),
    )


def _read_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(path, None, None, f"cannot read ({error.strerror})") from None
    if not text.strip():
        raise DataError(path, None, None, "the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, error.lineno, None, f"not valid JSON ({error.msg})") from None


def load_pubmedqa(path: Path) -> list[Record]:
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError(path, None, None, "expected a non-empty object keyed by PMID")
    return [pubmedqa_record(pmid, row, path, f"key {pmid}") for pmid, row in data.items()]


def load_medmcqa(path: Path, cop_base: int = 0) -> list[Record]:
    return [medmcqa_record(row, path, n, cop_base) for n, row in read_jsonl_numbered(path)]


def load_medqa(path: Path) -> list[Record]:
    return [medqa_record(row, path, n) for n, row in read_jsonl_numbered(path)]


def load_radqa(path: Path) -> list[Record]:
    return radqa_records(_read_json(path), path)


FILE_LOADERS: dict[str, Callable[..., list[Record]]] = {
    "pubmedqa": load_pubmedqa,
    "medmcqa": load_medmcqa,
    "medqa": load_medqa,
    "radqa": load_radqa,
}


def load_files(dataset: str, folder: Path, pattern: str, cop_base: int = 0) -> list[Record]:
    """All files of `dataset` matching `pattern` under `folder`, in sorted order."""
    if dataset not in FILE_LOADERS:
        raise DataError(folder, None, None, f"unknown dataset {dataset!r}; valid: {', '.join(FILE_LOADERS)}")
    paths = sorted(Path(folder).glob(pattern))
    if not paths:
        raise DataError(folder, None, None, f"no {dataset} files match {pattern!r} (data.files.{dataset})")
    loader = FILE_LOADERS[dataset]
    records = []
    for path in paths:
        records += loader(path, cop_base) if dataset == "medmcqa" else loader(path)
    return records


def load_hub(dataset: str, spec, cop_base: int = 0) -> list[Record]:
    """The real dataset through `datasets.load_dataset`, at the pinned revision."""
    import datasets

    rows = datasets.load_dataset(spec.path, spec.name, split=spec.split, revision=spec.revision)
    where = f"{spec.path}@{spec.revision}:{spec.split}"
    if dataset == "pubmedqa":
        return [pubmedqa_record(str(r.get("pubid")), r, where, f"row {n}") for n, r in enumerate(rows)]
    if dataset == "medmcqa":
        return [medmcqa_record(r, where, f"row {n}", cop_base) for n, r in enumerate(rows)]
    if dataset == "medqa":
        return [medqa_record(r, where, f"row {n}") for n, r in enumerate(rows)]
    raise DataError(where, None, None, f"{dataset} has no hub loader")
