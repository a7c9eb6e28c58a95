"""The review stage: candidates pushed to Argilla, kept, discarded or corrected by annotators, pulled back curated.

    push_file(path, "dataset", client)        # `workbench annotate push`: upsert, never duplicate
    pull(client, "dataset", out)              # `workbench annotate pull`: votes resolved, curated set written
    review(candidates, config, out)           # a recipe's review stage: a local server, push, review, pull
    export(client, "dataset", path)           # `workbench annotate export`: every raw response, a backup

The client (`annotation.client`), the Record <-> Argilla mapping (`annotation.mapping`), the questions annotators
answer (`annotation.questions`) and vote resolution (`annotation.votes`) are separate modules; this one strings them
into the stage and writes its files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from annotation.agreement import agreement, to_dict
from annotation.client import (
    DEFAULT_WORKSPACE,
    PushResult,
    api_url_of,
    connect,
    fetch,
    get_dataset,
    is_comparison,
    min_submitted_of,
    push,
    questions_of,
    user_names,
)
from annotation.mapping import export_rows
from annotation.questions import Question
from annotation.votes import Pulled, is_complete, resolve
from workbench.core.errors import InputError
from workbench.core.fingerprint import path_sha256
from workbench.core.io import Problem, atomic_open, atomic_write_json, load_records, write_records
from workbench.core.ledger import Ledger
from workbench.core.runs import Outputs, StagePending, StepResult, reason_lines


class ReviewConfig(BaseModel):
    """A recipe's review stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["auto", "manual"] = "auto"  # auto: three labelled demo reviewers; manual: people, resumable
    dataset: str = "demo-candidates"
    min_submitted: int = Field(2, ge=1)  # a record is complete once this many reviewers answered
    policy: Literal["majority", "unanimous", "any-discard"] = "majority"
    compare: bool = False  # the candidates are groups to rank (`generate responses`), one comparison per group


class PullConfig(BaseModel):
    """What a pull reads and how it decides (the manifest's config of `workbench annotate pull`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_url: str
    workspace: str
    dataset: str
    policy: str = "majority"  # annotation.votes.POLICIES; resolve says which when it is none of them
    since_last: bool = False
    exclude: tuple[str, ...] = ()  # annotators whose answers are left out (a student's votes taken back)


@dataclass
class PullResult(StepResult):
    pulled: Pulled = field(default_factory=Pulled)
    review_problems: list[str] = field(default_factory=list)  # server records that could not be read back

    def summary_lines(self) -> list[str]:
        c, files = self.counts, self.files
        waiting = f"; {c['unchanged']:,} already pulled" if c.get("unchanged") else ""
        if "ranked" in c:  # a comparison dataset
            lines = [f"Ranked {c['groups']:,} comparisons ({c['ranked']:,} candidates) in {files['records.jsonl']}; "
                     f"{c['disputed']:,} candidates disputed in {files['disputed.jsonl']}; {c['discarded']:,} "
                     f"discarded in {files['dropped.jsonl']}",
                     f"{c['tied_groups']:,} comparisons with a tie in the resolved order; annotators split on "
                     f"{c['split_pairs']:,} pairs; {c['pending']:,} not yet complete{waiting}"]
        else:
            lines = [f"Curated {c['curated']:,} records in {files['records.jsonl']}; {c['disputed']:,} disputed in "
                     f"{files['disputed.jsonl']}; {c['discarded']:,} discarded in {files['dropped.jsonl']}",
                     f"{c['corrected']:,} corrected by annotators; {c['pending']:,} not yet complete{waiting}"]
        return lines + [f"  {line}" for line in reason_lines(self.reasons)]


def push_file(path: Path, dataset: str, client, *, workspace: str = DEFAULT_WORKSPACE, min_submitted: int = 1,
              batch_size: int = 100, compare: bool = False, progress: Callable[[int, int], None] | None = None,
              adjudicate: bool = False, in_flight: int = 1) -> tuple[PushResult, list[Problem]]:
    """The records of PATH pushed to a dataset (created if needed); bad lines are returned, never pushed.
    `compare`: candidates (`generate responses`), one comparison with a ranking question per group. `adjudicate`:
    a pull's disputed records, each with every annotator's answers side by side, for one adjudicator (the pull of
    that dataset then applies the verdict)."""
    problems: list[Problem] = []
    records = load_records(path, problems)
    if adjudicate and compare:
        raise InputError("--adjudicate: a comparison's disputes are ranked again, not adjudicated (drop --compare)")
    return push(records, dataset, client=client, workspace=workspace, min_submitted=min_submitted,
                batch_size=batch_size, compare=compare, progress=progress, adjudicate=adjudicate,
                in_flight=in_flight), problems


def _pull(raw, users: dict[str, str], policy: str, dataset: str, min_submitted: int, ledger: Ledger, out: Outputs,
          since: dict[str, str] | None = None, compare: bool = False, questions: tuple[Question, ...] | None = None
          ) -> tuple[Pulled, list[str], dict[str, int]]:
    """What both doors of the stage do with the server's records: votes resolved (discards dropped through the
    ledger), curated ones to records.jsonl, disputed ones to disputed.jsonl. Returns (pulled, problems, counts).
    A comparison's candidates come back ranked (`meta.ranking`)."""
    pulled, problems = resolve(raw, policy, ledger, min_submitted=min_submitted, dataset=dataset, users=users,
                               since=since, compare=compare, questions=questions)
    write_records(out["records.jsonl"], pulled.curated)
    write_records(out["disputed.jsonl"], pulled.disputed)
    if compare:
        counts = {"ranked": len(pulled.curated), "groups": pulled.ranked_groups, "tied_groups": pulled.tied_groups,
                  "split_pairs": pulled.split_pairs}
    else:
        counts = {"curated": len(pulled.curated),
                  "corrected": sum(1 for r in pulled.curated if r.lineage[-1]["action"] == "edit")}
    return pulled, problems, {**counts, "disputed": len(pulled.disputed), "discarded": pulled.discarded,
                              "pending": pulled.pending}


