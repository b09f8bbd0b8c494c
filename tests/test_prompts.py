"""Prompts: chat messages and rendering, lm-eval log-likelihood shapes, the one answer parser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import REPO
from medadapt import models
from medadapt.data.loaders import load_files
from medadapt.data.records import Record
from medadapt.prompts import (
    PLAIN_CHAT_TEMPLATE,
    PUBMEDQA_INSTRUCTIONS,
    PUBMEDQA_VARIANTS,
    SYSTEM,
    explanation,
    loglik_request,
    loglik_text,
    messages,
    parse_answer,
    render,
    response,
    user_message,
)

PUBMED = Record(
    id="pubmedqa-1", dataset="pubmedqa", question="Does drug X lower blood pressure?",
    context="We randomised 120 adults.\nSystolic pressure fell by 12 mmHg.\nNo harms were seen.",
    options=None, answer="yes", rationale="Drug X lowered systolic pressure by 12 mmHg.",
)
PUBMED_NO = Record(
    id="pubmedqa-2", dataset="pubmedqa", question="Is Y useful?", context="A trial of Y.\nY did nothing.",
    options=None, answer="no", rationale=None,
)
MCQA = Record(
    id="medmcqa-1", dataset="medmcqa", question="Main vector of Japanese encephalitis:", context=None,
    options=["Aedes mosquito", "Culex mosquito", "Anopheles mosquito", "Sandfly"], answer="B",
    rationale="Culex mosquitoes breed in rice fields.",
)
MCQA_2 = Record(
    id="medmcqa-2", dataset="medmcqa", question="Philadelphia chromosome is seen in:", context=None,
    options=["CLL", "Hairy cell leukemia", "Hodgkin lymphoma", "CML"], answer="D", rationale=None,
)
MEDQA = Record(
    id="medqa-1", dataset="medqa", question="Which artery is occluded?", context=None,
    options=["Left main", "LAD", "Right coronary artery", "Circumflex"], answer="C", rationale=None,
)
RADQA = Record(
    id="radqa-1", dataset="radqa", question="What is the size of the nodule?",
    context="FINDINGS: There is a 9 mm nodule. No effusion.", options=None, answer="a 9 mm nodule",
    rationale="Stated in FINDINGS.",
)
RADQA_NONE = Record(
    id="radqa-2", dataset="radqa", question="Is there a pneumothorax?",
    context="FINDINGS: There is a 9 mm nodule. No effusion.", options=None, answer="", rationale=None,
)
ALL = [PUBMED, MCQA, MEDQA, RADQA, RADQA_NONE]


# ---- tokenizers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    """The tiny model's tokenizer, saved and reloaded as the stages do."""
    texts = [f"{r.question}\n{r.context or ''}\n{' '.join(r.options or [])}\n{response(r)}" for r in ALL] * 5
    _, tokenizer = models.build_tiny_llama(texts, seed=0)
    folder = tmp_path_factory.mktemp("tiny_tok")
    tokenizer.save_pretrained(folder)
    return models.load_tokenizer(str(folder))


