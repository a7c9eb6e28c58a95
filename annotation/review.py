"""Human review in Argilla: push candidates, let annotators keep/discard/correct them, pull the curated set back.

The library API (the CLI, the demo and the tests call these):
    client = connect(api_url, api_key, data_dir)  # explicit > $ARGILLA_API_URL/KEY > DATA_DIR/credentials.json
    push(records, "dataset", client=client)       # upsert by our record id, retried batch by batch
    raw = fetch(client, "dataset")                # every record with every response (REST, paginated)
    pulled, problems = resolve(raw, policy="majority")  # curated, disputed, discarded, ledger
    export_rows(raw, users)                       # a server-independent backup

Argilla record ids *are* our record ids (its `external_id`), so pushing the same file twice changes nothing. The
whole Record (lineage, scores, meta) rides along in one extra metadata entry that annotators never see, so a pull
rebuilds exactly what was pushed, plus what the annotators decided.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from annotation.server import DEFAULT_WORKSPACE, Credentials, default_data_dir
from workbench.core.errors import WorkbenchError
from workbench.core.records import CATEGORIES, Record
from workbench.core.runs import Ledger

DECISIONS = ("keep", "discard")
POLICIES = ("majority", "unanimous", "any-discard")
RECORD_KEY = "workbench_record"  # extra metadata (no property defined: not shown, not filterable) holding the Record
GUIDELINES = """\
Each record is one instruction-tuning example: an instruction, an optional context and the response a model
should learn to give.

- **decision** (required): *keep* if the instruction is clear and the response is correct, helpful and safe;
  *discard* otherwise (wrong, unsafe, off-topic, a near-duplicate you have already seen, or not fixable quickly).
- **quality**: 1 (poor) to 5 (excellent), for the pair as it stands after your corrections.
- **category**: pre-filled from the record; change it if it is wrong.
- **corrected_instruction / corrected_response**: only when a small edit makes the record good; write the whole
  corrected text. Leave them empty otherwise.

The metadata (toxicity, screen route, duplicate cluster size, source, model, round) lets you filter and sort; the
suggested decision comes from the toxicity screen.
"""


class ReviewError(WorkbenchError):
    """Argilla cannot be reached, rejects us, or holds something we cannot use."""


# --- connecting -------------------------------------------------------------------------------------------------

def resolve_credentials(api_url: str | None = None, api_key: str | None = None,
                        data_dir: Path | None = None) -> tuple[str, str]:
    """Explicit values, else $ARGILLA_API_URL / $ARGILLA_API_KEY, else the local server's credentials.json."""
    api_url = api_url or os.environ.get("ARGILLA_API_URL")
    api_key = api_key or os.environ.get("ARGILLA_API_KEY")
    if not (api_url and api_key):
        saved = Credentials.load(Path(data_dir or default_data_dir()))
        if saved is None:
            raise ReviewError("no Argilla server given and no local one has been started "
                              f"(no credentials.json in {data_dir or default_data_dir()})",
                              hint="run `workbench annotate serve`, or pass --api-url and --api-key")
        api_url, api_key = api_url or saved.api_url, api_key or saved.api_key
    return api_url.rstrip("/"), api_key


def connect(api_url: str | None = None, api_key: str | None = None, data_dir: Path | None = None,
            timeout: int = 60):
    """An argilla client, checked against the server; errors never show the key."""
    import argilla as rg
    from argilla._exceptions import ArgillaCredentialsError

    logging.getLogger("argilla.sdk").setLevel(logging.CRITICAL)  # it logs what it raises; we report it once
    api_url, api_key = resolve_credentials(api_url, api_key, data_dir)
    try:
        return rg.Argilla(api_url=api_url, api_key=api_key, timeout=timeout, retries=1)
    except ArgillaCredentialsError:
        raise ReviewError(f"Argilla at {api_url} rejected the API key",
                          hint="check --api-key / $ARGILLA_API_KEY (a local server's key is in its credentials.json)"
                          ) from None
    except Exception as e:  # connection refused, DNS, TLS: the client wraps them differently by version
        raise ReviewError(f"cannot reach Argilla at {api_url}: {_why(e)}",
                          hint="is the server running? (`workbench annotate serve` starts a local one)") from None


def _why(error: Exception) -> str:
    # One line and never the key: the API key only travels in a header, which no exception text here contains.
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300]


def api_url_of(client) -> str:
    return str(client.api_url).rstrip("/")


def _http(client):
    return client.api.http_client


