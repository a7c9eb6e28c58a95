"""The Argilla client: the one module that talks to an Argilla server through the argilla 2.8 SDK and its REST API
(argilla is in maintenance upstream, so the workbench keeps to its public API, and to this module).

    client = connect(api_url, api_key, data_dir)  # explicit > $ARGILLA_API_URL/KEY > DATA_DIR/credentials.json
    push(records, "dataset", client=client)       # upsert by our record id, retried batch by batch
    raw = fetch(client, "dataset")                # every record with every response (REST, paginated)
    add_user(client, "alice"); user_token(...); submit_response(...)   # accounts, and answering as a user

What a record looks like on the server is `annotation.mapping`'s business, and the questions asked of it
`annotation.questions`'s (each kind makes its own Argilla question); this module only sends and fetches.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotation.mapping import (
    ADJUDICATION_FIELD,
    ADJUDICATION_GUIDELINES,
    COMPARE_GUIDELINES,
    COMPARE_METADATA,
    GUIDELINES,
    METADATA,
    TEXT_FIELDS,
    adjudication_item,
    compare_groups,
    compare_item,
    compare_text_fields,
    record_item,
)
from annotation.questions import ON_THE_PAGE, RANKING, SUITE_QUESTIONS, Question, questions_for
from annotation.server import DEFAULT_WORKSPACE, Credentials, default_data_dir
from workbench.core.errors import InputError, WorkbenchError
from workbench.core.io import Problem
from workbench.core.records import Record


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

def dataset_settings(min_submitted: int = 1, compare_slots: int | None = None,
                     questions: tuple[Question, ...] | None = None, guidelines: str | None = None,
                     extra_fields: tuple[tuple[str, str, bool], ...] = ()):
    """The review dataset's fields, questions (`annotation.questions`, each made by its kind) and metadata
    properties (`annotation.mapping`), as argilla Settings; with `compare_slots`, a comparison dataset of that many
    responses and a ranking question. `questions` (and their `guidelines`): other than the set of the dataset's
    type."""
    import argilla as rg

    metadata_class = {"float": rg.FloatMetadataProperty, "integer": rg.IntegerMetadataProperty,
                      "terms": rg.TermsMetadataProperty}
    compare = compare_slots is not None
    questions = questions_for(compare) if questions is None else questions
    fields = (compare_text_fields(compare_slots) if compare else TEXT_FIELDS) + tuple(extra_fields)
    metadata = COMPARE_METADATA if compare else [(name, kind) for name, kind, _ in METADATA]
    return rg.Settings(
        guidelines=guidelines or (COMPARE_GUIDELINES if compare else GUIDELINES),
        fields=[rg.TextField(name, title=title, required=required, use_markdown=False)
                for name, title, required in fields],
        questions=[q.kind_spec.argilla(rg, q, compare_slots) for q in questions],
        metadata=[metadata_class[kind](name) for name, kind in metadata],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
        allow_extra_metadata=True,  # the whole Record rides along under mapping.RECORD_KEY
    )


def is_comparison(dataset) -> bool:
    return any(q.name == RANKING for q in dataset.settings.questions)


def questions_of(dataset) -> tuple[Question, ...]:
    """The question set a dataset asks: a drafted suite's, a comparison's or a review's."""
    names = {q.name for q in dataset.settings.questions}
    return SUITE_QUESTIONS if ON_THE_PAGE in names else questions_for(RANKING in names)


def compare_slots_of(dataset) -> int:
    return sum(1 for f in dataset.settings.fields if f.name.startswith("response_"))


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


def ensure_dataset(client, name: str, workspace: str = DEFAULT_WORKSPACE, min_submitted: int = 1,
                   compare_slots: int | None = None, questions: tuple[Question, ...] | None = None,
                   guidelines: str | None = None, extra_fields: tuple[tuple[str, str, bool], ...] = ()):
    """The dataset, created with our settings if missing; an existing one must be of the same kind, with our
    questions (and, for comparisons, at least `compare_slots` responses)."""
    import argilla as rg

    questions = questions_for(compare_slots is not None) if questions is None else questions
    dataset = _dataset(client, name, workspace)
    if dataset is not None:
        compare = compare_slots is not None
        if is_comparison(dataset) != compare:
            kind = "a comparison (ranking)" if is_comparison(dataset) else "a review (keep/discard)"
            raise ReviewError(f"dataset {name!r} is {kind} dataset; this push is "
                              f"{'a comparison' if compare else 'a review'}", hint="push to a new dataset name")
        have = {q.name for q in dataset.settings.questions}
        missing = {q.name for q in questions} - have
        if missing:
            raise ReviewError(f"dataset {name!r} exists without the review questions {sorted(missing)}",
                              hint="push to a new dataset name")
        lacking = {f[0] for f in extra_fields} - {f.name for f in dataset.settings.fields}
        if lacking:
            raise ReviewError(f"dataset {name!r} exists without the field(s) {sorted(lacking)}",
                              hint="push to a new dataset name")
        if compare and compare_slots_of(dataset) < compare_slots:
            raise ReviewError(f"dataset {name!r} shows {compare_slots_of(dataset)} responses per record; this push "
                              f"has groups of {compare_slots}", hint="push to a new dataset name")
        if not dataset.settings.allow_extra_metadata:
            raise ReviewError(f"dataset {name!r} does not allow extra metadata, where the workbench keeps each "
                              "record's lineage", hint="push to a new dataset name")
        return dataset, False
    settings = dataset_settings(min_submitted, compare_slots, questions, guidelines, extra_fields)
    dataset = rg.Dataset(name=name, workspace=workspace, settings=settings, client=client)
    dataset.create()
    return dataset, True


