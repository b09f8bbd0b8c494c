"""`medadapt params [--write]`: params.yaml as the typed params write it, each key with its description.

    medadapt params                       # print params.yaml's values, every key described
    medadapt params --set train.epochs=2  # the same, with an override
    medadapt params --write               # rewrite params.yaml so (values kept, comments regenerated)

The descriptions live in `src/medadapt/params.py` only; this is how params.yaml gets its comments.
"""

from __future__ import annotations

from pathlib import Path

from ..params import render

PARAMS_FILE = Path("params.yaml")


def main(params, root: Path = Path("."), write: bool = False) -> str:
    text = render(params)
    if write:
        (Path(root) / PARAMS_FILE).write_text(text)
        print(f"{PARAMS_FILE}: rewritten from src/medadapt/params.py")
    else:
        print(text, end="")
    return text
