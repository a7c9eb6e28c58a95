"""Preference pairs for DPO from what reviewers and judges said: `workbench data export --format dpo`.

    result = run(records_file, PairsConfig(pairs="all"), out)   # out["pairs.jsonl"]: prompt / chosen / rejected

Three sources, each found in the records themselves:
- rankings: candidates pulled from a comparison (`annotate pull` of an `annotate push --compare` dataset) carry
  `meta.ranking`; every better-ranked candidate is chosen over every worse one (`all`), or the best over the worst
  (`best-worst`). Candidates tied in the resolved ranking make no pair.
- corrections: a record a reviewer corrected (its review `edit` kept the original response) gives the corrected
  response chosen over the original.
- judge verdicts (`judge`: a model): candidates of a group nobody ranked are judged pairwise in both orders
  (`eval_suites.judge`); a pair is made only when the judge prefers the same answer in both.

The prompt is built by the finetuning prompt builder (`workbench.core.prompts.build_prompt`: Dolly sections, or a
tokenizer's chat template), so DPO trains on the prompts SFT trained on; chosen and rejected are the bare responses
(trl appends the end-of-sequence token, as SFT does). A pair whose two sides are equal after normalisation, or
that a judge could not decide, is dropped through the ledger with its reason (the dropped file holds each as a
record with the pair in `meta.pair`), and every record that gave no pair is logged; nothing is left out silently.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from workbench.core.backends import BackendConfig
from workbench.core.errors import InputError
from workbench.core.io import Problem, atomic_open, load_records
from workbench.core.prompts import ADVISOR_SYSTEM_PROMPT, build_prompt
from workbench.core.records import Record, normalise, record_id
from workbench.core.runs import Outputs, StepResult, reason_lines

PAIR_COLUMNS = ("prompt", "chosen", "rejected")  # what trl's DPOTrainer reads
JSON_COLUMNS = ("detail", "lineage")  # objects in JSONL, JSON strings in Parquet


class PairsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pairs: Literal["all", "best-worst"] = "all"  # from a ranking: every ordered pair, or the best over the worst
    system_prompt: bool = False  # the course-advisor system prompt in every prompt (as `finetune --system-prompt`)
    tokenizer: str | None = None  # build prompts with this tokenizer's chat template (as finetuning would)
    judge: BackendConfig | None = None  # judge the candidate groups nobody ranked


UNUSED = "no ranking, correction or judge verdict to make a pair of"


def _pair(x: Record, y: Record, source: str, prompt: str, detail: dict[str, Any]) -> dict[str, Any]:
    """x chosen over y."""
    return {"prompt": prompt, "chosen": x.response.strip(), "rejected": y.response.strip(), "source": source,
            "instruction": x.instruction, "context": x.context, "chosen_id": x.id, "rejected_id": y.id,
            "detail": detail, "lineage": {"chosen": x.lineage, "rejected": y.lineage}}


def _groups(records: list[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.meta.get("compare_group"):
            groups[record.meta["compare_group"]].append(record)
    return groups


def ranking_pairs(records: list[Record], mode: str, prompt_of) -> tuple[list[dict], list[dict]]:
    """(pairs, dropped) from candidates with `meta.ranking`."""
    pairs, dropped = [], []
    for key, group in _groups([r for r in records if isinstance(r.meta.get("ranking"), dict)]).items():
        group.sort(key=lambda r: r.meta["ranking"]["position"])
        position = {r.id: r.meta["ranking"]["position"] for r in group}
        if mode == "best-worst":
            best, worst = position[group[0].id], position[group[-1].id]
            candidates = [(x, y) for x in group if position[x.id] == best for y in group
                          if position[y.id] == worst and x is not y]
        else:
            candidates = [(x, y) for i, x in enumerate(group) for y in group[i + 1:]]
        for x, y in candidates:
            ranks_x, ranks_y = x.meta["ranking"].get("ranks") or {}, y.meta["ranking"].get("ranks") or {}
            people = sorted(set(ranks_x) & set(ranks_y))
            detail = {"compare_group": key, "positions": [position[x.id], position[y.id]],
                      "prefer_chosen": sum(ranks_x[u] < ranks_y[u] for u in people),
                      "prefer_rejected": sum(ranks_y[u] < ranks_x[u] for u in people), "annotators": people}
            if position[x.id] == position[y.id]:
                dropped.append({"reason": "tied in the resolved ranking", **_pair(x, y, "ranking", "", detail)})
            else:
                pairs.append(_pair(x, y, "ranking", prompt_of(x), detail))
    return pairs, dropped


def correction_pairs(records: list[Record], prompt_of) -> list[dict]:
    """The corrected response chosen over the original, for every record a reviewer corrected."""
    pairs = []
    for record in records:
        edits = [e for e in record.lineage if e.get("action") == "edit" and isinstance(e.get("detail"), dict)
                 and isinstance((e["detail"].get("original") or {}).get("response"), str)]
        if edits:
            original = Record(record.instruction, record.context, edits[0]["detail"]["original"]["response"],
                              id=f"{record.id}-original", lineage=record.lineage[:record.lineage.index(edits[0])])
            pairs.append(_pair(record, original, "correction", prompt_of(record),
                               {"stage": edits[-1].get("stage"), "reason": edits[-1].get("reason")}))
    return pairs


def judge_pairs(records: list[Record], config: BackendConfig, mode: str, prompt_of,
                api_key: str | None = None) -> tuple[list[dict], list[dict]]:
    """Pairs the judge decides in both orders, over the candidate groups that carry no ranking; `best-worst`: the
    candidate with the most wins over the one with the fewest, when the judge decided that pair."""
    from eval_suites.judge import JUDGE_TEMPLATE_ID, judge_both_orders, preferred

    groups = _groups([r for r in records if "ranking" not in r.meta])
    cases, index = [], []
    for key, group in groups.items():
        for i, x in enumerate(group):
            for y in group[i + 1:]:
                cases.append((x.instruction, x.context, x.response, y.response))
                index.append((key, x, y))
    verdicts, _, _ = judge_both_orders(config, cases, api_key) if cases else ([], None, "")
    decided: dict[str, list[tuple[Record, Record, tuple]]] = defaultdict(list)
    pairs, dropped = [], []
    for (key, x, y), both in zip(index, verdicts):
        detail = {"compare_group": key, "judge": config.model, "template": JUDGE_TEMPLATE_ID,
                  "verdicts": list(both)}
        winner = preferred(*both)
        if winner is None:
            reason = "the judge did not prefer the same answer in both orders"
            dropped.append({"reason": reason, **_pair(x, y, "judge", "", detail)})
            continue
        chosen, rejected = (x, y) if winner == "x" else (y, x)
        decided[key].append((chosen, rejected, detail))
    for wins in decided.values():
        if mode == "best-worst":
            score = Counter()
            for chosen, rejected, _ in wins:
                score[chosen.id] += 1
                score[rejected.id] -= 1
            best, worst = max(score, key=score.get), min(score, key=score.get)
            wins = [w for w in wins if w[0].id == best and w[1].id == worst]
        pairs.extend(_pair(chosen, rejected, "judge", prompt_of(chosen), detail) for chosen, rejected, detail in wins)
    return pairs, dropped


def _plain(text: str) -> str:
    """The form two sides are compared in: Unicode NFC, case folded, whitespace collapsed (a pair that differs only
    there teaches nothing but noise)."""
    return " ".join(normalise(text).casefold().split())


def build_pairs(records: list[Record], config: PairsConfig, api_key: str | None = None
                ) -> tuple[list[dict], list[dict]]:
    """(pairs, dropped) from every source the records hold; pairs equal after normalisation are dropped."""
    tokenizer = None
    if config.tokenizer:
        from workbench.core.models import load_tokenizer

        tokenizer = load_tokenizer(config.tokenizer)  # a bad name or folder is one line, not a traceback
    system = ADVISOR_SYSTEM_PROMPT if config.system_prompt else None

    def prompt_of(record: Record) -> str:
        return build_prompt(record.instruction, record.context, system, tokenizer)

    pairs, dropped = ranking_pairs(records, config.pairs, prompt_of)
    pairs += correction_pairs(records, prompt_of)
    if config.judge is not None:
        judged, not_decided = judge_pairs(records, config.judge, config.pairs, prompt_of, api_key)
        pairs += judged
        dropped += not_decided
    kept = []
    for pair in pairs:
        if _plain(pair["chosen"]) == _plain(pair["rejected"]):
            dropped.append({"reason": "chosen and rejected are equal after normalisation", **pair})
        else:
            kept.append(pair)
    return kept, dropped


def write_rows(path: Path, rows: list[dict]) -> None:
    """JSON lines, or Parquet by the name (its nested columns as JSON strings), atomically."""
    if path.suffix == ".parquet":
        import datasets

        datasets.disable_progress_bars()
        flat = [{k: json.dumps(v, ensure_ascii=False) if k in JSON_COLUMNS else v for k, v in row.items()}
                for row in rows]
        with atomic_open(path, "wb") as f:
            datasets.Dataset.from_list(flat).to_parquet(f)
        return
    with atomic_open(path) as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


@dataclass
class PairsResult(StepResult):
    by_source: Counter = field(default_factory=Counter)

    @property
    def dropped_pairs(self) -> int:
        return self.counts["dropped_pairs"]

    def summary_lines(self) -> list[str]:
        """What the pairs stage did, as a command prints it: the pairs written and where from, why pairs were left
        out, and where they went (the bad input lines are shown apart, on stderr)."""
        sources = ", ".join(f"{n:,} from {source}" for source, n in self.by_source.most_common()) or "none"
        lines = [f"Wrote {self.kept:,} preference pairs to {self.files['pairs.jsonl']} ({sources}) from "
                 f"{self.read:,} records"]
        lines += [f"  {line}" for line in reason_lines(self.reasons)]
        if self.dropped_pairs:
            lines.append(f"  (the pairs left out, and why: {self.files['dropped.jsonl']})")
        return lines


def pair_record(pair: dict[str, Any]) -> Record:
    """A pair as a Record, for the ledger: the chosen side, the rejected one and the whole pair in its meta; its id
    is the two record ids (or the texts')."""
    chosen, rejected = pair.get("chosen_id"), pair.get("rejected_id")
    pair_id = f"{chosen}>{rejected}" if chosen and rejected else record_id(pair["prompt"], pair["chosen"],
                                                                             pair["rejected"])
    return Record(instruction=pair.get("instruction") or pair["prompt"], context=pair.get("context") or "",
                  response=pair["chosen"], source=str(pair.get("source") or "pairs"), id=pair_id,
                  meta={"pair": {k: v for k, v in pair.items() if k != "lineage"}})


def run(source: Path, config: PairsConfig, out: Outputs, api_key: str | None = None) -> PairsResult:
    """The pairs stage (`data export --format dpo`, and a recipe's pairs): SOURCE's pairs in out["pairs.jsonl"]
    (JSONL, or Parquet by the name); pairs left out are dropped through the ledger with why, and records that gave
    no pair are logged (UNUSED)."""
    if out["pairs.jsonl"].suffix not in (".jsonl", ".parquet"):
        raise InputError(f"{out['pairs.jsonl']}: preference pairs are written as .jsonl or .parquet")
    ledger = out.start(config, [source])
    problems: list[Problem] = []
    records = load_records(source, problems)
    pairs, dropped = build_pairs(records, config, api_key)
    for row in dropped:
        ledger.drop(pair_record(row), row["reason"], {"source": row["source"]})
    used = {i for row in pairs + dropped for i in (row["chosen_id"], row["rejected_id"])}
    for record in records:
        if record.id not in used:
            ledger.log(record, "unpaired", UNUSED)
    write_rows(out["pairs.jsonl"], pairs)
    by_source = Counter(p["source"] for p in pairs)
    counts = {"in": len(records), "out": len(pairs), **{f"from_{k}": n for k, n in sorted(by_source.items())},
              "dropped_pairs": len(dropped), "unpaired": len(records) - len({r.id for r in records} & used)}
    result = out.finish(ledger, counts, problems, pairs=config.pairs)
    return PairsResult(result.manifest, result.problems, by_source)