# --- push --------------------------------------------------------------------------------------------------------

def to_argilla(item: dict[str, Any]):
    """The argilla SDK's record for one server record as `annotation.mapping` makes it (`record_item`,
    `compare_item`)."""
    import argilla as rg

    suggestions = [rg.Suggestion(s["question"], s["value"], score=s["score"], agent=s["agent"])
                   for s in item["suggestions"]]
    return rg.Record(id=item["id"], fields=item["fields"], metadata=item["metadata"], suggestions=suggestions)


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

    def summary_lines(self) -> list[str]:
        return [f"Pushed {self.pushed:,} records to {self.workspace}/{self.dataset} "
                f"({'created' if self.created else 'updated'}); {self.on_server:,} records on the server"
                + (f" ({self.retries} retries)" if self.retries else "")]


def push(records: list[Record], dataset_name: str, *, client, workspace: str = DEFAULT_WORKSPACE,
         min_submitted: int = 1, batch_size: int = 100, max_retries: int = 8, backoff: float = 0.5,
         compare: bool = False, progress: Callable[[int, int], None] | None = None,
         sleep: Callable[[float], None] = time.sleep, questions: tuple[Question, ...] | None = None,
         guidelines: str | None = None, adjudicate: bool = False, in_flight: int = 1) -> PushResult:
    """Upsert records batch by batch (`in_flight` batches at once: for a server with several workers); a batch that
    fails on the connection or a 5xx is retried with exponential backoff (upserts are idempotent, so a retried batch
    never duplicates anything). `compare`: one comparison per
    group of candidates (`annotation.mapping.compare_groups`), ranked by the annotators. `questions` (and the
    `guidelines` a new dataset shows): other than the set of the dataset's type (`annotation.questions.questions_for`).
    A record's suggestion for a question the dataset does not ask is left out. `adjudicate`: the records are a
    pull's disputed ones, each shown with every annotator's answers side by side for one adjudicator
    (`annotation.mapping.adjudication_item`)."""
    if not records:
        raise ReviewError("nothing to push: the input has no records")
    slots = None
    if compare:
        groups = compare_groups(records)
        slots = max(len(g) for g in groups)
        existing = _dataset(client, dataset_name, workspace)
        if existing is not None and is_comparison(existing) and compare_slots_of(existing) > slots:
            slots = compare_slots_of(existing)  # a dataset's fields are fixed once created: fill its slots
        items = [compare_item(g, slots) for g in groups]
    elif adjudicate:
        items = [adjudication_item(r) for r in records]
        guidelines = guidelines or ADJUDICATION_GUIDELINES
    else:
        items = [record_item(r) for r in records]
    extra = (ADJUDICATION_FIELD,) if adjudicate else ()
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
                               lambda: ensure_dataset(client, dataset_name, workspace, min_submitted, slots,
                                                      questions, guidelines, extra))
    asked = {q.name for q in dataset.settings.questions}

    def send(start: int) -> int:
        batch = []
        for item in items[start:start + batch_size]:
            record = to_argilla({**item, "suggestions": [x for x in item["suggestions"] if x["question"] in asked]})
            record.dataset = dataset  # resolves question names to the dataset's question ids
            batch.append(record.api_model())
        # The bulk upsert `dataset.records.log` sends, without its tqdm bar (ours covers the whole push).
        attempt(f"pushing records {start + 1}-{start + len(batch)}",
                lambda b=batch: client.api.records.bulk_upsert(dataset_id=dataset.id, records=b))
        return len(batch)

    # `in_flight` batches at once, each whole or retried as a whole; the first failure (after its retries) stops the
    # push with the batches not yet sent left unsent (a rerun updates what is there and sends the rest).
    from concurrent.futures import ThreadPoolExecutor

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, in_flight)) as pool:
        futures = [pool.submit(send, start) for start in range(0, len(items), batch_size)]
        for future in futures:
            if future.exception() is not None:
                for later in futures:
                    later.cancel()  # the ones not started; the pool waits for those under way
                raise future.exception()
            done += future.result()
            if progress:
                progress(done, len(items))
    total = attempt("counting records", lambda: dataset_progress(client, dataset)["total"])
    return PushResult(dataset_name, workspace, len(items), created, total, retries_used)


