"""training/rewards.py (issue 21): each reward component of the `grpo` stage on hand-made answers,
called the way TRL's GRPOTrainer calls it; no model runs here (the trained RM: tests/stages/test_grpo.py)."""

from __future__ import annotations

import math

import pytest

from medadapt.data.prompts import messages
from medadapt.data.records import Record
from medadapt.modeling import reward
from medadapt.modeling.models import ModelError
from medadapt.params import parse_params
from medadapt.scoring import judges
from medadapt.training import rewards

MC = Record(id="mc1", dataset="medmcqa", question="Which vitamin deficiency causes scurvy?", context=None,
            options=["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"], answer="B",
            rationale="Scurvy is due to lack of vitamin C, needed for collagen; 10 mg a day prevents it.")
PQA = Record(id="p1", dataset="pubmedqa", question="Does aspirin lower the risk?",
             context="In 412 patients, aspirin lowered the risk by 22.8% over 5 years.", options=None,
             answer="yes", rationale="The trial of 412 patients showed a lower risk with aspirin.")
NO_RATIONALE = Record(id="q1", dataset="medqa", question="Which drug?", context=None,
                      options=["Heparin", "Warfarin", "Aspirin", "Alteplase"], answer="A", rationale=None)


def trl_call(function, record: Record, outputs: list[str]) -> list:
    """A reward function called the way GRPOTrainer calls it: prompts, conversational completions,
    and every dataset column (the row `prompt_row` writes) repeated per completion."""
    row = rewards.prompt_row(record)
    columns = {key: [value] * len(outputs) for key, value in row.items() if key != "prompt"}
    completions = [[{"role": "assistant", "content": text}] for text in outputs]
    return function(prompts=[row["prompt"]] * len(outputs), completions=completions, completion_ids=None,
                    trainer_state=None, log_extra=None, log_metric=None, **columns)


# ---- correctness: the shared parser against the gold ----------------------------------------------


@pytest.mark.parametrize("output, expected", [
    ("Answer: B. Vitamin C\nExplanation: collagen.", 1.0),
    ("Answer: (B)", 1.0),
    ("Answer: Vitamin C", 1.0),  # the option's text, as the parser reads it
    ("Answer: A. Vitamin A\nExplanation: night blindness.", 0.0),
    ("Answer: D", 0.0),
    ("I am not sure.", 0.0),
    ("", 0.0),
])
def test_correctness_reads_the_letter_with_the_shared_parser(output, expected):
    assert rewards.correctness_score(output, MC) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: yes\nExplanation: lower risk.", 1.0),
    ("Answer: Yes.", 1.0),
    ("Answer: no\nExplanation: no effect.", 0.0),
    ("Answer: maybe", 0.0),
    ("Answer: probably", 0.0),
])
def test_correctness_reads_yes_no_maybe(output, expected):
    assert rewards.correctness_score(output, PQA) == expected


@pytest.mark.parametrize("record, output", [
    (PQA, "Answer: yes, no or maybe"),  # the instruction's choices echoed
    (PQA, "Answer: yes or no"),  # two answers
    (MC, "Answer: B or C"),
    (MC, "Answer: B. Vitamin C\nC. Vitamin D\nD. Vitamin K\nA. Vitamin A"),  # the options echoed, gold first
])
def test_correctness_earns_nothing_for_an_echo_or_two_answers(record, output):
    """The parser of scoring/answers.py reads an echo or two answers as none (issue 19; the flat
    layout's parser read each of these as the gold): a policy cannot collect the correctness
    reward by listing the choices."""
    assert rewards.correctness_score(output, record) == 0.0


def test_correctness_as_trl_calls_it_uses_each_completions_record():
    outputs = ["Answer: B", "Answer: C", "Answer: vitamin c."]
    function = rewards.AnswerReward("correctness", rewards.correctness_score)
    assert function.__name__ == "correctness"
    assert trl_call(function, MC, outputs) == [1.0, 0.0, 1.0]
    assert trl_call(function, PQA, ["Answer: yes", "Answer: no"]) == [1.0, 0.0]


# ---- format ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output, expected", [
    ("Answer: B. Vitamin C\nExplanation: collagen needs it.", 1.0),
    ("\n  Answer: yes\n\nExplanation: the trial says so.", 1.0),
    ("Answer: B. Vitamin C", 0.5),  # no explanation
    ("Answer: B\nExplanation:", 0.5),  # an empty explanation is none
    ("Explanation: collagen.\nAnswer: B", 0.0),  # the answer line must come first
    ("Answer:\nExplanation: collagen.", 0.0),  # an answer line without an answer
    ("Answer: Explanation: collagen.", 0.0),
    ("B. Vitamin C, because collagen.", 0.0),
    ("", 0.0),
])
def test_format_rewards_the_answer_then_explanation_shape(output, expected):
    assert rewards.format_score(output) == expected


# ---- hallucination: evaluate's rule, through the same function ---------------------------------------


