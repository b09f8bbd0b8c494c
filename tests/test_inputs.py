"""inputs.py: what params name outside params.yaml is there (folders, each dataset's eval files,
the base model), checked by `check` in a fraction of a second, and a hub id told "no network"
from "no such model" in seconds. The hub answers through a local server (`HF_ENDPOINT`)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medadapt import cli
from medadapt.inputs import problems
from medadapt.params import ParamsError, load_params

from conftest import REPO

NARROWED = "data.datasets=[pubmedqa,medmcqa,medqa]"


def found(*overrides: str, root: Path) -> dict[str, str]:
    return problems(load_params(root / "params.yaml", list(overrides)), root)


def test_the_default_project_has_everything(project):
    assert found(root=project) == {}


def test_a_missing_source_folder_is_named_with_where_it_was_looked_for(project):
    message = found("data.source=../shared/dta", root=project)["data.source"]
    assert message.startswith(f"no folder ../shared/dta (relative to {project.resolve()})")


def test_a_dataset_the_source_lacks_is_a_choice_with_the_line_to_paste(project):
    """A folder without RadQA (as ../shared/data): the error names it and the -S that leaves it
    out, and that -S passes."""
    folder = project / "real"
    shutil.copytree(project / "data/sample", folder, ignore=shutil.ignore_patterns("radqa"))
    message = found(f"data.source={folder}", root=project)["data.datasets"]
    assert "has no radqa (no file matches data.files.radqa.eval 'radqa/*test*.json')" in message
    assert f"leave it out: -S '{NARROWED}'" in message
    assert found(f"data.source={folder}", NARROWED, root=project) == {}


def test_a_train_glob_may_match_nothing_but_an_eval_glob_must(project):
    assert found("data.files.medqa.train=medqa/none*.jsonl", root=project) == {}  # train from eval's rest
    message = found("data.files.medqa.eval=medqa/*tset*.jsonl", root=project)["data.datasets"]
    assert "has no medqa (no file matches data.files.medqa.eval 'medqa/*tset*.jsonl')" in message


def test_missing_eval_ids_and_preference_files(project):
    assert found("data.files.pubmedqa.eval_ids=pubmedqa/gone.json", root=project) == {
        "data.files.pubmedqa.eval_ids": "no file pubmedqa/gone.json in sample"}
    missing = found("data.preferences.sources=[file]", "data.preferences.file=pairs.jsonl", root=project)
    assert missing == {"data.preferences.file": "no file pairs.jsonl"}


@pytest.mark.parametrize("base", ["./models/llama", "../llama-3.1-8b", "bad id", "a/b/c"])
def test_a_base_that_is_no_folder_and_no_hub_id(project, base):
    assert found(f"model.base={base}", root=project)["model.base"] == (
        f"no folder {base}, and not a hub id (namespace/name)")


def test_a_local_base_folder_passes(project):
    (project / "my-model").mkdir()
    assert found("model.base=my-model", root=project) == {}


def test_the_data_section_example_checks_on_the_real_samples(project, shared_data):
    """docs/data.md: `data.source=../shared/data` needs RadQA left out, and says so."""
    assert "leave it out: -S 'data.datasets=[pubmedqa,medmcqa,medqa]'" in \
        found(f"data.source={shared_data}", root=project)["data.datasets"]
    assert found(f"data.source={shared_data}", NARROWED, root=project) == {}


# ---- check: one line per param, blamed where the value came from ------------------------------


def test_check_stops_on_a_missing_source_and_writes_nothing(project, capsys):
    assert cli.main(["check", "--set", "data.source=../shared/dta"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medadapt check: error: --set: inputs not found\n  data.source: no folder ../shared/dta")
    assert "from --set data.source=../shared/dta" in err and "Traceback" not in err
    assert not (project / ".params-checked").exists()


def test_a_bad_source_in_the_file_gets_the_undo(project, capsys):
    text = (project / "params.yaml").read_text().replace("source: sample", "source: ../shared/dta")
    (project / "params.yaml").write_text(text)
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medadapt check: error: params.yaml: inputs not found") and "git checkout params.yaml" in err


# ---- hub ids: "no network" apart from "no such model", in seconds ------------------------------


class Hub(http.server.BaseHTTPRequestHandler):
    """The hub's answers as huggingface_hub reads them: 404 + RepoNotFound, 403 + GatedRepo, 200."""

    def do_GET(self):
        error = "RepoNotFound" if "/nosuch/" in self.path else "GatedRepo" if "/gated/" in self.path else None
        self.send_response({"RepoNotFound": 404, "GatedRepo": 403}.get(error, 200))
        if error:
            self.send_header("X-Error-Code", error)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"error": error} if error else {"id": "org/model", "sha": "0" * 40}).encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def check(project: Path, base: str, **env: str) -> tuple[str, float]:
    """`medadapt check --set model.base=...` in a fresh process (huggingface_hub reads its settings
    at import), with an empty hub cache; its stderr and seconds."""
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    environment.update(PYTHONPATH=str(REPO / "src"), HF_HOME=str(project / "hf-home"), **env)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "medadapt.cli", "check", "--set", f"model.base={base}"],
                          cwd=project, env=environment, capture_output=True, text=True)
    return done.stderr if done.returncode else done.stdout, time.monotonic() - start


def test_offline_a_hub_id_outside_the_cache_is_no_network(project):
    err, seconds = check(project, "meta-llama/Llama-3.1-8B-Instruct", HF_HUB_OFFLINE="1")
    assert "model.base: meta-llama/Llama-3.1-8B-Instruct is not in the local cache" in err and "no network" in err
    assert seconds < 10


def test_an_unreachable_hub_is_no_network_in_seconds(project):
    err, seconds = check(project, "org/model", HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens there
    assert "model.base: cannot reach the hub to look up org/model: no network" in err
    assert seconds < 10


def test_the_hub_tells_no_such_model_and_gated_apart(project, hub):
    err, _ = check(project, "nosuch/model", HF_ENDPOINT=hub)
    assert "model.base: no such model on the hub: nosuch/model" in err and "no network" not in err
    err, _ = check(project, "gated/model", HF_ENDPOINT=hub)
    assert "model.base: gated/model is gated: accept its licence" in err
    out, _ = check(project, "org/model", HF_ENDPOINT=hub)
    assert out == "params.yaml: OK\n"


def test_a_model_in_the_local_cache_needs_no_network(project):
    snapshot = project / "hf-home/hub/models--org--cached/snapshots" / ("1" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs/main").write_text("1" * 40)
    out, _ = check(project, "org/cached", HF_HUB_OFFLINE="1")
    assert out == "params.yaml: OK\n"


def test_problems_raise_one_params_error(project):
    from medadapt.inputs import check_inputs

    with pytest.raises(ParamsError) as info:
        check_inputs(load_params(project / "params.yaml", ["data.source=nowhere"]), project,
                     overrides=["data.source=nowhere"])
    assert info.value.in_file is False