def min_submitted_of(client, dataset_name: str, workspace: str = DEFAULT_WORKSPACE) -> int:
    """How many answers the dataset asks of each record (its task distribution)."""
    distribution = get_dataset(client, dataset_name, workspace).settings.distribution
    return int(getattr(distribution, "min_submitted", 1) or 1)


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


def list_users(client) -> list[dict]:
    """Every account this key may see: username, name, role, when it was made."""
    return [{"username": u["username"], "name": " ".join(x for x in (u.get("first_name"), u.get("last_name")) if x),
             "role": u["role"], "created": str(u.get("inserted_at", ""))[:19]}
            for u in get_json(client, "/api/v1/users")["items"]]


def _user_id(client, username: str) -> str:
    found = {u["username"]: u["id"] for u in get_json(client, "/api/v1/users")["items"]}
    if username not in found:
        raise ReviewError(f"no user {username!r} on {api_url_of(client)}", hint="workbench annotate users list")
    return found[username]


def reset_password(client, username: str) -> str:
    """A new generated password for USERNAME (their old one stops working); returned to be shown once."""
    password = secrets.token_urlsafe(9)
    response = _http(client).patch(f"/api/v1/users/{_user_id(client, username)}", json={"password": password})
    if response.status_code != 200:
        raise ReviewError(f"resetting the password of {username!r} failed: HTTP {response.status_code} "
                          f"{response.text[:200]}")
    return password


def remove_user(client, username: str) -> None:
    """Delete USERNAME's account (their submitted responses go with it: export the dataset first to keep them).
    The account this key belongs to is refused."""
    me = get_json(client, "/api/v1/me")
    if me["username"] == username:
        raise ReviewError(f"{username!r} is the account this command logs in as", hint="remove it as another owner")
    response = _http(client).delete(f"/api/v1/users/{_user_id(client, username)}")
    if response.status_code != 200:
        raise ReviewError(f"removing {username!r} failed: HTTP {response.status_code} {response.text[:200]}")


ROSTER_ROLES = ("annotator", "admin", "owner")


def read_roster(path: Path) -> tuple[list[dict], list[Problem]]:
    """A class roster: a CSV with a header naming `username` and optionally `name` and `role` (default annotator).
    A bad line (no username, an unknown role, a username given twice) is a Problem naming its line and field; the
    good ones are returned."""
    import csv

    problems: list[Problem] = []
    rows: list[dict] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            if "username" not in header:
                raise InputError(f"{path}:1: username: the roster's header must name a username column "
                                 f"(found {', '.join(header) or 'nothing'})", hint="username,name,role")
            seen: set[str] = set()
            for number, raw in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
                username, role = row.get("username", ""), row.get("role") or "annotator"
                line = ",".join(v or "" for v in raw.values() if isinstance(v, str))
                if not username:
                    problems.append(Problem(str(path), number, "username", "empty", line))
                elif role not in ROSTER_ROLES:
                    problems.append(Problem(str(path), number, "role", f"{role!r} is not one of "
                                                                      f"{', '.join(ROSTER_ROLES)}", line))
                elif username in seen:
                    problems.append(Problem(str(path), number, "username", f"{username!r} is given twice", line))
                else:
                    seen.add(username)
                    rows.append({"username": username, "name": row.get("name") or username, "role": role})
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    return rows, problems


@dataclass
class RosterResult:
    created: list[str]
    existing: list[str]  # already had an account: left as they are (no new password)
    passwords: Path | None

    def summary_lines(self) -> list[str]:
        lines = [f"Created {len(self.created)} account(s)"
                 + (f"; their passwords are in {self.passwords} (0600: hand each student theirs)"
                    if self.passwords else "")]
        if self.existing:
            lines.append(f"Already there, left as they are: {', '.join(self.existing)} (new passwords: workbench "
                         "annotate users reset-password NAME)")
        return lines


def add_roster(client, rows: list[dict], passwords: Path, workspace: str = DEFAULT_WORKSPACE) -> RosterResult:
    """An account for every roster row that has none; the generated passwords go to PASSWORDS (a CSV, 0600, never
    written over), which is written before any account is made, and each row as soon as its account exists."""
    import csv

    if passwords.exists():
        raise InputError(f"{passwords}: already there (passwords of an earlier roster?)",
                         hint="pass --passwords NEW-FILE; this file is never written over")
    known = {u["username"] for u in get_json(client, "/api/v1/users")["items"]}
    existing = [r["username"] for r in rows if r["username"] in known]
    created = []
    fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["username", "name", "role", "password"])
        for row in rows:
            if row["username"] in known:
                continue
            name_parts = row["name"].split(" ", 1)
            password = add_user(client, row["username"], row["role"], workspace, first_name=name_parts[0])
            if len(name_parts) > 1:
                _http(client).patch(f"/api/v1/users/{_user_id(client, row['username'])}",
                                    json={"last_name": name_parts[1]})
            writer.writerow([row["username"], row["name"], row["role"], password])
            f.flush()  # a roster stopped halfway still has the passwords of the accounts it made
            created.append(row["username"])
    return RosterResult(created, existing, passwords)


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
