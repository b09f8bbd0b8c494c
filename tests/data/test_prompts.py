"""Prompts: chat messages and rendering, lm-eval log-likelihood shapes, the one answer parser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from examples import ALL, MCQA, MCQA_2, MEDQA, PUBMED, PUBMED_NO, RADQA, RADQA_NONE

from medadapt.data.loaders import load_files
from medadapt.data.prompts import (
    PLAIN_CHAT_TEMPLATE,
    PUBMEDQA_INSTRUCTIONS,
    PUBMEDQA_VARIANTS,
    SYSTEM,
    loglik_request,
    loglik_text,
    messages,
    render,
    response,
    user_message,
)
from medadapt.modeling import models

from conftest import REPO

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
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tmodels
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
