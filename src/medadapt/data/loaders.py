"""One loader per dataset: original format -> `Record`, rejecting malformed rows.

Every loader names the file, the line (or key) and the field of a row it rejects, and an id
given twice names both places (demonstrations and per-item scores are keyed by id). Question,
context and option text is kept as published, since lm-eval's prompts use it so: only empty or
whitespace-only text is rejected. The row mappers are shared by the file loaders and the hub
loader, since the hub releases keep the original field names.

`load_splits` (files) and `load_hub_splits` (the hub) give a dataset's official splits: the
evaluation split always, the train split where the source has one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .records import (
    LETTERS,
    MAX_RECORD_CHARS,
    PUBMEDQA_LABELS,
    DataError,
    Record,
    location,
    read_jsonl_numbered,
    read_text,
)

# Official eval-split ids that medadapt ships, for sources holding both splits in one (the
# hub's PubMedQA `pqa_labeled`); the file says where its ids come from.
BUILTIN_IDS = {"builtin:pubmedqa-test": Path(__file__).with_name("pubmedqa_test_pmids.txt")}

Located = tuple[Path | str, int | str, Record]  # (file or hub split, line or key, record): where it was read


def invisible(text: str) -> bool:
    """Whitespace and format characters only (zero-width spaces, joiners, BOMs): nothing to read."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in `text` (JSON's `\\ud800` escape gives one): no character, and
    UTF-8 cannot encode it, so writing the prepared data would fail."""
    return next((char for char in text if unicodedata.category(char) == "Cs"), None)


def _checked_text(value: str, field: str, path, where) -> str:
    if (char := lone_surrogate(value)) is not None:
        raise DataError(path, where, field, f"holds a lone surrogate {char!a} (no character; the source "
                                            "file is damaged)")
    return value


def _text(row: dict, field: str, path, where, optional: bool = False) -> str | None:
    """The field's text as published; missing, empty, whitespace- or invisible-only text is a
    DataError unless optional, and so is a lone surrogate."""
    value = row.get(field)
    if value is None or (isinstance(value, str) and invisible(value)):
        if optional:
            return None
        raise DataError(path, where, field, "missing or empty")
    if not isinstance(value, str):
        raise DataError(path, where, field, f"expected text, got {type(value).__name__}")
    return _checked_text(value, field, path, where)


def _row_id(row: dict, path, where) -> str:
    """The row's own id as text (a number is kept as its digits), or one made of file and line."""
    value = row.get("id")
    if value is None or value == "":
        return f"{Path(str(path)).stem}-{where}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(path, where, "id", f"expected text or a number, got {type(value).__name__}")
    return _text(row, "id", path, where) if isinstance(value, str) else str(value)


def _rationale(row: dict, field: str, path, where) -> str | None:
    # Stripped, unlike the prompt text: it is the training target after "Explanation: ".
    text = _text(row, field, path, where, optional=True)
    return text.strip() if text else None


