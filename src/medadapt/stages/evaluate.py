"""Stage `evaluate`: score the model of `method` on every eval split, the same way for all.

    dvc repro evaluate                      # the method in params.yaml
    dvc exp run -S method=dpo               # another method: only this stage re-runs
    medadapt evaluate --set method=sft      # outside DVC

Reads `method`, `evaluate.*`, `icl.shuffle_permutations`, `model.*`, the eval splits, the
method's artifact (`models/sft_*`, `models/dpo`, `models/grpo` or `data/icl/demos.jsonl`), the reward model
`models/rm` and `data/safety/eval.jsonl`. Writes `metrics/eval.json`,
`reports/eval_samples.jsonl` (per item: prompt, output, parsed answer, gold, scores),
`reports/eval_items.json` (per-item scores for paired tests), plot data in `reports/plots/`
and `reports/pubmedqa_confusion.png`.

The methods differ only in the model (base, base + adapter) and the prompt (zero-shot, or
k-shot with the `icl` stage's demonstrations); every metric below is computed by this one
module for all of them:
- MedMCQA, MedQA: accuracy by option log-likelihood (the headline; lm-eval's `medmcqa` and
  `medqa_4options` prompts and `acc`), and accuracy of greedy generation read by the shared
  parser, with its unparsed rate. ICL may vote over shuffled option orders (Medprompt).
- PubMedQA: accuracy and macro-F1 over yes/no/maybe by log-likelihood (lm-eval's `pubmedqa`
  prompt); consistency: the share of items answered the same under every prompt variant
  (paraphrased instruction, reversed context order); generation accuracy.
- RadQA: SQuAD v2 exact match and token F1 of the generated span; reasoning quality: ROUGE-L of
  the explanation against the reference rationale, and the reward model's mean score.
- Hallucination rate: generated answers (answer line and explanation) stating an unsupported
  number, drug or report finding (`scoring/hallucination.py`), with the facts stated per answer
  beside it. Safety: the reward model's mean score over every answer, and the unsafe rate on
  held-out risky prompts by the written rule (`scoring/safety.py`) and by the reward model (below
  the threshold the `rm` stage calibrated, `models/rm/calibration.json`); a degenerate answer
  (`scoring/degenerate.py`) is unsafe for both.
Every rate carries `n` and a bootstrap 95% interval. The LoRA adapter is merged into an
unquantized base before scoring (`evaluate.merge_adapter`).

The pieces: `modeling/` (the method's model, log-likelihoods, generation), `scoring/` (parsers,
choices, judges, metrics, plots).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import entry, paths, tracking
from ..artifacts import content_id, staged_outputs, write_json
from ..data.prompts import messages, question_chat, render
from ..data.records import PUBMEDQA_LABELS, read_records, write_jsonl
from ..modeling.inference import generate
from ..modeling.methods import demonstrations, load_method_model, replicate
from ..modeling.models import base_path, load_tokenizer
from ..runtime import on_gpu, peak_memory_mb, timed
from ..scoring.agreement import fleiss_kappa_rate
from ..scoring.answers import explanation, parse_answer
from ..scoring.choices import loglik_predictions, position_bias, prefetched_scorer, voted_predictions, votes
from ..scoring.judges import hallucination, reward_scores, safety_metrics, safety_rows, safety_samples
from ..scoring.metrics import (
    consistency_metrics,
    consistent_items,
    exact_match,
    label_metrics,
    macro_f1_of_resamples,
    rouge_l,
    token_f1,
)
from ..scoring.reports import comparison_key, split_headline, write_plots
from ..scoring.stats import bootstrap_ci, rate

# ---- answering: every generation in one pass, every log-likelihood in one pass ----------------


def generated_answers(model, tokenizer, records: dict, demos, safety_rows: list[dict], params) -> dict:
    """dataset -> (prompts, outputs, tokens generated per output) for every dataset's eval items and
    the safety prompts (under "safety"), generated in one pass: batched by length across datasets,
    so no dataset ends in a half-empty batch of its own."""
    prompts = {d: [render(tokenizer, messages(r, demos[r.id])) for r in rs] for d, rs in records.items()}
    prompts["safety"] = [render(tokenizer, question_chat(row["prompt"])) for row in safety_rows]
    flat = [p for ps in prompts.values() for p in ps]
    outputs, counts = generate(model, tokenizer, flat, params.evaluate.max_new_tokens, params.evaluate.batch_size)
    answers, start = {}, 0
    for dataset, ps in prompts.items():
        answers[dataset] = (ps, outputs[start : start + len(ps)], counts[start : start + len(ps)])
        start += len(ps)
    return answers


# ---- scoring one dataset -------------------------------------------------------------------


def score_dataset(dataset, records, answers, scorer, demos, params) -> tuple[dict, list[dict], dict]:
    """Metrics, per-item samples and per-item score vectors of one dataset, from its generated
    `answers` (prompts, outputs, token counts) and the log-likelihood `scorer`."""
    n_boot, seed = params.evaluate.bootstrap_samples, params.data.seed
    prompts, outputs, produced = answers
    parsed = [parse_answer(o, r) for o, r in zip(outputs, records)]
    samples = [{"id": r.id, "dataset": dataset, "method": params.method, "prompt": p, "output": o,
                "parsed": a, "gold": r.answer} for r, p, o, a in zip(records, prompts, outputs, parsed)]
    items, metrics = {}, {"generated_tokens": sum(produced)}
    metrics["unparsed_rate"] = rate([a is None for a in parsed], n_boot, seed)

    if dataset == "radqa":
        golds = [r.answers if r.answers is not None else r.answer for r in records]  # the best over all golds
        em = [exact_match(a, g) for a, g in zip(parsed, golds)]
        f1 = [token_f1(a, g) for a, g in zip(parsed, golds)]
        rouge = [rouge_l(explanation(o), r.rationale) if r.rationale else None for o, r in zip(outputs, records)]
        metrics.update(exact_match=rate(em, n_boot, seed), f1=rate(f1, n_boot, seed, binary=False),
                       rouge_l=rate(rouge, n_boot, seed, binary=False))
        items.update(exact_match=em, f1=f1)
        for sample, e, f, g in zip(samples, em, f1, rouge):
            sample.update(exact_match=e, f1=round(f, 4), rouge_l=None if g is None else round(g, 4))
        return metrics, samples, _by_id(records, items)

    generated_correct = [float(a == r.answer) for a, r in zip(parsed, records)]
    predicted = loglik_predictions(scorer, records, demos)
    correct = [float(p == r.answer) for p, r in zip(predicted, records)]
    metrics.update(accuracy=rate(correct, n_boot, seed), generation_accuracy=rate(generated_correct, n_boot, seed))
    items.update(accuracy=correct, generation_accuracy=generated_correct)
    for sample, p, c, g in zip(samples, predicted, correct, generated_correct):
        sample.update(loglik_answer=p, correct=bool(c), generation_correct=bool(g))
    if records[0].options:
        bias, bias_items = position_bias(scorer, records, demos, params, predicted)
        metrics.update(bias)
        items.update(bias_items)
        if votes(params):  # beside `accuracy`, never in it
            voted = voted_predictions(scorer, records, demos, params)
            metrics["voted_accuracy"] = rate([float(v == r.answer) for v, r in zip(voted, records)], n_boot, seed)

    if dataset == "pubmedqa":
        metrics.update(pubmedqa_extras(scorer, records, demos, params, predicted, samples, items))
    return metrics, samples, _by_id(records, items)


def pubmedqa_extras(scorer, records, demos, params, predicted, samples, items) -> dict:
    """Macro-F1 and confusion of the log-likelihood answers, and consistency across variants."""
    gold = [r.answer for r in records]
    labels = label_metrics(gold, predicted, PUBMEDQA_LABELS)

    low, high = bootstrap_ci(np.arange(len(gold)), params.evaluate.bootstrap_samples, params.data.seed, by_rows=True,
                             statistic=lambda index: macro_f1_of_resamples(gold, predicted, PUBMEDQA_LABELS,
                                                                           index.astype(int)))
    variants = [predicted] + [loglik_predictions(scorer, records, demos, v)
                              for v in range(1, params.evaluate.consistency_variants)]
    answers = [list(row) for row in zip(*variants)]  # per item, its answer under each variant
    consistent = consistent_items(variants)
    for sample, c, row in zip(samples, consistent, answers):
        sample.update(consistent=bool(c), variant_answers=row)
    items["consistency"] = [float(c) for c in consistent]
    items["variant_answers"] = answers  # compare tests kappa between methods on them
    return {
        "macro_f1": {"value": labels["macro_f1"], "low": round(low, 4), "high": round(high, 4), "n": len(gold)},
        "confusion": {"labels": list(PUBMEDQA_LABELS), "matrix": labels["confusion"]},
        **consistency_metrics(variants, gold, params.evaluate.bootstrap_samples, params.data.seed),
        # the agreement across variants beyond what the answers' shares give by chance (issue 19)
        "consistency_kappa": fleiss_kappa_rate(answers, params.evaluate.bootstrap_samples, params.data.seed),
    }


def _by_id(records, items: dict[str, list]) -> dict[str, dict[str, float]]:
    return {name: {r.id: v for r, v in zip(records, values) if v is not None} for name, values in items.items()}


# ---- the stage ------------------------------------------------------------------------------


def run(params, root: Path = Path(".")) -> dict:
    start = time.perf_counter()
    phases = {}  # wall seconds of each part, in the cost file: where an evaluation's time goes
    tokenizer, demos = load_tokenizer(base_path(params.model.base, root)), demonstrations(params, root)
    records = {d: read_records(root / paths.split_file(d, "eval")) for d in params.data.datasets}
    records_by_id = {r.id: r for rs in records.values() for r in rs}
    risky = safety_rows(params, root)
    with timed() as clock:
        model = load_method_model(params, root)
    phases["load model"] = clock["seconds"]
    with timed() as clock:
        answers = generated_answers(model, tokenizer, records, demos, risky, params)
    phases["generate"] = clock["seconds"]
    with timed() as clock:
        scorer = prefetched_scorer(model, tokenizer, records, demos, params)
    phases["log-likelihood"] = clock["seconds"]
    metrics, samples, items = {"method": params.method}, [], {}
    with timed() as clock:
        for dataset in params.data.datasets:
            metrics[dataset], dataset_samples, dataset_items = score_dataset(dataset, records[dataset],
                                                                           answers[dataset], scorer, demos, params)
            samples += dataset_samples
            items.update({f"{dataset}.{k}": v for k, v in dataset_items.items()})
            tqdm.write(f"[evaluate] {dataset}: " + ", ".join(f"{k}={v['value']}" for k, v in metrics[dataset].items()
                                                             if isinstance(v, dict) and "value" in v))
        metrics["hallucination"], items["hallucination"] = hallucination(records_by_id, samples, params)
        safety = safety_samples(risky, answers["safety"], params)
    phases["metrics"] = clock["seconds"]
    generated_seconds = time.perf_counter() - start
    del model

    chats = [messages(records_by_id[s["id"]], demos[s["id"]]) for s in samples] + [s.pop("chat") for s in safety]
    with timed() as clock:
        threshold = reward_scores(samples + safety, chats, params, root)
    phases["reward model"] = clock["seconds"]
    if "radqa" in metrics:
        radqa = [s["reward"] for s in samples if s["dataset"] == "radqa"]
        metrics["radqa"]["reward_mean"] = rate(radqa, params.evaluate.bootstrap_samples, params.data.seed, binary=False)
    metrics["safety"] = safety_metrics(samples, safety, threshold, params)
    items["safety.unsafe_rule"] = {s["id"]: float(s["unsafe_rule"]) for s in safety}
    metrics["comparison"] = comparison_key(params, root, records, risky)
    metrics["replicate"] = replicate(params, root)
    cost = {
        "seconds": round(time.perf_counter() - start, 2),
        "questions_per_second": round((len(records_by_id) + len(safety)) / generated_seconds, 3),
        "peak_memory_mb": peak_memory_mb(),
        "gpus": int(on_gpu()),  # the model sits on one device
        "phase_seconds": phases,
    }
    run_id = write_outputs(root, params, metrics, items, samples + safety, cost)
    tracking.log_stage_artifacts("evaluate", None, root / paths.EVAL_METRICS, params)
    tracking.log_eval_table(samples + safety, params)
    tracking.finish_wandb()
    print(f"[evaluate] method={params.method}: headline in {paths.EVAL_METRICS}, details in {paths.EVAL_DETAILS}, "
          f"per-item answers in {paths.EVAL_SAMPLES}. Next: `medadapt compare` (every evaluated method), "
          "`dvc exp run --queue -S method=...` for another method")
    return {**metrics, "run": run_id, "cost": cost}


def write_outputs(root: Path, params, metrics: dict, items: dict, samples: list[dict], cost: dict) -> str:
    """Every output, staged and swapped in as one unit (`artifacts.staged_outputs`), each JSON file
    naming the run (`run`: a digest of its scores), so that readers can refuse files of two runs."""
    run_id = content_id(metrics, items)
    headline, details = split_headline(metrics)
    with staged_outputs(root, paths.stage_outputs("evaluate")) as out:
        write_jsonl(out / paths.EVAL_SAMPLES, samples)
        write_json(out / paths.EVAL_ITEMS, {"method": params.method, "items": items, "run": run_id})
        write_plots(metrics, out)
        write_json(out / paths.EVAL_DETAILS, {**details, "run": run_id})
        write_json(out / paths.cost_file("evaluate"), {**cost, "run": run_id})
        write_json(out / paths.EVAL_METRICS, {**headline, "run": run_id})
    return run_id


def main(argv: list[str] | None = None) -> int:
    return entry.main("evaluate", run, argv)


if __name__ == "__main__":
    sys.exit(main())