def pull(client, dataset: str, out: Outputs, *, policy: str = "majority", workspace: str = DEFAULT_WORKSPACE,
         since_last: bool = False, state_dir: Path | None = None, exclude: tuple[str, ...] = ()) -> PullResult:
    """The reviewed records of a dataset: submitted responses resolved by `policy`, corrections applied; curated
    ones to out["records.jsonl"], disputed to out["disputed.jsonl"], discarded ones dropped with the votes.
    `since_last`: only records completed (or answered again) since the previous pull into another file.
    `exclude`: usernames whose answers are left out, as if they had never reviewed (a record they helped complete
    may then be pending again); an unknown name is refused."""
    if since_last and out["records.jsonl"].exists():
        # A since-last pull holds only the new records: writing it over an earlier pull would lose that one.
        raise InputError(f"{out['records.jsonl']} exists; --since-last writes only the records completed since the "
                         "previous pull, so give it a new file")
    url = api_url_of(client)
    users = user_names(client)
    unknown = sorted(set(exclude) - set(users.values()))
    if unknown:
        raise InputError(f"--exclude-annotator: no user {', '.join(map(repr, unknown))} on {url}",
                         hint="workbench annotate users list")
    ledger = out.start(PullConfig(api_url=url, workspace=workspace, dataset=dataset, policy=policy,
                                  since_last=since_last, exclude=tuple(exclude)), [])
    from annotation.server import default_data_dir

    state_dir = Path(state_dir or default_data_dir())
    since = load_pull_state(state_dir, url, workspace, dataset) if since_last else None
    asked = get_dataset(client, dataset, workspace)
    compare = is_comparison(asked)
    raw = fetch(client, dataset, workspace)
    if exclude:
        left_out = {user_id for user_id, name in users.items() if name in exclude}
        raw = ({**item, "responses": [r for r in item.get("responses") or [] if str(r["user_id"]) not in left_out]}
               for item in raw)
    pulled, problems, counts = _pull(raw, users, policy, dataset, min_submitted_of(client, dataset, workspace),
                                     ledger, out, since, compare, questions_of(asked))
    counts["unchanged"] = pulled.unchanged
    save_pull_state(state_dir, url, workspace, dataset, {**(since or {}), **pulled.seen})
    result = out.finish(ledger, counts, review_problems=problems)
    return PullResult(result.manifest, result.problems, pulled, problems)