@pytest.fixture(scope="module")
def bare_tokenizer(tmp_path_factory):
    """A tokenizer saved with no chat template and no pad token."""
    from tokenizers import Tokenizer, decoders, models as tmodels, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(tmodels.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([user_message(r) for r in ALL], trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>")
    assert not tokenizer.chat_template and tokenizer.pad_token is None
    folder = tmp_path_factory.mktemp("bare_tok")
    tokenizer.save_pretrained(folder)
    return models.load_tokenizer(str(folder))


def expected_plain(chat: list[dict], eos: str) -> str:
    out = ""
    for message in chat:
        if message["role"] == "system":
            out += message["content"] + "\n\n"
        elif message["role"] == "user":
            out += "### Question:\n" + message["content"] + "\n\n"
        else:
            out += "### Response:\n" + message["content"] + eos + "\n\n"
    return out + "### Response:\n"


def test_tiny_tokenizer_keeps_plain_template(tiny_tokenizer):
    assert tiny_tokenizer.chat_template == PLAIN_CHAT_TEMPLATE
    assert tiny_tokenizer.eos_token == "</s>" and tiny_tokenizer.pad_token == "<pad>"


def test_load_tokenizer_fills_template_and_pad(bare_tokenizer):
    assert bare_tokenizer.chat_template == PLAIN_CHAT_TEMPLATE
    assert bare_tokenizer.pad_token == "<eos>"


@pytest.mark.parametrize("tokenizer_name", ["tiny_tokenizer", "bare_tokenizer"])
@pytest.mark.parametrize("record", ALL, ids=lambda r: r.id)
def test_render_each_dataset(request, tokenizer_name, record):
    tokenizer = request.getfixturevalue(tokenizer_name)
    chat = messages(record)
    text = render(tokenizer, chat)
    assert text == expected_plain(chat, tokenizer.eos_token)
    assert text.startswith(SYSTEM + "\n\n### Question:\n")
    assert text.endswith(f"### Question:\n{user_message(record)}\n\n### Response:\n")
    assert response(record) not in text  # the gold answer is never in the prompt


@pytest.mark.parametrize("tokenizer_name", ["tiny_tokenizer", "bare_tokenizer"])
def test_render_with_demonstrations(request, tokenizer_name):
    tokenizer = request.getfixturevalue(tokenizer_name)
    chat = messages(MCQA, demos=[MEDQA, MCQA_2])
    text = render(tokenizer, chat)
    assert text == expected_plain(chat, tokenizer.eos_token)
    eos = tokenizer.eos_token
    assert f"### Response:\n{response(MEDQA)}{eos}\n\n### Question:\n{user_message(MCQA_2)}" in text
    assert text.index(user_message(MEDQA)) < text.index(user_message(MCQA_2)) < text.rindex(user_message(MCQA))
    assert text.count("### Response:") == 3 and text.count(eos) == 2


# ---- messages / response -------------------------------------------------------------------------


def test_messages_without_demos():
    assert messages(MCQA) == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user_message(MCQA)}]


def test_demonstrations_are_earlier_turns_in_order():
    chat = messages(PUBMED, demos=[PUBMED_NO, MCQA], variant=1)
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert chat[1]["content"] == user_message(PUBMED_NO) and chat[2]["content"] == response(PUBMED_NO)
    assert chat[3]["content"] == user_message(MCQA) and chat[4]["content"] == response(MCQA)
    assert chat[5]["content"] == user_message(PUBMED, 1)


def test_user_messages():
    assert user_message(MCQA) == (
        "Choose the single best option and give its letter.\n\n"
        "Question: Main vector of Japanese encephalitis:\n"
        "A. Aedes mosquito\nB. Culex mosquito\nC. Anopheles mosquito\nD. Sandfly"
    )
    assert user_message(MEDQA).endswith("Question: Which artery is occluded?\nA. Left main\nB. LAD\n"
                                        "C. Right coronary artery\nD. Circumflex")
    assert user_message(PUBMED) == (
        f"{PUBMEDQA_INSTRUCTIONS[0]}\n\nAbstract:\nWe randomised 120 adults.\nSystolic pressure fell by 12 mmHg.\n"
        "No harms were seen.\n\nQuestion: Does drug X lower blood pressure?"
    )
    text = user_message(RADQA)
    assert "'not stated in the report'" in text
    assert text.endswith("Report:\nFINDINGS: There is a 9 mm nodule. No effusion.\n\n"
                         "Question: What is the size of the nodule?")


def _abstract(text: str) -> list[str]:
    return text.split("Abstract:\n")[1].split("\n\nQuestion:")[0].split("\n")


def test_pubmedqa_variants_change_one_thing_each():
    reference = user_message(PUBMED, 0)
    paragraphs = PUBMED.context.split("\n")
    # variant 1: the paragraph order alone
    assert user_message(PUBMED, 1).startswith(PUBMEDQA_INSTRUCTIONS[0])
    assert _abstract(user_message(PUBMED, 1)) == paragraphs[::-1]
    # variants 2..: a paraphrased instruction alone, the abstract as in variant 0
    for v in range(2, len(PUBMEDQA_VARIANTS)):
        text = user_message(PUBMED, v)
        assert text.startswith(PUBMEDQA_INSTRUCTIONS[v - 1]) and _abstract(text) == paragraphs
        assert text.replace(PUBMEDQA_INSTRUCTIONS[v - 1], PUBMEDQA_INSTRUCTIONS[0]) == reference
    assert len({user_message(PUBMED, v) for v in range(len(PUBMEDQA_VARIANTS))}) == len(PUBMEDQA_VARIANTS)
    for v in range(len(PUBMEDQA_VARIANTS)):
        assert user_message(PUBMED, v).endswith("Question: Does drug X lower blood pressure?")
    # exam and report questions have no variants
    assert user_message(MCQA, 1) == user_message(MCQA) and user_message(RADQA, 3) == user_message(RADQA)


