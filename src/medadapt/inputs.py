"""What the params name outside params.yaml, checked by `check` before DVC removes any output.

Pydantic checks each value's type and range; this checks that what a value names is there: the
`data.source` folder, a file of each dataset's official eval split (`data.files.<dataset>.eval`;
a train glob may match nothing, train then comes from the eval split's rest), its `eval_ids`
file, `data.preferences.file`, and `model.base` as a folder or a hub id. A hub id must have a
hub id's form, and exist: in the local cache, or on the hub, asked with a short timeout, so that
"no network" and "no such model" are told apart in seconds. With `HF_HUB_OFFLINE=1` the hub is
not asked. No torch, no model code: `check` runs before every pipeline run.
"""

from __future__ import annotations

import os
from pathlib import Path

from .params import DATASETS, Params, ParamsError, set_by
from .paths import SAMPLE

HUB_TIMEOUT = 10  # seconds for one question to the hub
PATH_PREFIXES = (".", "/", "~")  # a value starting so is meant as a folder, never a hub id


def problems(params: Params, root: Path = Path(".")) -> dict[str, str]:
    """param -> what is wrong with what it names ({} when everything is there)."""
    found = data_problems(params, root)
    if "data.source" not in found:
        found.update(dataset_problems(params, root))
    base = base_problem(params.model.base, root)
    if base:
        found["model.base"] = base
    return found


def check_inputs(params: Params, root: Path = Path("."), source: str = "params.yaml",
                 overrides: list[str] = ()) -> None:
    """Raise ParamsError with one line per param whose inputs are missing."""
    found = problems(params, root)
    if not found:
        return
    given = {key: set_by(key, overrides) for key in found}
    lines = [f"  {key}: {text}" + (f", from --set {given[key]}" if given[key] else "") for key, text in found.items()]
    in_file = not all(given.values())
    raise ParamsError("\n".join([f"{source if in_file else '--set'}: inputs not found", *lines]), in_file=in_file)


# ---- data ---------------------------------------------------------------------------------------


def source_folder(params: Params, root: Path) -> Path | None:
    """The folder the data globs apply to; None for the hub."""
    source = params.data.source
    return None if source == "hub" else root / SAMPLE if source == "sample" else root / source


def data_problems(params: Params, root: Path) -> dict[str, str]:
    """The source folder (or the hub's reachability) and the preference file."""
    data, found = params.data, {}
    folder = source_folder(params, root)
    if data.source == "hub" and os.environ.get("HF_HUB_OFFLINE") == "1":
        found["data.source"] = ("hub needs the network, and HF_HUB_OFFLINE=1 is set; valid: sample, or a folder of "
                                "files in the original formats")
    elif folder is not None and not folder.is_dir():
        found["data.source"] = (f"no folder {data.source} (relative to {Path(root).resolve()}); valid: sample, hub, or a "
                                "folder path")
    preferences = data.preferences
    if "file" in preferences.sources and not (root / preferences.file).is_file():
        found["data.preferences.file"] = f"no file {preferences.file}"
    return found


def dataset_problems(params: Params, root: Path) -> dict[str, str]:
    """Each dataset of data.datasets needs its eval split in the source: else one line that names
    the datasets the source lacks and the `-S` that leaves them out (a choice, not a surprise)."""
    data, folder = params.data, source_folder(params, root)
    missing, found = {}, {}
    for dataset in data.datasets:
        if folder is None:
            if dataset not in data.hub:
                missing[dataset] = f"no data.hub.{dataset}"
            elif problem := hub_problem(data.hub[dataset].path, "dataset"):
                found[f"data.hub.{dataset}.path"] = problem
            continue
        spec = getattr(data.files, dataset)
        if not any(path.is_file() for path in folder.glob(spec.eval)):
            missing[dataset] = f"no file matches data.files.{dataset}.eval {spec.eval!r}"
        elif spec.eval_ids and not spec.eval_ids.startswith("builtin:") and not (folder / spec.eval_ids).is_file():
            found[f"data.files.{dataset}.eval_ids"] = f"no file {spec.eval_ids} in {data.source}"
    if missing:
        kept = [d for d in data.datasets if d not in missing]
        leave_out = f"-S 'data.datasets=[{','.join(kept)}]'" if kept else f"a source that holds one of {', '.join(DATASETS)}"
        found["data.datasets"] = (f"{data.source} has no {', '.join(missing)} ({'; '.join(missing.values())}); "
                                  f"leave {'it' if len(missing) == 1 else 'them'} out: {leave_out}, or fix "
                                  "data.files")
    return found


# ---- the base model -----------------------------------------------------------------------------


def base_problem(base: str, root: Path) -> str | None:
    """What is wrong with `model.base` (None: a built-in, a folder, or a hub model that exists)."""
    if base.startswith("builtin:") or (root / base).is_dir():
        return None  # built-in names are validated with the params
    if base.startswith(PATH_PREFIXES) or not hub_id_form(base):
        return f"no folder {base}, and not a hub id (namespace/name)"
    return hub_problem(base)


def hub_id_form(text: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def hub_problem(repo_id: str, repo_type: str = "model") -> str | None:
    """None when the local cache or the hub has the repository; else why not: no network, no such
    repository, or gated."""
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(repo_id, "config.json", repo_type=repo_type), str):
        return None  # loads offline
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return f"{repo_id} is not in the local cache and HF_HUB_OFFLINE=1 forbids the network: no network"
    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=HUB_TIMEOUT)
    except GatedRepoError:
        return (f"{repo_id} is gated: accept its licence on https://huggingface.co/{repo_id}, then export "
                "HF_TOKEN (README, \"Access to the gated models\")")
    except RepositoryNotFoundError:
        return f"no such {repo_type} on the hub: {repo_id} (or it is private: export HF_TOKEN)"
    except HfHubHTTPError as error:
        return f"the hub could not answer for {repo_id}: {error}".splitlines()[0]
    except Exception as error:  # the transport's own errors (DNS, refused, timeout): no answer at all
        return f"cannot reach the hub to look up {repo_id}: no network ({type(error).__name__}: {error})"
    return None