def review(candidates: Path, config: ReviewConfig, out: Outputs, say: Callable[[str], None] = lambda text: None,
           questions: tuple[Question, ...] | None = None, guidelines: str | None = None,
           data_dir: Path | None = None) -> StepResult:
    """A recipe's review stage: the candidates pushed to a local Argilla server in out["argilla"], reviewed, pulled.

    auto: three clearly labelled demo reviewers answer through the REST API the UI uses, and the server stops.
    manual: the server keeps running for people; the stage ends pending (StagePending: the run stops, exit 0) until
    every pushed record has its `min_submitted` responses, and the next run pulls.
    `questions` and `guidelines`: other than the review's (a drafted suite's, `eval_suites.draft`); `data_dir`: the
    server's folder, when not the stage's own (a recipe's suite review shares the review's server).
    """
    from annotation import demo_reviewer, server

    ledger = out.start(config, [candidates])
    problems: list[Problem] = []
    records = load_records(candidates, problems)
    data_dir_given = data_dir is not None
    data_dir = Path(data_dir or out["argilla"]).resolve()
    served = server.serve(data_dir, port=server.free_port())  # a running server of this data dir is reused
    keep_running = False
    try:
        client = connect(served.api_url, served.credentials.api_key)
        marker, digest = out["pushed.json"], path_sha256(candidates)
        if not marker.exists() or json.loads(marker.read_text()).get("sha256") != digest:
            pushed = push(records, config.dataset, client=client, min_submitted=config.min_submitted,
                          compare=config.compare, questions=questions, guidelines=guidelines)
            atomic_write_json(marker, {"sha256": digest, "pushed": pushed.pushed})
        min_submitted = min_submitted_of(client, config.dataset)
        # Only this run's candidates: a rerun after an upstream change pushes to the same dataset, which still
        # holds the records of the earlier candidates.
        wanted = {r.meta.get("compare_group") if config.compare else r.id for r in records}

        def candidates_on_server() -> list[dict]:
            return [item for item in fetch(client, config.dataset) if item.get("external_id") in wanted]

        if config.mode == "manual":
            raw = candidates_on_server()
            complete = sum(is_complete(item, min_submitted) for item in raw)
            if complete < len(raw):
                keep_running = True
                raise StagePending(
                    f"review: {complete} of {len(raw)} records complete at "
                    f"{served.api_url} (user {served.credentials.username}, password in "
                    f"{data_dir / 'credentials.json'}; add annotators with `workbench annotate users add NAME "
                    f"--data-dir {data_dir}`); run the same command again once they are done")
        else:
            say("three demo reviewers answer every record")
            demo_reviewer.review_all(client, config.dataset, server.DEFAULT_WORKSPACE, data_dir, questions=questions)
            raw = candidates_on_server()
        users = user_names(client)
    finally:
        # A server this stage found running stays up: people may be reviewing on it (a recipe's other dataset).
        if not keep_running and not (data_dir_given and served.already_running):
            server.stop(data_dir)
    _, review_problems, counts = _pull(raw, users, config.policy, config.dataset, min_submitted, ledger, out,
                                       compare=config.compare, questions=questions)
    counts = {"pushed": len(records), **counts, "problems": len(review_problems)}
    rows = list(export_rows(raw, users))
    _write_rows(out["export.jsonl"], rows)
    atomic_write_json(out["agreement.json"], to_dict(agreement(rows, questions)))
    return out.finish(ledger, counts, problems, review_problems=review_problems)


def _write_rows(path: Path, rows) -> int:
    count = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def export(client, dataset: str, path: Path, workspace: str = DEFAULT_WORKSPACE) -> int:
    """Every record with all raw responses (user, status, values, times) to PATH: a backup that needs no server."""
    return _write_rows(path, export_rows(fetch(client, dataset, workspace), user_names(client)))


# --- --since-last state ------------------------------------------------------------------------------------------

def _state_path(data_dir: Path, api_url: str, workspace: str, dataset: str) -> Path:
    key = hashlib.sha256(f"{api_url}\x1f{workspace}\x1f{dataset}".encode()).hexdigest()[:16]
    return Path(data_dir) / "pulls" / f"{dataset}-{key}.json"


def load_pull_state(data_dir: Path, api_url: str, workspace: str, dataset: str) -> dict[str, str]:
    path = _state_path(data_dir, api_url, workspace, dataset)
    return json.loads(path.read_text())["seen"] if path.exists() else {}


def save_pull_state(data_dir: Path, api_url: str, workspace: str, dataset: str, seen: dict[str, str]) -> None:
    atomic_write_json(_state_path(data_dir, api_url, workspace, dataset),
                      {"api_url": api_url, "workspace": workspace, "dataset": dataset, "seen": seen})