def test_pubmedqa_unknown_variant_is_an_error_and_params_stop_at_the_last():
    from medadapt.params import ParamsError, load_params

    with pytest.raises(ValueError, match="variants 0..4"):
        user_message(PUBMED, len(PUBMEDQA_VARIANTS))
    last = f"evaluate.consistency_variants={len(PUBMEDQA_VARIANTS)}"
    assert load_params(REPO / "params.yaml", [last]).evaluate.consistency_variants == len(PUBMEDQA_VARIANTS)
    with pytest.raises(ParamsError):
        load_params(REPO / "params.yaml", [f"evaluate.consistency_variants={len(PUBMEDQA_VARIANTS) + 1}"])


def test_responses():
    assert response(MCQA) == "Answer: B. Culex mosquito\nExplanation: Culex mosquitoes breed in rice fields."
    assert response(MEDQA) == "Answer: C. Right coronary artery"
    assert response(PUBMED) == "Answer: yes\nExplanation: Drug X lowered systolic pressure by 12 mmHg."
    assert response(RADQA) == "Answer: a 9 mm nodule\nExplanation: Stated in FINDINGS."
    assert response(RADQA_NONE) == "Answer: not stated in the report"


# ---- log-likelihood prompts -----------------------------------------------------------------


def _lm_eval(task: str, module: str):
    spec = importlib.util.find_spec("lm_eval")
    if spec is None:
        pytest.skip("lm-eval is not installed")
    path = Path(spec.submodule_search_locations[0]) / "tasks" / task / f"{module}.py"
    loaded = importlib.util.spec_from_file_location(f"_lm_eval_{module}", path)
    mod = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(mod)
    return mod.doc_to_text


def test_loglik_text_literal_shapes():
    assert loglik_text(MCQA) == (
        "Question: Main vector of Japanese encephalitis:\nChoices:\nA. Aedes mosquito\nB. Culex mosquito\n"
        "C. Anopheles mosquito\nD. Sandfly\nAnswer:"
    )
    assert loglik_text(MEDQA) == (
        "Question: Which artery is occluded?\nA. Left main\nB. LAD\nC. Right coronary artery\nD. Circumflex\nAnswer:"
    )
    assert loglik_text(PUBMED) == (
        "Abstract: We randomised 120 adults.\nSystolic pressure fell by 12 mmHg.\nNo harms were seen.\n"
        "Question: Does drug X lower blood pressure?\nAnswer:"
    )


def test_loglik_text_equals_lm_eval_doc_to_text():
    medmcqa = _lm_eval("medmcqa", "utils_medmcqa")
    medqa = _lm_eval("medqa", "preprocess_medqa")
    pubmedqa = _lm_eval("pubmedqa", "preprocess_pubmedqa")
    for record in load_files("medmcqa", REPO / "data/sample", "medmcqa/*.jsonl")[:10] + [MCQA]:
        doc = {"question": record.question, **{f"op{x}": o for x, o in zip("abcd", record.options)}}
        assert loglik_text(record) == medmcqa(doc)
    for record in load_files("medqa", REPO / "data/sample", "medqa/*.jsonl")[:10] + [MEDQA]:
        doc = {"sent1": record.question, **{f"ending{i}": o for i, o in enumerate(record.options)}}
        assert loglik_text(record) == medqa(doc)
    for record in load_files("pubmedqa", REPO / "data/sample", "pubmedqa/ori_pqal.json")[:10] + [PUBMED]:
        doc = {"QUESTION": record.question, "CONTEXTS": record.context.split("\n")}
        assert loglik_text(record) == pubmedqa(doc)


def test_loglik_pubmedqa_variants_change_one_thing_each():
    # variant 0 is lm-eval's prompt; 1 reverses the paragraphs and adds nothing
    assert loglik_text(PUBMED, 1) == (
        "Abstract: No harms were seen.\nSystolic pressure fell by 12 mmHg.\n"
        "We randomised 120 adults.\nQuestion: Does drug X lower blood pressure?\nAnswer:"
    )
    # 2..: a paraphrased instruction before lm-eval's prompt, nothing else
    for v in range(2, len(PUBMEDQA_VARIANTS)):
        assert loglik_text(PUBMED, v) == f"{PUBMEDQA_INSTRUCTIONS[v - 1]}\n{loglik_text(PUBMED)}"
    assert len({loglik_text(PUBMED, v) for v in range(len(PUBMEDQA_VARIANTS))}) == len(PUBMEDQA_VARIANTS)


