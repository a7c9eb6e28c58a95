"""A search engine for argilla-server that answers from the server's own SQL database.

This file runs *inside the argilla-server process* (the `.argilla-venv` environment), not in the workbench:
it imports only the standard library, argilla_server and what argilla_server itself depends on.

argilla-server 2.8 wants Elasticsearch or OpenSearch, which a student laptop without Docker cannot run. It picks
its engine by name from a registry (`SearchEngine.register`), so we register one more, `workbench-sql`:

- index calls (create/delete index, index records, responses, suggestions) are no-ops: the records, responses and
  suggestions are already in the server's database, which is what we read;
- search, filters, sorting, progress and metadata metrics load the dataset's records with their responses and
  suggestions and evaluate the request in Python, with the same meaning as the Elasticsearch engine's queries.

It knows no workbench question (`annotation.questions`): responses are filtered and sorted by their stored values,
whatever Argilla question type holds them (a terms filter matches a value or any item of a list; a range filter and a
sort read numbers), so a new question kind needs nothing here.

Limits (documented in the README): no vector similarity search; text search is case-insensitive matching of every
query word as a substring of the field (no stemming, no relevance ranking beyond a match count); every search reads
the whole dataset, which is fine for the tens of thousands of records a class reviews, not for millions.

Run as a script: `python argilla_engine.py --host 127.0.0.1 --port 6900 [--owner NAME]` migrates the database,
creates the first user if asked, registers the engine and serves the app with uvicorn in this process (the
registry is per process, so the server must start here).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import os
import re
from collections import Counter
from datetime import datetime
from typing import Any

from argilla_server.enums import MetadataPropertyType, ResponseStatusFilter, SortOrder
from argilla_server.errors.future import UnprocessableEntityError
from argilla_server.models import Dataset, MetadataProperty, Question, Record, Response, Suggestion, User
from argilla_server.search_engine.base import (
    AndFilter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import func, literal_column, select

ENGINE_NAME = "workbench-sql"


def _session():
    # Imported late: argilla_server.database builds its engines from the settings at import time.
    from argilla_server.database import AsyncSessionLocal

    return AsyncSessionLocal()


class _Answer:
    """One response, as plain values."""

    __slots__ = ("user_id", "status", "values")

    def __init__(self, user_id, status, values):
        self.user_id, self.status, self.values = user_id, status, values


class _Suggestion:
    __slots__ = ("value", "score", "agent", "type")

    def __init__(self, value, score, agent, type_):
        self.value, self.score, self.agent, self.type = value, score, agent, type_


class _Doc:
    """One record as the search engine sees it: plain values read with SQL (ORM objects cost ~10x more to build),
    and only the parts the request looks at."""

    __slots__ = ("id", "external_id", "status", "inserted_at", "updated_at", "fields", "metadata_", "answers",
                 "suggestions")

    def __init__(self, id, external_id, status, inserted_at, updated_at, fields=None, metadata_=None):
        self.id, self.external_id, self.status = id, external_id, status
        self.inserted_at, self.updated_at = inserted_at, updated_at
        self.fields, self.metadata_ = fields, metadata_
        self.answers: list[_Answer] = []
        self.suggestions: dict[str, _Suggestion] = {}

    def responses(self, user: User | None) -> list[_Answer]:
        if user is None:
            return self.answers
        return [r for r in self.answers if r.user_id == user.id]


def _needs(query, filter, sort) -> set[str]:
    """Which parts of the records a request reads: fields, metadata, responses, suggestions."""
    need = {"fields"} if query is not None else set()
    parts = {MetadataFilterScope: "metadata", SuggestionFilterScope: "suggestions", ResponseFilterScope: "responses"}

    def walk(f) -> None:
        if isinstance(f, AndFilter):
            for inner in f.filters:
                walk(inner)
        elif f is not None and type(f.scope) in parts:
            need.add(parts[type(f.scope)])

    walk(filter)
    for order in sort or []:
        if type(order.scope) in parts:
            need.add(parts[type(order.scope)])
    return need


def _matches_values(value: Any, values: list[str]) -> bool:
    # Terms filters compare as strings, like a keyword field; a list value (multi-label) matches if any item does.
    if value is None:
        return False
    items = value if isinstance(value, list) else [value]
    wanted = {str(v) for v in values}
    return any(str(_plain(item)) in wanted for item in items)


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):
        return value.value  # enums
    return value


def _in_range(value: Any, ge: Any, le: Any) -> bool:
    if value is None or isinstance(value, (list, dict)):
        return False
    if isinstance(value, datetime):
        value = value.timestamp()
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return (ge is None or value >= float(ge)) and (le is None or value <= float(le))


def _scope_value(doc: _Doc, scope) -> Any:
    """The value a filter or sort on `scope` looks at, for scopes other than responses."""
    if isinstance(scope, MetadataFilterScope):
        return (doc.metadata_ or {}).get(scope.metadata_property)
    if isinstance(scope, SuggestionFilterScope):
        suggestion = doc.suggestions.get(scope.question)
        return None if suggestion is None else getattr(suggestion, scope.property, None)
    if isinstance(scope, RecordFilterScope):
        value = getattr(doc, scope.property, None)
        return _plain(value) if value is not None else None
    raise UnprocessableEntityError(f"The workbench's SQL search engine cannot filter on {scope}")


def _response_values(doc: _Doc, scope: ResponseFilterScope) -> list:
    values = []
    for response in doc.responses(scope.user):
        answer = (response.values or {}).get(scope.question) if scope.question else None
        if scope.question and answer is not None:
            values.append(answer.get("value"))
        elif scope.property:
            values.append(_plain(getattr(response, scope.property, None)))
    return values


def _response_filter(doc: _Doc, filter) -> bool:
    scope: ResponseFilterScope = filter.scope
    if scope.question:
        values = _response_values(doc, scope)
        if isinstance(filter, TermsFilter):
            return any(_matches_values(v, filter.values) for v in values)
        return any(_in_range(v, filter.ge, filter.le) for v in values)
    if scope.property == "status" and isinstance(filter, TermsFilter):
        wanted = {str(v) for v in filter.values}
        responses = doc.responses(scope.user)
        # "pending" means: no response from this user (or, without a user, no response at all).
        if ResponseStatusFilter.pending in wanted and not responses:
            return True
        return any(str(_plain(r.status)) in wanted for r in responses)
    raise UnprocessableEntityError(f"The workbench's SQL search engine cannot filter on {scope}")


def _passes(doc: _Doc, filter) -> bool:
    if filter is None:
        return True
    if isinstance(filter, AndFilter):
        return all(_passes(doc, f) for f in filter.filters)
    if isinstance(filter.scope, ResponseFilterScope):
        return _response_filter(doc, filter)
    value = _scope_value(doc, filter.scope)
    if isinstance(filter, TermsFilter):
        return _matches_values(value, filter.values)
    if isinstance(filter, RangeFilter):
        return _in_range(value, filter.ge, filter.le)
    raise UnprocessableEntityError(f"The workbench's SQL search engine cannot apply the filter {filter}")


def _text_score(doc: _Doc, query: TextQuery | str | None) -> int | None:
    """Number of occurrences of the query words, or None when some word is missing."""
    if query is None:
        return 0
    q = query if isinstance(query, str) else query.q
    field = None if isinstance(query, str) else query.field
    words = [w for w in re.findall(r"\w+", str(q).lower()) if w]
    if not words:
        return 0
    fields = doc.fields or {}
    texts = [fields.get(field)] if field else list(fields.values())
    text = " ".join(str(t) for t in texts if t is not None).lower()
    counts = [text.count(w) for w in words]
    return sum(counts) if all(counts) else None


def _sort_value(doc: _Doc, order) -> Any:
    scope = order.scope
    if isinstance(scope, ResponseFilterScope):
        numbers = [v for v in _response_values(doc, scope) if isinstance(v, (int, float))]
        return sum(numbers) / len(numbers) if numbers else None  # Elasticsearch's nested sort mode "avg"
    value = _scope_value(doc, scope)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def _compare(a: _Doc, b: _Doc, sort: list) -> int:
    for order in sort:
        va, vb = _sort_value(a, order), _sort_value(b, order)
        if va is None or vb is None:
            if va is None and vb is None:
                continue
            return 1 if va is None else -1  # missing values last in both directions, as in Elasticsearch
        if va == vb:
            continue
        try:
            result = -1 if va < vb else 1
        except TypeError:
            result = -1 if str(va) < str(vb) else 1
        return -result if order.order == SortOrder.desc else result
    return 0


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLSearchEngine(SearchEngine):
    @classmethod
    async def new_instance(cls) -> SQLSearchEngine:
        return cls()

    async def close(self):
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME, "backend": "argilla-server database"}

    # The records already live in the database we search: nothing to index.
    async def create_index(self, dataset: Dataset):
        pass

    async def delete_index(self, dataset: Dataset):
        pass

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty):
        pass

    async def configure_index_vectors(self, vector_settings):
        pass

    async def index_records(self, dataset: Dataset, records):
        pass

    async def partial_record_update(self, record: Record, **update):
        pass

    async def delete_records(self, dataset: Dataset, records):
        pass

    async def update_record_response(self, response: Response):
        pass

    async def delete_record_response(self, response: Response):
        pass

    async def update_record_suggestion(self, suggestion: Suggestion):
        pass

    async def delete_record_suggestion(self, suggestion: Suggestion):
        pass

    async def _docs(self, dataset_id, need: set[str]) -> list[_Doc]:
        columns = [Record.id, Record.external_id, Record.status, Record.inserted_at, Record.updated_at]
        columns += [Record.fields] if "fields" in need else [literal_column("NULL")]
        columns += [Record.metadata_] if "metadata" in need else []
        async with _session() as db:
            rows = await db.execute(select(*columns).where(Record.dataset_id == dataset_id)
                                    .order_by(Record.inserted_at, Record.id))
            docs = {row[0]: _Doc(*row) for row in rows.all()}
            if "responses" in need:
                rows = await db.execute(
                    select(Response.record_id, Response.user_id, Response.status, Response.values)
                    .join(Record, Record.id == Response.record_id).where(Record.dataset_id == dataset_id)
                    .order_by(Response.inserted_at))
                for record_id, *answer in rows.all():
                    docs[record_id].answers.append(_Answer(*answer))
            if "suggestions" in need:
                rows = await db.execute(
                    select(Suggestion.record_id, Question.name, Suggestion.value, Suggestion.score, Suggestion.agent,
                           Suggestion.type)
                    .join(Question, Question.id == Suggestion.question_id).where(Question.dataset_id == dataset_id))
                for record_id, name, *suggestion in rows.all():
                    docs[record_id].suggestions[name] = _Suggestion(*suggestion)
        return list(docs.values())

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        async with _session() as db:
            rows = (
                await db.execute(
                    select(Record.status, func.count()).where(Record.dataset_id == dataset.id).group_by(Record.status)
                )
            ).all()
        counts = {str(_plain(status)): n for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        async with _session() as db:
            rows = (
                await db.execute(
                    select(Response.status, func.count())
                    .join(Record, Record.id == Response.record_id)
                    .where(Record.dataset_id == dataset.id, Response.user_id == user.id)
                    .group_by(Response.status)
                )
            ).all()
        counts = {str(_plain(status)): n for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def search(self, dataset: Dataset, query=None, filter=None, sort=None, offset: int = 0, limit: int = 100,
                     user_id=None) -> SearchResponses:
        hits = []
        for doc in await self._docs(dataset.id, _needs(query, filter, sort)):
            score = _text_score(doc, query)
            if score is not None and _passes(doc, filter):
                hits.append((doc, score))
        if sort:
            hits.sort(key=functools.cmp_to_key(lambda x, y: _compare(x[0], y[0], sort)))
        elif query is not None:
            hits.sort(key=lambda hit: -hit[1])
        elif user_id is not None:
            # Elasticsearch shuffles records per user (seeded by the user id) so that annotators sharing a dataset
            # start in different places; a hash of (user, record) does the same deterministically.
            hits.sort(key=lambda hit: hashlib.sha1(f"{user_id}:{hit[0].id}".encode()).digest())
        page = hits[offset : offset + limit]
        return SearchResponses(
            items=[SearchResponseItem(record_id=doc.id, score=float(score)) for doc, score in page],
            total=len(hits),
        )

    async def similarity_search(self, dataset: Dataset, vector_settings, value=None, record=None, query=None,
                                filter=None, max_results: int = 100, order=None, threshold=None) -> SearchResponses:
        raise UnprocessableEntityError(
            "Vector similarity search is not available with the workbench's SQL search engine "
            "(use an Argilla server with Elasticsearch or OpenSearch for it)."
        )

    async def compute_metrics_for(self, metadata_property: MetadataProperty):
        values = []
        for doc in await self._docs(metadata_property.dataset_id, {"metadata"}):
            value = (doc.metadata_ or {}).get(metadata_property.name)
            if value is None:
                continue
            values.extend(value if isinstance(value, list) else [value])
        if metadata_property.type == MetadataPropertyType.terms:
            counts = Counter(str(_plain(v)) for v in values)
            return TermsMetrics(
                total=sum(counts.values()),
                values=[TermsMetrics.TermCount(term=t, count=n) for t, n in counts.most_common()],
            )
        numbers = [v for v in values if isinstance(v, (int, float))]
        cls = IntegerMetadataMetrics if metadata_property.type == MetadataPropertyType.integer else FloatMetadataMetrics
        return cls(min=min(numbers) if numbers else None, max=max(numbers) if numbers else None)


def migrate() -> None:
    from argilla_server.cli.database.migrate import migrate_db

    migrate_db(revision="head")


def create_owner(username: str, workspace: str) -> None:
    """The first user, an owner, with the password and API key from the environment (never on a command line)."""
    import asyncio

    from argilla_server.cli.database.users.create import _create
    from argilla_server.models import UserRole

    # argilla-server prints the new user's API key; this output goes to the server log, where keys must not be.
    with contextlib.redirect_stdout(io.StringIO()) as said:
        asyncio.run(_create(first_name=username.title(), username=username, role=UserRole.owner,
                            password=os.environ["WORKBENCH_NEW_USER_PASSWORD"],
                            api_key=os.environ["WORKBENCH_NEW_USER_API_KEY"], workspace=[workspace]))
    outcome = "created" if "successfully created" in said.getvalue() else "already existed"
    print(f"owner user {username!r} {outcome} (workspace {workspace!r}); its key is in credentials.json", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="argilla-server with the workbench's SQL search engine")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6900)
    parser.add_argument("--owner", help="create this owner user first (password and key from the environment)")
    parser.add_argument("--workspace", default="workbench", help="the owner's workspace")
    args = parser.parse_args(argv)

    # One process does it all (migrations, the first user, the app): each argilla_server import costs ~3 s.
    migrate()
    if args.owner:
        create_owner(args.owner, args.workspace)
    import uvicorn

    # The engine is registered above, in this process: the app looks it up by ARGILLA_SEARCH_ENGINE per request.
    uvicorn.run("argilla_server:app", host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