def _record(path, where, **fields) -> Record:
    """The record, if its text is within MAX_RECORD_CHARS (JSON files and hub rows have no line cap)."""
    record = Record(**fields)
    for field in ("question", "context", "rationale"):  # the texts no `_text` call checked (joined, stripped)
        if getattr(record, field):
            _checked_text(getattr(record, field), field, path, where)
    for answer in record.answers or []:
        _checked_text(answer, "answers", path, where)
    size = sum(len(text) for text in (record.question, record.context or "", record.rationale or "",
                                       *(record.options or [])))
    if size > MAX_RECORD_CHARS:
        raise DataError(path, where, None, f"{size:,} characters of text, over the limit of "
                                           f"{MAX_RECORD_CHARS:,} per record (MAX_RECORD_CHARS)")
    return record


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
    return _record(
        path, where,
        id=f"pubmedqa-{pmid}",
        dataset="pubmedqa",
        question=question,
        context="\n".join(contexts),  # as lm-eval's pubmedqa prompt joins them
        options=None,
        answer=label,
        rationale=_rationale(row, "LONG_ANSWER", path, where),
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
    return _record(
        path, where,
        id=f"medmcqa-{_row_id(row, path, where)}",
        dataset="medmcqa",
        question=_text(row, "question", path, where),
        context=None,
        options=options,
        answer=LETTERS[index],
        rationale=_rationale(row, "exp", path, where),
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
    if not isinstance(answer_idx, str) or answer_idx not in options:
        raise DataError(path, where, "answer_idx", f"{answer_idx!r} is not one of {', '.join(letters)}")
    answer = _text(row, "answer", path, where)
    if options[answer_idx].strip() != answer.strip():  # published text may differ in edge spaces
        raise DataError(path, where, "answer", f"{answer!r} differs from options[{answer_idx}]")
    return _record(
        path, where,
        id=f"medqa-{_row_id(row, path, where)}",
        dataset="medqa",
        question=_text(row, "question", path, where),
        context=None,
        options=texts,
        answer=answer_idx,
        rationale=_rationale(row, "rationale", path, where),
    )


def _radqa_located(path: Path, cop_base: int = 0) -> list[Located]:
    """RadQA (SQuAD v2 JSON); each answer span must match the context at its offset."""
    squad = _read_json(path)
    if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
        raise DataError(path, None, "data", "expected SQuAD v2 JSON with a 'data' list")
    located = []
    for a, article in enumerate(squad["data"]):
        for p, paragraph in enumerate(_list_of_objects(article, "paragraphs", path, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            _text(paragraph, "context", path, where)  # present and non-empty
            context = paragraph["context"]
            for q, qa in enumerate(_list_of_objects(paragraph, "qas", path, where)):
                place = f"{where}.qas[{q}]"
                located.append((path, place, _radqa_record(qa, context, path, place)))
    if not located:
        raise DataError(path, None, "data", "no questions found")
    return located


def _object(value, path, where: str):
    if not isinstance(value, dict):
        raise DataError(path, where, None, f"expected an object, got {type(value).__name__}")
    return value


def _list_of_objects(parent: dict, field: str, path, where: str) -> list[dict]:
    """`parent[field]`, a list of JSON objects (absent or null: none); SQuAD nests these lists."""
    _object(parent, path, where)
    items = parent.get(field) or []
    if not isinstance(items, list):
        raise DataError(path, where, field, f"expected a list, got {type(items).__name__}")
    return [_object(item, path, f"{where}.{field}[{i}]") for i, item in enumerate(items)]


def _radqa_record(qa: dict, context: str, path, where: str) -> Record:
    qa_id = _text(qa, "id", path, where)
    answers = qa.get("answers") or []
    if not isinstance(answers, list) or not all(isinstance(answer, dict) for answer in answers):
        raise DataError(path, where, "answers", "expected a list of objects with text and answer_start")
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
    golds = [] if impossible else [answer["text"] for answer in answers]
    return _record(
        path, where,
        id=f"radqa-{qa_id}",
        dataset="radqa",
        question=_text(qa, "question", path, where),
        context=context,
        options=None,
        answer=golds[0] if golds else "",
        rationale=_rationale(qa, "rationale", path, where),
        answers=golds,
    )


class _RepeatedKey(Exception):
    """A key given twice in one JSON object (json.loads would silently keep the last)."""


def _unique_keys(pairs: list[tuple]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen.add(key)
    return dict(pairs)


def _key_lines(text: str, key: str) -> str | None:
    """`lines 3 and 9`: where `key` stands as a key (None if its spelling in the file differs)."""
    pattern = re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:"
    lines = [text.count("\n", 0, match.start()) + 1 for match in re.finditer(pattern, text)]
    return f"lines {lines[0]} and {lines[1]}" if len(lines) >= 2 else None


def _read_json(path: Path):
    """A JSON data file; raises DataError for bad bytes or JSON, an empty file, a repeated key."""
    text = read_text(path)
    if not text.strip():
        raise DataError(path, None, None, "the file is empty")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise DataError(path, error.lineno, None, f"not valid JSON ({error.msg})") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise DataError(path, None, None, "JSON nested too deeply") from None
    except _RepeatedKey as repeated:
        key = repeated.args[0]
        raise DataError(path, _key_lines(text, key), None,
                        f"key {key!r} is given twice (JSON would keep only the last)") from None


def _pubmedqa_located(path: Path, cop_base: int = 0) -> list[Located]:
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError(path, None, None, "expected a non-empty object keyed by PMID")
    return [(path, f"key {pmid}", pubmedqa_record(pmid, row, path, f"key {pmid}")) for pmid, row in data.items()]


def _medmcqa_located(path: Path, cop_base: int = 0) -> list[Located]:
    return [(path, n, medmcqa_record(row, path, n, cop_base)) for n, row in read_jsonl_numbered(path)]


def _medqa_located(path: Path, cop_base: int = 0) -> list[Located]:
    return [(path, n, medqa_record(row, path, n)) for n, row in read_jsonl_numbered(path)]


def unique_ids(located: list[Located]) -> list[Record]:
    """The records, in order; raises DataError naming both places of an id given twice."""
    first: dict[str, str] = {}
    for path, where, record in located:
        if record.id in first:
            raise DataError(path, where, "id", f"{record.id!r} is also the id at {first[record.id]}")
        first[record.id] = location(path, where)
    return [record for _, _, record in located]


def load_pubmedqa(path: Path) -> list[Record]:
    return unique_ids(_pubmedqa_located(path))


def load_medmcqa(path: Path, cop_base: int = 0) -> list[Record]:
    return unique_ids(_medmcqa_located(path, cop_base))


def load_medqa(path: Path) -> list[Record]:
    return unique_ids(_medqa_located(path))


def load_radqa(path: Path) -> list[Record]:
    return unique_ids(_radqa_located(path))


FILE_LOADERS: dict[str, Callable[..., list[Located]]] = {
    "pubmedqa": _pubmedqa_located,
    "medmcqa": _medmcqa_located,
    "medqa": _medqa_located,
    "radqa": _radqa_located,
}


def _matching(folder: Path, pattern: str, param: str) -> list[Path]:
    """Files matching `pattern` under `folder`, sorted; a matching folder is a DataError."""
    paths = sorted(Path(folder).glob(pattern))
    for path in paths:
        if path.is_dir():
            raise DataError(path, None, None, f"a folder matches {param} {pattern!r}; it must match data files only")
    return paths


def _locate(dataset: str, paths: list[Path], cop_base: int) -> list[Located]:
    return [item for path in paths for item in FILE_LOADERS[dataset](path, cop_base)]


def load_files(dataset: str, folder: Path, pattern: str, cop_base: int = 0) -> list[Record]:
    """All files of `dataset` matching `pattern` under `folder`, in sorted order, ids unique."""
    if dataset not in FILE_LOADERS:
        raise DataError(folder, None, None, f"unknown dataset {dataset!r}; valid: {', '.join(FILE_LOADERS)}")
    paths = _matching(folder, pattern, f"data.files.{dataset}")
    if not paths:
        raise DataError(folder, None, None, f"no {dataset} files match {pattern!r} (data.files.{dataset})")
    return unique_ids(_locate(dataset, paths, cop_base))


# ---- official splits ------------------------------------------------------------------------


@dataclass(frozen=True)
class Splits:
    """A dataset's official splits as read: eval always, train where the source has one."""

    eval: list[Record]
    eval_source: str  # the files or hub split the eval items came from
    train: list[Record] | None  # None: the source has no train split
    train_source: str  # the files or hub split of train, or why there is none


def ids_file(name: str, folder: Path) -> Path:
    """The file an `eval_ids` param names: a BUILTIN_IDS name, or a path under `folder`."""
    return BUILTIN_IDS.get(name) or Path(folder) / name


def read_ids(name: str, folder: Path) -> set[str]:
    """The ids an `eval_ids` param lists (see `ids_file`): JSON (a list of ids, or an object keyed
    by id as PubMedQA's `test_ground_truth.json`) or text (one id a line, `#` starts a comment
    line). Raises DataError for a file listing none."""
    path = ids_file(name, folder)
    if path.suffix == ".json":
        data = _read_json(path)
        if not isinstance(data, (dict, list)):
            raise DataError(path, None, None, "expected a JSON list of ids or an object keyed by id")
        ids = {str(item) for item in data}
    else:
        ids = {line.strip() for line in read_text(path).splitlines() if line.strip() and not line.startswith("#")}
    if not ids:
        raise DataError(path, None, None, "lists no ids")
    return ids


def _official(dataset: str, evaluation: list[Located], train: list[Located] | None, eval_ids: str | None,
              folder: Path, sources: tuple[str, str]) -> Splits:
    """Splits from what was read: with `eval_ids`, eval keeps the listed items, train the others."""
    eval_source, train_source = sources
    if eval_ids:
        ids = read_ids(eval_ids, folder)
        listed = {f"{dataset}-{i}" for i in ids}
        evaluation = [item for item in evaluation if item[2].id in listed]
        if not evaluation:
            raise DataError(ids_file(eval_ids, folder), None, None,
                            f"none of its {len(ids)} ids is a {dataset} item of {eval_source}")
        train = None if train is None else [item for item in train if item[2].id not in listed]
        eval_source += f", ids in {eval_ids}"
        train_source += f", ids not in {eval_ids}" if train is not None else ""
    records = unique_ids(evaluation + (train or []))  # an id in both splits is an error too
    return Splits(records[: len(evaluation)], eval_source, None if train is None else records[len(evaluation):],
                  train_source)


def load_splits(dataset: str, folder: Path, spec, cop_base: int = 0) -> Splits:
    """The official splits of `dataset` under `folder`, by `spec` (`data.files.<dataset>`).

    Assumes `spec.eval` matches the official eval split's files and `spec.train` the train
    split's (null, or matching no file: the source has no train split). Without `eval_ids` a
    file belongs to one split; with it, one file may hold both and its listed ids are eval.
    Raises DataError for a file matched by both globs without `eval_ids`, an id in both splits,
    and whatever the loaders raise.
    """
    param = f"data.files.{dataset}"
    eval_paths = _matching(folder, spec.eval, f"{param}.eval")
    if not eval_paths:
        raise DataError(folder, None, None, f"no {dataset} files match {spec.eval!r} ({param}.eval): fix the "
                                            f"glob, or leave {dataset} out of data.datasets")
    train_paths = _matching(folder, spec.train, f"{param}.train") if spec.train else []
    both = set(eval_paths) & set(train_paths)
    if both and not spec.eval_ids:
        raise DataError(min(both), None, None, f"matched by both {param}.train and {param}.eval; a file "
                                               f"belongs to one split unless {param}.eval_ids lists the eval items")
    if train_paths:
        train_source = spec.train
    elif spec.train is None:
        train_source = f"{param}.train is null"
    else:
        train_source = f"no file matches {param}.train {spec.train!r}"
    train = _locate(dataset, train_paths, cop_base) if train_paths else None
    return _official(dataset, _locate(dataset, eval_paths, cop_base), train, spec.eval_ids, folder,
                     (spec.eval, train_source))


def _hub_located(dataset: str, spec, split: str, cop_base: int) -> list[Located]:
    import datasets

    rows = datasets.load_dataset(spec.path, spec.name, split=split, revision=spec.revision)
    where = f"{spec.path}@{spec.revision}:{split}"
    mappers = {
        "pubmedqa": lambda row, at: pubmedqa_record(str(row.get("pubid")), row, where, at),
        "medmcqa": lambda row, at: medmcqa_record(row, where, at, cop_base),
        "medqa": lambda row, at: medqa_record(row, where, at),
    }
    if dataset not in mappers:
        raise DataError(where, None, None, f"{dataset} has no hub loader")
    return [(where, f"row {n}", mappers[dataset](row, f"row {n}")) for n, row in enumerate(rows)]


def load_hub_splits(dataset: str, spec, root: Path, cop_base: int = 0) -> Splits:
    """The official splits through `datasets.load_dataset` at the pinned revision, by `spec`
    (`data.hub.<dataset>`: `eval` and `train` split names, `eval_ids` read relative to `root`)."""
    eval_rows = _hub_located(dataset, spec, spec.eval, cop_base)
    train_rows = _hub_located(dataset, spec, spec.train, cop_base) if spec.train else None
    name = f"{spec.path}@{spec.revision}:"
    train_source = name + spec.train if spec.train else f"data.hub.{dataset}.train is null"
    return _official(dataset, eval_rows, train_rows, spec.eval_ids, root, (name + spec.eval, train_source))