def test_loglik_radqa_has_no_form():
    with pytest.raises(ValueError, match="radqa has no log-likelihood form"):
        loglik_text(RADQA)


def test_loglik_request_radqa_gives_the_clear_error():
    with pytest.raises(ValueError, match="no log-likelihood form"):
        loglik_request(RADQA)


def test_loglik_request_zero_shot():
    request = loglik_request(MCQA)
    assert request.context == loglik_text(MCQA)
    assert request.choices == (" A", " B", " C", " D")
    assert request.gold == 1
    pub = loglik_request(PUBMED_NO)
    assert pub.choices == (" yes", " no", " maybe") and pub.gold == 1
    assert loglik_request(MEDQA).gold == 2


def test_loglik_request_few_shot_joins_with_blank_lines():
    request = loglik_request(MCQA, demos=[MCQA_2, MCQA_2])
    shot = loglik_text(MCQA_2) + " D"
    assert request.context == f"{shot}\n\n{shot}\n\n{loglik_text(MCQA)}"
    assert request.context.count("\n\n") == 2
    assert request.choices[request.gold] == " B"
    pub = loglik_request(PUBMED, demos=[PUBMED_NO], variant=1)
    assert pub.context == f"{loglik_text(PUBMED_NO)} no\n\n{loglik_text(PUBMED, 1)}"
    assert pub.choices[pub.gold] == " yes"


# ---- the answer parser ------------------------------------------------------------------------


@pytest.mark.parametrize("output, expected", [
    ("Answer: B", "B"),
    ("Answer: B. Culex mosquito\nExplanation: rice fields.", "B"),
    ("Answer: (C)", "C"),
    ("Answer: (C) Anopheles mosquito", "C"),
    ("Answer: D)", "D"),
    ("answer: A.", "A"),
    ("ANSWER - A", "A"),
    ("Answer:\nB", "B"),
    ("  Answer:   D: Sandfly  ", "D"),
    ("Answer: Culex mosquito", "B"),
    ("Answer: culex MOSQUITO.", "B"),
    ("Some preamble\nAnswer: Sandfly\nExplanation: ...", "D"),
    ("B. Culex mosquito\nExplanation: no tag", "B"),
    ("\n\n  (A)\nbecause", "A"),
    ("Sandfly", "D"),
    ("Answer: E", None),
    ("Answer: (F) none of these", None),
    ("Answer: I think it is B", None),
    ("Answer: Tsetse fly", None),
    ("Answer: Culex", None),
    ("Answer:", None),
    ("", None),
    ("  \n \n", None),
])
def test_parse_option_answers(output, expected):
    assert parse_answer(output, MCQA) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: yes", "yes"),
    ("Answer: Yes, the trial shows it.", "yes"),
    ("ANSWER: NO.", "no"),
    ("Answer: Maybe", "maybe"),
    ("answer: (no)", "no"),
    ("Answer: 'MAYBE'", "maybe"),
    ("No.\nExplanation: the effect was null.", "no"),
    ("maybe\n", "maybe"),
    ("Answer: yesterday", None),
    ("Answer: nope", None),
    ("Answer: unclear", None),
    ("Answer: B", None),
    ("I cannot tell.", None),
    ("", None),
])
def test_parse_pubmedqa_answers(output, expected):
    assert parse_answer(output, PUBMED) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: not stated in the report", ""),
    ("Answer: Not stated in the report.", ""),
    ("Answer: Not mentioned.\nExplanation: the report is silent.", ""),
    ("Answer: The size is not reported", ""),
    ("Answer: This cannot be determined from the report.", ""),
    ("Answer: unanswerable", ""),
    ("Answer: NOT DESCRIBED", ""),
    ("Answer: a 9 mm nodule\nExplanation: FINDINGS.", "a 9 mm nodule"),
    ("Answer:   a 9 mm nodule.  ", "a 9 mm nodule"),
    ('Answer: "a 9 mm nodule"', "a 9 mm nodule"),
    ('Answer: "a 9 mm nodule" ', "a 9 mm nodule"),
    ("a 9 mm nodule\nExplanation: no tag", "a 9 mm nodule"),
    ("Answer:", None),
    ("", None),
])
def test_parse_radqa_answers(output, expected):
    assert parse_answer(output, RADQA) == expected
    assert parse_answer(output, RADQA_NONE) == expected


