"""Our log-likelihood scores equal lm-evaluation-harness's, per item, on real data samples.

A tiny Llama is saved as a model folder; lm-eval's HFLM and `medadapt.inference` score the
same (context, continuation) requests built by `prompts.loglik_request` (whose texts equal
lm-eval's `doc_to_text`, checked here too) on items of ../shared/data.
"""

from __future__ import annotations

import pytest

lm_eval = pytest.importorskip("lm_eval")

from medadapt.data.loaders import load_files  # noqa: E402
from medadapt.data.prompts import loglik_request  # noqa: E402
from medadapt.modeling.inference import loglikelihoods  # noqa: E402
from medadapt.modeling.models import build_tiny_llama, load_base_model, load_tokenizer  # noqa: E402
from medadapt.params import ModelParams  # noqa: E402

N_ITEMS = 24
FILES = {"medmcqa": "medmcqa/*.jsonl", "medqa": "medqa/*.jsonl", "pubmedqa": "pubmedqa/ori_pqal.json"}


@pytest.fixture(scope="module")
def items(request):
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return {name: load_files(name, SHARED_DATA, pattern)[:N_ITEMS] for name, pattern in FILES.items()}


@pytest.fixture(scope="module")
def model_folder(items, tmp_path_factory):
    texts = [r.question + " " + " ".join(r.options or []) + (r.context or "") for rs in items.values() for r in rs]
    model, tokenizer = build_tiny_llama(texts, seed=3)
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_prompts_are_lm_eval_doc_to_text(shared_data, items):
    import json

    from lm_eval.tasks.medmcqa.utils_medmcqa import doc_to_text as medmcqa_text
    from lm_eval.tasks.pubmedqa.preprocess_pubmedqa import doc_to_text as pubmedqa_text

    first = json.loads((shared_data / "medmcqa/medmcqa_dev_first1000.jsonl").read_text().splitlines()[0])
    assert loglik_request(items["medmcqa"][0]).context == medmcqa_text(first)
    pmid, doc = next(iter(json.loads((shared_data / "pubmedqa/ori_pqal.json").read_text()).items()))
    assert loglik_request(items["pubmedqa"][0]).context == pubmedqa_text(doc)


@pytest.mark.slow
def test_loglikelihoods_equal_lm_eval_per_item(items, model_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside any prepared project: a folder base loads as it is
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    harness = HFLM(pretrained=str(model_folder), device="cpu", batch_size=8, dtype="float32")
    model = load_base_model(ModelParams(base=str(model_folder), dtype="float32"))
    tokenizer = load_tokenizer(str(model_folder))
    for dataset, records in items.items():
        requests = [loglik_request(r) for r in records]
        ours = loglikelihoods(model, tokenizer, requests, batch_size=8)
        instances = [Instance(request_type="loglikelihood", doc={}, arguments=(q.context, c), idx=i)
                     for q in requests for i, c in enumerate(q.choices)]
        theirs = [score for score, _ in harness.loglikelihood(instances, disable_tqdm=True)]
        width = len(requests[0].choices)
        for k, (mine, request) in enumerate(zip(ours, requests)):
            reference = theirs[k * width : (k + 1) * width]
            assert mine == pytest.approx(reference, abs=2e-3), f"{dataset} item {k}"
            assert max(range(width), key=mine.__getitem__) == max(range(width), key=reference.__getitem__)