@pytest.mark.parametrize("record, output, expected", [
    (MC, "Answer: B\nExplanation: 10 mg of vitamin C a day prevents scurvy.", 0.0),  # 10 is in the rationale
    (MC, "Answer: B\nExplanation: 75 mg of vitamin C a day prevents scurvy.", -1.0),  # 75 is nowhere
    (MC, "Answer: B\nExplanation: give warfarin.", -1.0),  # a drug no source names
    (PQA, "Answer: yes\nExplanation: risk fell by 23% in 412 patients.", 0.0),  # 23 rounds 22.8
    (PQA, "Answer: yes\nExplanation: risk fell by 40% in 412 patients.", -1.0),
    (PQA, "Answer: yes", 0.0),
    (NO_RATIONALE, "Answer: A\nExplanation: 5000 units of heparin.", None),  # not judged, as in evaluate
])
def test_hallucination_penalises_an_unsupported_fact(record, output, expected):
    assert rewards.hallucination_score(output, record) == expected


def test_hallucination_penalty_agrees_with_evaluates_judge():
    outputs = ["Answer: B\nExplanation: 10 mg.", "Answer: B\nExplanation: 75 mg.", "Answer: A", "Answer: B 12"]
    samples = [{"id": MC.id, "output": o} for o in outputs]
    params = parse_params({"evaluate": {"bootstrap_samples": 100}})
    judges.hallucination({MC.id: MC}, samples, params)
    penalties = trl_call(rewards.AnswerReward("hallucination", rewards.hallucination_score), MC, outputs)
    assert penalties == [-float(bool(s["unsupported_facts"])) for s in samples] == [0.0, -1.0, 0.0, -1.0]
    assert judges.hallucination_sources(MC) == [MC.question, None, *MC.options, "B"]


# ---- the reward model: centred on its calibrated threshold ------------------------------------------


def test_reward_model_score_is_centred_on_the_threshold():
    assert rewards.reward_model_score(-0.4, -0.4) == 0.0
    above, below = rewards.reward_model_score(1.6, -0.4), rewards.reward_model_score(-2.4, -0.4)
    assert above == pytest.approx(math.tanh(1.0)) and below == pytest.approx(-math.tanh(1.0))
    assert above == pytest.approx(2 / (1 + math.exp(-2.0)) - 1)  # 2 sigmoid(score - threshold) - 1
    assert -1 <= rewards.reward_model_score(-1e3, 0.0) < 0 < rewards.reward_model_score(1e3, 0.0) <= 1


def test_reward_model_reward_scores_prompt_and_answer_once_per_batch(monkeypatch):
    calls = []

    def fake_score(model, tokenizer, prompts, answers, batch_size, max_length):
        calls.append((prompts, answers, batch_size, max_length))
        return [0.5, 2.5, -1.5]

    monkeypatch.setattr(reward, "score", fake_score)
    function = rewards.RewardModelReward("model", "tokenizer", threshold=0.5, batch_size=3, max_length=99)
    assert function.__name__ == "reward_model"
    scores = trl_call(function, MC, ["Answer: A", "Answer: B", "Answer: C"])
    assert scores == pytest.approx([0.0, math.tanh(1.0), -math.tanh(1.0)])
    (prompts, answers, batch_size, max_length), = calls
    assert prompts == [messages(MC)] * 3 and answers == ["Answer: A", "Answer: B", "Answer: C"]
    assert (batch_size, max_length) == (3, 99)


def test_the_reward_model_scores_with_the_batch_and_length_rm_resolves(monkeypatch, tmp_path):
    """As `pairs` does: `rm` over `train` (`params.training("rm")`), not the bare `rm` section."""
    (tmp_path / "models/rm").mkdir(parents=True)
    (tmp_path / "models/rm/adapter_config.json").write_text("{}")
    (tmp_path / "models/rm/calibration.json").write_text('{"threshold": 0.25}')
    monkeypatch.setattr(reward, "load_reward_model", lambda params, root: ("model", "tokenizer"))
    params = parse_params({"train": {"batch_size": 8, "max_length": 512}, "rm": {"max_length": 256}})
    function = rewards.load_reward_model_reward(params, tmp_path)
    assert (function.batch_size, function.max_length, function.threshold) == (8, 256, 0.25)


def test_a_component_of_weight_zero_is_not_built(monkeypatch, tmp_path):
    def no_rm(*args, **kwargs):
        raise AssertionError("the reward model was loaded for a weight of 0")

    monkeypatch.setattr(reward, "load_reward_model", no_rm)
    params = parse_params({"grpo": {"weights": {"reward_model": 0, "format": 0}}})
    functions, weights = rewards.components(params, tmp_path)
    assert [f.__name__ for f in functions] == ["correctness", "hallucination"] and weights == [1.0, 0.5]


def test_a_reward_model_weight_without_models_rm_names_the_stage(tmp_path):
    with pytest.raises(ModelError, match=r"needs the reward model models/rm .*run `dvc repro rm`") as info:
        rewards.components(parse_params({}), tmp_path)
    assert "\n" not in str(info.value)


def test_a_record_travels_through_the_dataset_columns_whole():
    row = rewards.prompt_row(MC)
    assert row["prompt"] == messages(MC)
    [back] = rewards.records_of({key: [value] for key, value in row.items() if key != "prompt"})
    assert back == MC