def test_empty_answer_line_followed_by_explanation_is_unreadable():
    assert parse_answer("Answer:\nExplanation: the report is silent.", RADQA) is None


@pytest.mark.parametrize("dataset, pattern", [
    ("pubmedqa", "pubmedqa/ori_pqal.json"), ("medmcqa", "medmcqa/*.jsonl"),
    ("medqa", "medqa/*.jsonl"), ("radqa", "radqa/*.json"),
])
def test_gold_responses_parse_back_to_gold(dataset, pattern):
    for record in load_files(dataset, REPO / "data/sample", pattern):
        assert parse_answer(response(record), record) == record.answer.strip(" ."), record.id


def test_explanation():
    assert explanation("Answer: B\nExplanation: Culex breeds in rice fields.") == "Culex breeds in rice fields."
    assert explanation("Answer: B\nexplanation:   line one\nline two\n") == "line one\nline two"
    assert explanation("Answer: yes\nEXPLANATION: Because 12 mmHg.") == "Because 12 mmHg."
    assert explanation("Answer: B\nBecause culex.\nMore.") == "Because culex.\nMore."
    assert explanation("B\nBecause culex.") == "B\nBecause culex."  # no tags: the whole output
    assert explanation("Answer: B") == ""
    assert explanation("") == ""
    assert explanation(response(MCQA)) == MCQA.rationale


# ---- issue 19: echoes, letters that are words, "the answer is X", two answers, RadQA's "not
# mentioned". Every output below fails on the parser before issue 19.

COURSE = Record(
    id="medqa-2", dataset="medqa", question="Which treatment is best for this urinary infection?", context=None,
    options=["Oral amoxicillin for 10 days", "A 3-day course of oral ciprofloxacin", "Observation",
             "A single dose of intramuscular ceftriaxone"],
    answer="B", rationale=None,
)


@pytest.mark.parametrize("output", [
    "Answer: yes, no or maybe.",  # 93 of sft's 100 PubMedQA generations
    "Answer: Yes, no, or maybe",
    "Answer: yes; no; maybe; maybe; maybe; maybe",
    "Answer: yes, no or maybe. Answer: yes, no or maybe. Explanation: Laser enhances absorption.",
    "Answer: yes. Answer: no. Answer: maybe. Explanation: The tunnels were long enough.",
    "yes, no or maybe",
])
def test_echoed_pubmedqa_instruction_is_no_answer(output):
    assert parse_answer(output, PUBMED) is None


@pytest.mark.parametrize("output", [
    "A. Aedes mosquito\nB. Culex mosquito\nC. Anopheles mosquito\nD. Sandfly",
    "A. Aedes mosquito\nB. Culex mosquito\nC. Anopheles mosquito",
    "Answer: A. Aedes mosquito\nB. Culex mosquito",
    "Answer: B. Culex mosquito\nC. Culex mosquito",
    "A) Aedes mosquito\nB) Culex mosquito\nC) Anopheles mosquito\nD) Sandfly",
])
def test_echoed_option_list_is_no_answer(output):
    assert parse_answer(output, MCQA) is None


def test_one_option_restated_is_no_option_list():
    assert parse_answer("B. Culex mosquito\n\nB. Culex mosquito breeds in rice fields.", MCQA) == "B"


@pytest.mark.parametrize("output, expected", [
    ("Answer: A 3-day course of oral ciprofloxacin", "B"),  # "A" is the article, not the letter
    ("Answer: A single dose of intramuscular ceftriaxone.", "D"),
    ("Answer: A 5-day course of oral doxycycline", None),  # no option's text
    ("Answer: A. Oral amoxicillin for 10 days", "A"),
    ("Answer: (A) Oral amoxicillin for 10 days", "A"),
    ("Answer: A) Oral amoxicillin", "A"),  # its own option's text, cut short
    ("Answer: A. A 3-day course of oral ciprofloxacin", None),  # letter A, option B's text
    ("Answer: B. A 3-day course of oral ciprofloxacin\nExplanation: short courses suffice.", "B"),
    ("Answer: B", "B"),
])
def test_letter_counts_only_with_its_own_options_text(output, expected):
    assert parse_answer(output, COURSE) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: C. Culex mosquito", None),  # letter C, option B's text
    ("C. Sandfly", None),
    ("Answer: B. Culex mosquitoes", "B"),  # a plural is still option B
    ("Answer: D. Sandfly (Phlebotomus)", "D"),  # words added
    ("Answer: B. Culx mosquito", "B"),  # misspelt
])
def test_letter_with_text_of_mcqa(output, expected):
    assert parse_answer(output, MCQA) == expected