def get_json(client, path: str, **params) -> Any:
    response = _http(client).get(path, params=params)
    if response.status_code != 200:
        raise ReviewError(f"GET {path} answered HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


# --- dataset settings --------------------------------------------------------------------------------------------

METADATA = (  # (name, kind, where the value comes from in a Record)
    ("toxicity_max", "float", lambda r: r.scores.get("toxicity_max")),
    ("screen_route", "terms", lambda r: r.meta.get("screen_route")),
    ("dedup_cluster_size", "integer", lambda r: r.meta.get("dedup_cluster_size")),
    ("source", "terms", lambda r: r.source),
    ("model", "terms", lambda r: r.meta.get("model")),
    ("round", "integer", lambda r: r.meta.get("round")),
)


def dataset_settings(min_submitted: int = 1, guidelines: str = GUIDELINES):
    import argilla as rg

    metadata_class = {"float": rg.FloatMetadataProperty, "integer": rg.IntegerMetadataProperty,
                      "terms": rg.TermsMetadataProperty}
    return rg.Settings(
        guidelines=guidelines,
        fields=[
            rg.TextField("instruction", title="Instruction", use_markdown=False),
            rg.TextField("context", title="Context", required=False, use_markdown=False),
            rg.TextField("response", title="Response", required=False, use_markdown=False),
        ],
        questions=[
            rg.LabelQuestion("decision", labels=list(DECISIONS), title="Keep or discard this record?", required=True),
            rg.RatingQuestion("quality", values=[1, 2, 3, 4, 5], title="Quality (1 poor - 5 excellent)",
                              required=False),
            rg.LabelQuestion("category", labels=list(CATEGORIES), title="Category", required=False),
            rg.TextQuestion("corrected_instruction", title="Corrected instruction (optional)", required=False,
                            use_markdown=False),
            rg.TextQuestion("corrected_response", title="Corrected response (optional)", required=False,
                            use_markdown=False),
        ],
        metadata=[metadata_class[kind](name) for name, kind, _ in METADATA],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
        allow_extra_metadata=True,  # the whole Record rides along under RECORD_KEY
    )


def _dataset(client, name: str, workspace: str):
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not found" is an answer here, not a problem
            return client.datasets(name=name, workspace=workspace)
    except Exception as e:
        if "workspace" in str(e).lower():
            raise ReviewError(f"workspace {workspace!r} does not exist on {api_url_of(client)}",
                              hint="pass --workspace with one you belong to") from None
        raise


def get_dataset(client, name: str, workspace: str = DEFAULT_WORKSPACE):
    dataset = _dataset(client, name, workspace)
    if dataset is None:
        raise ReviewError(f"no dataset {name!r} in workspace {workspace!r} on {api_url_of(client)}")
    return dataset


def ensure_dataset(client, name: str, workspace: str = DEFAULT_WORKSPACE, min_submitted: int = 1):
    """The dataset, created with our settings if missing; an existing one must have our questions."""
    import argilla as rg

    dataset = _dataset(client, name, workspace)
    if dataset is not None:
        have = {q.name for q in dataset.settings.questions}
        missing = {"decision", "quality", "category", "corrected_instruction", "corrected_response"} - have
        if missing:
            raise ReviewError(f"dataset {name!r} exists without the review questions {sorted(missing)}",
                              hint="push to a new dataset name")
        if not dataset.settings.allow_extra_metadata:
            raise ReviewError(f"dataset {name!r} does not allow extra metadata, where the workbench keeps each "
                              "record's lineage", hint="push to a new dataset name")
        return dataset, False
    dataset = rg.Dataset(name=name, workspace=workspace, settings=dataset_settings(min_submitted), client=client)
    dataset.create()
    return dataset, True


# --- push --------------------------------------------------------------------------------------------------------

def suggestions_for(record: Record) -> list:
    import argilla as rg

    out = []
    route = record.meta.get("screen_route")
    if route in ("pass", "review"):
        toxicity = float(record.scores.get("toxicity_max", 0.0))
        agent = f"screen:{record.meta.get('screen_scorer', 'toxicity')}"
        # The screen's confidence: how far the toxicity score is from the side it routed to.
        value, score = ("keep", 1.0 - toxicity) if route == "pass" else ("discard", toxicity)
        out.append(rg.Suggestion("decision", value, score=round(score, 4), agent=agent))
    if record.category in CATEGORIES:
        method = next((e.get("detail", {}).get("method") for e in reversed(record.lineage)
                       if isinstance(e.get("detail"), dict) and e["detail"].get("method")), None)
        out.append(rg.Suggestion("category", record.category, agent=f"workbench:{method or record.source}"))
    return out


def to_argilla(record: Record):
    import argilla as rg

    metadata = {name: get(record) for name, _, get in METADATA}
    metadata = {k: v for k, v in metadata.items() if v is not None and v != ""}
    metadata[RECORD_KEY] = record.to_json()
    return rg.Record(id=record.id, fields={"instruction": record.instruction, "context": record.context,
                                           "response": record.response},
                     metadata=metadata, suggestions=suggestions_for(record))


def _retryable(error: Exception) -> bool:
    import httpx
    from argilla._exceptions import ArgillaAPIError

    if isinstance(error, (httpx.TransportError, ConnectionError)):
        return True
    if isinstance(error, ArgillaAPIError):
        status = getattr(error, "status_code", None)
        return status is None or status >= 500 or status in (408, 429)
    # The client wraps transport errors in its own base class in some paths; a refused connection says so.
    text = str(error).lower()
    return any(s in text for s in ("connection", "timed out", "timeout", "disconnected", "reset by peer"))


@dataclass
class PushResult:
    dataset: str
    workspace: str
    pushed: int
    created: bool
    on_server: int
    retries: int = 0


def push(records: list[Record], dataset_name: str, *, client, workspace: str = DEFAULT_WORKSPACE,
         min_submitted: int = 1, batch_size: int = 100, max_retries: int = 8, backoff: float = 0.5,
         progress: Callable[[int], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> PushResult:
    """Upsert records batch by batch; a batch that fails on the connection or a 5xx is retried with exponential
    backoff (upserts are idempotent, so a retried batch never duplicates anything)."""
    if not records:
        raise ReviewError("nothing to push: the input has no records")
    retries_used = 0

    def attempt(what: str, call: Callable[[], Any]) -> Any:
        nonlocal retries_used
        for retry in range(max_retries + 1):
            try:
                return call()
            except Exception as e:
                if isinstance(e, WorkbenchError) or not _retryable(e) or retry == max_retries:
                    if isinstance(e, WorkbenchError):
                        raise
                    raise ReviewError(f"{what} failed after {retry} retries: {_why(e)}",
                                      hint="run the same push again: records already on the server are updated, "
                                           "not duplicated") from None
                retries_used += 1
                sleep(min(backoff * 2 ** retry, 15.0))

    dataset, created = attempt("creating the dataset",
                               lambda: ensure_dataset(client, dataset_name, workspace, min_submitted))
    for start in range(0, len(records), batch_size):
        batch = []
        for record in records[start:start + batch_size]:
            item = to_argilla(record)
            item.dataset = dataset  # resolves question names to the dataset's question ids
            batch.append(item.api_model())
        # The bulk upsert `dataset.records.log` sends, without its tqdm bar (ours covers the whole push).
        attempt(f"pushing records {start + 1}-{start + len(batch)}",
                lambda b=batch: client.api.records.bulk_upsert(dataset_id=dataset.id, records=b))
        if progress:
            progress(len(batch))
    total = attempt("counting records", lambda: dataset_progress(client, dataset)["total"])
    return PushResult(dataset_name, workspace, len(records), created, total, retries_used)


def dataset_progress(client, dataset) -> dict:
    return get_json(client, f"/api/v1/datasets/{dataset.id}/progress")


# --- fetch -------------------------------------------------------------------------------------------------------

def fetch(client, dataset_name: str, workspace: str = DEFAULT_WORKSPACE, page: int = 500) -> Iterator[dict]:
    """Every record of the dataset with all its responses and suggestions, as the REST API returns them
    (with response times, which the client's own record objects leave out)."""
    dataset = get_dataset(client, dataset_name, workspace)
    questions = {str(q.id): q.name for q in dataset.settings.questions}
    offset = 0
    while True:
        body = get_json(client, f"/api/v1/datasets/{dataset.id}/records", include=["responses", "suggestions"],
                         offset=offset, limit=page)
        for item in body["items"]:
            for suggestion in item.get("suggestions") or []:
                suggestion["question_name"] = questions.get(str(suggestion.get("question_id")))
            yield item
        offset += len(body["items"])
        if not body["items"] or offset >= body.get("total", 0):
            return


def user_names(client) -> dict[str, str]:
    """user id -> username, for the users this key may list (owners and admins see everyone)."""
    try:
        return {str(u["id"]): u["username"] for u in get_json(client, "/api/v1/users")["items"]}
    except ReviewError:
        return {}


def export_rows(raw: Iterable[dict], users: dict[str, str]) -> Iterator[dict]:
    """Backup rows: the Record as pushed plus every raw response (user, status, values, times)."""
    for item in raw:
        metadata = dict(item.get("metadata") or {})
        record = metadata.pop(RECORD_KEY, None)
        yield {
            "id": item.get("external_id"),
            "argilla_id": item["id"],
            "status": item.get("status"),
            "fields": item.get("fields"),
            "metadata": metadata,
            "record": json.loads(record) if record else None,
            "suggestions": [{k: s.get(k) for k in ("question_name", "value", "score", "agent")}
                            for s in item.get("suggestions") or []],
            "responses": [{"user_id": r["user_id"], "username": users.get(str(r["user_id"])), "status": r["status"],
                           "values": {q: v.get("value") for q, v in (r.get("values") or {}).items()},
                           "inserted_at": r.get("inserted_at"), "updated_at": r.get("updated_at")}
                          for r in item.get("responses") or []],
            "inserted_at": item.get("inserted_at"),
            "updated_at": item.get("updated_at"),
        }


# --- pull: resolving several annotators ------------------------------------------------------------------------

@dataclass
class Pulled:
    curated: list[Record] = field(default_factory=list)
    disputed: list[Record] = field(default_factory=list)
    discarded: list[Record] = field(default_factory=list)
    pending: int = 0  # records not yet completed (fewer submitted responses than the dataset's min_submitted)
    unchanged: int = 0  # --since-last: completed records already pulled with the same responses
    ledger: Ledger = field(default_factory=lambda: Ledger("review"))
    seen: dict[str, str] = field(default_factory=dict)  # record id -> latest response time, for --since-last


def _vote(decisions: list[str], policy: str) -> str | None:
    """keep / discard, or None when the policy cannot decide (the record is disputed)."""
    counts = Counter(decisions)
    if policy == "any-discard":
        return "discard" if counts["discard"] else "keep"
    if policy == "unanimous":
        return decisions[0] if len(counts) == 1 else None
    if counts["keep"] == counts["discard"]:
        return None
    return "keep" if counts["keep"] > counts["discard"] else "discard"


def _agreed(values: list[Any]) -> tuple[bool, Any]:
    """The most common value among those given; (False, None) when two values tie for most common."""
    values = [v for v in values if v not in (None, "")]
    if not values:
        return True, None
    ranked = Counter(values).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return False, None
    return True, ranked[0][0]


def _record_of(item: dict, problems: list[str]) -> Record | None:
    text = (item.get("metadata") or {}).get(RECORD_KEY)
    if text:
        try:
            return Record.from_dict(json.loads(text))
        except ValueError as e:
            problems.append(f"record {item.get('external_id')}: the pushed record cannot be read back ({e})")
            return None
    # Pushed by something else than `workbench annotate push`: rebuild from the fields.
    fields = item.get("fields") or {}
    if not fields.get("instruction"):
        problems.append(f"record {item.get('external_id') or item['id']}: no instruction field")
        return None
    metadata = item.get("metadata") or {}
    record = Record(instruction=fields["instruction"], context=fields.get("context") or "",
                    response=fields.get("response") or "", source=str(metadata.get("source") or "argilla"),
                    category=metadata.get("category") if metadata.get("category") in CATEGORIES else None)
    return replace(record, id=item.get("external_id") or record.id)


def resolve(raw: Iterable[dict], policy: str = "majority", *, dataset: str = "",
            users: dict[str, str] | None = None, since: dict[str, str] | None = None) -> tuple[Pulled, list[str]]:
    """Submitted responses only (drafts and discarded-as-skipped are not votes); one decision per completed record
    by `policy`; corrections and category from the winning side. Returns (what was pulled, problems)."""
    if policy not in POLICIES:
        raise ReviewError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    users = users or {}
    out, problems = Pulled(), []
    for item in raw:
        submitted = [r for r in item.get("responses") or [] if r.get("status") == "submitted"]
        if item.get("status") != "completed" or not submitted:
            out.pending += 1
            continue
        latest = max(str(r.get("updated_at") or "") for r in submitted)
        record = _record_of(item, problems)
        if record is None:
            continue
        out.seen[record.id] = latest
        if since is not None and since.get(record.id) == latest:
            out.unchanged += 1
            continue
        values = [(str(r["user_id"]), {q: v.get("value") for q, v in (r.get("values") or {}).items()})
                  for r in submitted]
        votes = {user: v.get("decision") for user, v in values}
        detail = {"dataset": dataset, "policy": policy, "votes": votes,
                  "users": {u: users.get(u) for u in votes}}
        bad = [u for u, d in votes.items() if d not in DECISIONS]
        decision = None if bad else _vote(list(votes.values()), policy)
        if decision is None:
            reason = "no decision in a submitted response" if bad else f"annotators disagree ({policy})"
            out.disputed.append(record.with_event("review", "dispute", reason, detail, out.ledger.run))
            out.ledger.counts[f"dispute: {reason}"] += 1
            continue
        winners = [v for user, v in values if votes[user] == decision]
        ratings = [v.get("quality") for _, v in values if isinstance(v.get("quality"), (int, float))]
        scores = {**record.scores, **({"review_quality": round(sum(ratings) / len(ratings), 3)} if ratings else {})}
        if decision == "discard":
            out.discarded.append(out.ledger.drop(replace(record, scores=scores), "discarded by review", detail))
            continue
        changes, conflicts = {}, []
        for question, attribute in (("corrected_instruction", "instruction"), ("corrected_response", "response"),
                                    ("category", "category")):
            answers = [v.get(question).strip() if isinstance(v.get(question), str) else v.get(question)
                       for v in winners]
            agreed, value = _agreed(answers)
            if not agreed:
                conflicts.append(question)
            elif value is not None and value != getattr(record, attribute):
                changes[attribute] = value
        if conflicts:
            reason = f"conflicting {' and '.join(conflicts)}"
            out.disputed.append(record.with_event("review", "dispute", reason, detail, out.ledger.run))
            out.ledger.counts[f"dispute: {reason}"] += 1
            continue
        if changes:
            detail["original"] = {k: getattr(record, k) for k in changes}
            kept = out.ledger.edit(record, "corrected by review", detail, scores=scores, **changes)
        else:
            kept = out.ledger.log(record, "keep", "kept by review", detail, scores=scores)
        out.curated.append(kept)
    return out, problems


# --- --since-last state ------------------------------------------------------------------------------------------

def _state_path(data_dir: Path, api_url: str, workspace: str, dataset: str) -> Path:
    import hashlib

    key = hashlib.sha256(f"{api_url}\x1f{workspace}\x1f{dataset}".encode()).hexdigest()[:16]
    return Path(data_dir) / "pulls" / f"{dataset}-{key}.json"


def load_pull_state(data_dir: Path, api_url: str, workspace: str, dataset: str) -> dict[str, str]:
    path = _state_path(data_dir, api_url, workspace, dataset)
    return json.loads(path.read_text())["seen"] if path.exists() else {}


def save_pull_state(data_dir: Path, api_url: str, workspace: str, dataset: str, seen: dict[str, str]) -> None:
    from workbench.core.io import atomic_write_text

    path = _state_path(data_dir, api_url, workspace, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"api_url": api_url, "workspace": workspace, "dataset": dataset,
                                        "seen": seen}, indent=1))


# --- users and responses through the REST API ------------------------------------------------------------------

def add_user(client, username: str, role: str = "annotator", workspace: str = DEFAULT_WORKSPACE,
             password: str | None = None, first_name: str | None = None) -> str:
    """Create a user in a workspace; returns the password (generated unless given), shown once."""
    import argilla as rg

    if role not in ("annotator", "admin", "owner"):
        raise ReviewError(f"unknown role {role!r}: choose annotator, admin or owner")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not found" is the answer we hope for
        existing = client.users(username=username)
    if existing is not None:
        raise ReviewError(f"user {username!r} already exists on {api_url_of(client)}")
    space = client.workspaces(workspace)
    if space is None:
        raise ReviewError(f"workspace {workspace!r} does not exist on {api_url_of(client)}")
    password = password or secrets.token_urlsafe(9)
    user = rg.User(username=username, password=password, role=role, first_name=first_name or username,
                   client=client).create()
    space.add_user(user)
    return password


def user_token(api_url: str, username: str, password: str) -> str:
    """An access token for a user, as the UI gets one (POST /api/v1/token)."""
    import httpx

    response = httpx.post(f"{api_url}/api/v1/token", data={"username": username, "password": password}, timeout=30)
    if response.status_code not in (200, 201):
        raise ReviewError(f"Argilla at {api_url} refused to log in {username!r} (HTTP {response.status_code})")
    return response.json()["access_token"]


def submit_response(api_url: str, token: str, record_server_id: str, values: dict[str, Any],
                    status: str = "submitted") -> dict:
    """Answer one record as the token's user: what an annotator's click on Submit (or Save draft) sends."""
    import httpx

    body = {"values": {q: {"value": v} for q, v in values.items() if v is not None}, "status": status}
    response = httpx.post(f"{api_url}/api/v1/records/{record_server_id}/responses", json=body,
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if response.status_code not in (200, 201):
        raise ReviewError(f"submitting a response to {record_server_id} failed: HTTP {response.status_code} "
                          f"{response.text[:200]}")
    return response.json()
