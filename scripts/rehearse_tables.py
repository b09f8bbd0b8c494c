"""The README's GPU tables, written from the committed rehearse and levers reports.

    python3 scripts/rehearse_tables.py reports/rehearse/llama-3.1-8b-NVIDIA-H200-bf16.json [...-4bit.json] \
        [--levers reports/rehearse/levers/levers.json]

Prints Markdown: per stage of each rehearse report its seconds, throughput, compile seconds and peak
memory beside the plain step of its own rows (PEFT's defaults, and the stage's own levers) with
the ratios; the experiment's end-to-end seconds; each goal with its measure; and, from a levers
report, the plain-step variants and the stage variants. Nothing is computed that the reports do
not hold: a figure they lack is left empty.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cell(value, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def throughput(row: dict) -> str:
    if "tokens_per_second_after_compile" in row:
        return f"{cell(row['tokens_per_second_after_compile'], 0)} tokens/s"
    if "pairs_per_second_after_compile" in row:
        return f"{cell(row['pairs_per_second_after_compile'], 2)} pairs/s"
    if "questions_per_second" in row:
        return f"{cell(row['questions_per_second'], 2)} questions/s"
    return ""


def plain_figure(report: dict, stage: str, default: bool) -> str:
    rows = [p for p in report.get("plain_loop", []) if p.get("stage") == stage and "error" not in p]
    rows = [p for p in rows if (p["levers"] == {"autocast_adapter_dtype": True, "compile_layers": "eager",
                                                "liger": False}) == default]
    if not rows:
        return ""
    p = rows[0]
    return (f"{cell(p['pairs_per_second'], 2)} pairs/s" if p.get("pairs_per_second") is not None
            else f"{cell(p['tokens_per_second'], 0)} tokens/s")


def rehearse_table(report: dict) -> str:
    lines = [f"**{report['preset']}, {report['device']}, {report['dtype']}, quantization {report['quantization']}**"
             f" (methods evaluated: {', '.join(report.get('methods', []))})", "",
             "| stage | seconds | throughput | compile s | peak GB | plain step, PEFT default | ratio "
             "| plain step, same levers | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for row in report["stages"]:
        if "error" in row:
            lines.append(f"| {row['stage']} | {cell(row['seconds'])} | failed: {row['error'].splitlines()[-1][:80]} "
                         "| | | | | | |")
            continue
        peak = row.get("peak_memory_mb")
        lines.append(f"| {row['stage']} | {cell(row['seconds'])} | {throughput(row)} | {cell(row.get('compile_seconds'))} "
                     f"| {cell(peak / 1024 if peak else None)} | {plain_figure(report, row['stage'], True)} "
                     f"| {cell(row.get('vs_peft_default'), 2)} | {plain_figure(report, row['stage'], False)} "
                     f"| {cell(row.get('vs_same_levers'), 2)} |")
    lines.append(f"| **the experiment, end to end** | **{cell(report.get('experiment_seconds'))}** | | | | | | | |")
    lines += ["", "| goal | measured | bound | met |", "|---|---|---|---|"]
    for name, goal in report.get("goals", {}).items():
        bound = f"≥ {goal['at_least']}" if "at_least" in goal else f"≤ {goal['at_most']}"
        lines.append(f"| {goal['what']} | {cell(goal['measured'], 2)} | {bound} | "
                     f"{'' if goal['met'] is None else ('yes' if goal['met'] else 'no')} |")
    return "\n".join(lines)


def levers_table(report: dict) -> str:
    lines = ["| plain step (sft_pubmedqa's packed rows; rm, dpo pairs) | throughput | vs PEFT default | first step s "
             "| peak GB |", "|---|---|---|---|---|"]
    default = next((p["tokens_per_second"] for p in report["plain"] if p.get("variant") == "peft-default"
                    and "error" not in p), None)
    for p in report["plain"]:
        if "error" in p:
            lines.append(f"| {p['variant']} | failed: {p['error'].splitlines()[0][:80]} | | | |")
            continue
        sft = p.get("kind") == "sft"
        figure = f"{cell(p['tokens_per_second'], 0)} tokens/s" if sft else f"{cell(p['pairs_per_second'], 2)} pairs/s"
        ratio = cell(p["tokens_per_second"] / default, 2) if sft and default else ""
        lines.append(f"| {p['variant']} | {figure} | {ratio} | {cell(p.get('first_step_seconds'), 2)} "
                     f"| {cell(p['peak_memory_mb'] / 1024)} |")
    lines += ["", "| sft_pubmedqa stage | tokens/s after compiling | compile s | with it | step median s | eval loss "
              "| peak GB |", "|---|---|---|---|---|---|---|"]
    for r in report["stages"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error'].splitlines()[0][:80]} | | | | | |")
            continue
        lines.append(f"| {r['variant']} | {cell(r['tokens_per_second_after_compile'], 0)} | {cell(r['compile_seconds'])} "
                     f"| {cell(r['tokens_per_second'], 0)} | {cell(r.get('step_seconds_median'), 3)} "
                     f"| {r['eval_loss']} | {cell(r['peak_memory_mb'] / 1024)} |")
    for e in report.get("evaluate", []):
        lines.append("")
        lines.append(f"evaluate {e['method']}: " + (e["error"][:120] if "error" in e else
                     f"{e['questions_per_second']} questions/s; phases {e['phase_seconds']}"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rehearsals", nargs="*", type=Path)
    parser.add_argument("--levers", type=Path)
    args = parser.parse_args()
    for path in args.rehearsals:
        print(rehearse_table(json.loads(path.read_text())), end="\n\n")
    if args.levers:
        print(levers_table(json.loads(args.levers.read_text())))


if __name__ == "__main__":
    main()