def test_letter_keeps_its_text_shared_with_another_option():
    """One real MedMCQA item (dev 989) has the same text for C and D; its gold response says D."""
    record = Record(**{**MCQA.to_dict(), "options": ["Aedes mosquito", "Culex mosquito", "Sandfly", "Sandfly"],
                       "answer": "D"})
    assert parse_answer(response(record), record) == "D"
    assert parse_answer("Answer: C. Sandfly", record) == "C"
    assert parse_answer("Answer: Sandfly", record) == "C"  # text alone: the first option with it


@pytest.mark.parametrize("output, expected", [
    ("The answer is C", "C"),
    ("The answer is C.", "C"),
    ("answer is (C)", "C"),
    ("The correct answer is: C. Anopheles mosquito", "C"),
    ("The correct answer is:\nC. Anopheles mosquito", "C"),
    ("Answer: The answer is C", "C"),
    ("I think the best answer is (C) Anopheles mosquito.", "C"),
    ("The answer is not C.", None),
])
def test_the_answer_is_a_letter(output, expected):
    assert parse_answer(output, MCQA) == expected


@pytest.mark.parametrize("output, expected", [
    ("The answer to the question is yes.", "yes"),
    ('The answer to the question "Is drug X useful?" is "No."', "no"),
    ("The answer is: Maybe", "maybe"),
    ("The answer to this question is:\n\nNo.", "no"),
])
def test_the_answer_is_a_pubmedqa_label(output, expected):
    assert parse_answer(output, PUBMED) == expected


@pytest.mark.parametrize("output, record", [
    ("Answer: B or C", MCQA),
    ("Answer: B, C", MCQA),
    ("Answer: B and D", MCQA),
    ("Answer: A. Aedes mosquito\n\nThe correct answer is D. Sandfly.", MCQA),
    ("B. Culex mosquito\nExplanation: The answer is D.", MCQA),
    ("Answer: yes or no", PUBMED),
    ("Answer: yes. Answer: maybe. Explanation: AIs may raise the risk.", PUBMED),
    ("Answer: yes\nExplanation: The answer is no, the effect was null.", PUBMED),
    ("The answer to the question is yes. The answer is no.", PUBMED),
])
def test_two_different_answers_are_no_answer(output, record):
    assert parse_answer(output, record) is None


@pytest.mark.parametrize("output, expected", [
    ("Answer: yes. Answer: yes. Explanation: Fast foods are a risk factor.", "yes"),
    ("Answer: Answer: no", "no"),
    ("B. Culex mosquito\n\nThe correct answer is B. Culex mosquito.", "B"),
])
def test_the_same_answer_repeated_counts(output, expected):
    record = PUBMED if expected in ("yes", "no") else MCQA
    assert parse_answer(output, record) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: The report does not mention a pneumothorax.", ""),
    ("Answer: does not mention", ""),
    ("Answer: Not mentioned in the report.", ""),
    ("Answer: No mention of a pneumothorax.", ""),
    ("Answer: The report does not say.", ""),
    ("Answer: The report doesn't state the size.", ""),
    ("Answer: This cannot be answered from the report.", ""),
    ("Answer: cannot be answered", ""),
    ("Answer: Unanswerable.", ""),
    ("Answer: not stated in the report\nExplanation: the report is silent.", ""),
    ("Answer: Answer: a 9 mm nodule", "a 9 mm nodule"),
    ("Answer: a 9 mm nodule\nExplanation: the report does not mention growth.", "a 9 mm nodule"),
    ("Answer: No pneumothorax", "No pneumothorax"),  # a span that says "no" is an answer
    ("Answer: no mentionable change", "no mentionable change"),
    # the instruction echoed: a span "or" the unanswerable phrase is no answer
    ("Answer: a short span copied from the radiology report, or 'not stated in the report'", None),
    ("Answer: a 9 mm nodule or not stated in the report", None),
])
def test_parse_radqa_unanswerable_and_echoes(output, expected):
    assert parse_answer(output, RADQA) == expected
