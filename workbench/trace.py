"""`workbench trace RECORD_ID --run RUN`: one record's whole life in a run folder.

Every stage writes the records it kept (`records.jsonl`), dropped (`dropped.jsonl`) or could not decide
(`disputed.jsonl`), each carrying its lineage; the last stage that holds the record has the whole story. Each stage's
ledger (`ledger.jsonl`, the same events `runs show` counts) gives its verdicts with their reasons. Around it: the
record it was made from (instances name their parent), its dedup cluster, the adapters trained on a file that holds
it, and the eval items it was found to contaminate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.core.io import Problem, read_json_lines
from workbench.core.runs import stage_summaries

RECORD_FILES = ("records.jsonl", "dropped.jsonl", "disputed.jsonl")


def _rows(path: Path) -> list[dict[str, Any]]:
    problems: list[Problem] = []
    return [obj for _, obj, _ in read_json_lines(path, problems)] if path.exists() else []


def find(run_dir: Path, record_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The full id for a prefix, and every place the record is (stage order): stage, file, the record."""
    stages = stage_summaries(run_dir)
    matches: set[str] = set()
    places = []
    for stage in stages:
        for name in RECORD_FILES:
            for row in _rows(Path(stage["path"]) / name):
                if str(row.get("id", "")).startswith(record_id):
                    matches.add(row["id"])
                    places.append({"stage": stage["stage"], "file": str(Path(stage["path"]) / name), "record": row})
    if not matches:
        raise InputError(f"{run_dir}: no record with id {record_id!r} in any stage's records, dropped or disputed")
    if len(matches) > 1:
        raise InputError(f"{record_id!r} is ambiguous: {', '.join(sorted(matches)[:5])}", hint="give more of the id")
    return matches.pop(), places


def trace(run_dir: str | Path, record_id: str) -> dict[str, Any]:
    run_dir = Path(run_dir)
    full_id, places = find(run_dir, record_id)
    last = places[-1]
    record = last["record"]
    dropped = Path(last["file"]).name != "records.jsonl"
    parent_id = next((e["detail"].get("parent") for e in record.get("lineage", [])
                      if isinstance(e.get("detail"), dict) and e["detail"].get("parent")), None)
    parent = None
    if parent_id:
        _, parent_places = find(run_dir, parent_id)
        parent = {"id": parent_id, "instruction": parent_places[-1]["record"]["instruction"],
                  "stage": parent_places[0]["stage"]}
    stages = stage_summaries(run_dir)
    cluster = next((row for stage in stages for row in _rows(Path(stage["path"]) / "clusters.jsonl")
                    if full_id in json.dumps(row)), None)
    verdicts = [event for stage in stages for event in _rows(Path(stage["path"]) / "ledger.jsonl")
                if event.get("record_id") == full_id]
    adapters, contaminated = [], []
    for manifest_path in run_dir.rglob("manifest.json"):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # an unreadable manifest is no evidence of training (`runs show` names it)
        data = manifest.get("data")
        if (manifest_path.parent / "adapter_config.json").exists() and data and Path(data).exists() and \
                any(r.get("id") == full_id for r in _rows(Path(data))):
            too_long = any(d.get("id") == full_id for d in manifest.get("dropped_too_long", []))
            adapters.append({"adapter": str(manifest_path.parent), "data": data, "base": manifest["base_model"],
                             "used": "dropped: longer than max_length" if too_long else "in the training file"})
        findings = (manifest.get("contamination") or {}).get("contaminated", [])
        for f in findings:
            if full_id in f.get("near_duplicates", {}) or full_id in f.get("shared_ngrams", {}):
                contaminated.append({"suite": manifest.get("suite"), "item": f["item"], "question": f["question"]})
    return {"id": full_id, "run": str(run_dir), "status": (f"{Path(last['file']).stem} at {last['stage']}" if dropped
                                                          else f"kept through {last['stage']}"),
            "record": record, "places": [{"stage": p["stage"], "file": p["file"]} for p in places],
            "parent": parent, "dedup_cluster": cluster, "verdicts": verdicts, "adapters": adapters,
            "contaminated": contaminated}


def trace_lines(t: dict) -> list[str]:
    """A record's life as text: what it is, each lineage event, its cluster, adapters and contamination."""
    r = t["record"]
    lines = [f"Record {t['id']}: {t['status']} ({t['run']})",
             f"  instruction: {r['instruction'][:200]}", f"  context: {(r.get('context') or '–')[:120]}",
             f"  response: {(r.get('response') or '–')[:200]}", f"  category: {r.get('category')}, "
             f"source: {r.get('source')}", "Timeline:"]
    for e in r.get("lineage", []):
        detail = e.get("detail") or {}
        if isinstance(detail, dict):
            detail = {k: v for k, v in detail.items() if k != "params"}  # sampling settings: in the manifest
        shown = json.dumps(detail, ensure_ascii=False) if detail else ""
        lines.append(f"  {e['stage']:<12} {e['action']:<7} {e.get('reason') or ''} {shown[:220]}".rstrip())
    if r.get("scores"):
        lines.append("Scores: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in r["scores"].items()))
    if t["parent"]:
        lines.append(f"Made from {t['parent']['id']} ({t['parent']['stage']}): {t['parent']['instruction'][:120]}")
    if t["dedup_cluster"]:
        lines.append(f"Dedup cluster: {json.dumps(t['dedup_cluster'], ensure_ascii=False)[:300]}")
    lines += [f"Ledger: {v['stage']} {v['action']}: {v['reason']}" for v in t["verdicts"]]
    lines.append("Found in: " + ", ".join(p["file"] for p in t["places"]))
    lines += [f"Trained into: {a['adapter']} ({a['used']}; base {a['base']})" for a in t["adapters"]] or \
        ["Trained into: no adapter in this run"]
    lines += [f"Contaminates: {c['suite']} item {c['item']} ({c['question'][:80]})" for c in t["contaminated"]] or \
        ["Contaminates: no eval item (of the suites checked in this run)"]
    return lines
