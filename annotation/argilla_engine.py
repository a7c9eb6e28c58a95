"""A search engine for argilla-server that answers from the server's own SQL database.

This file runs *inside the argilla-server process* (the `.argilla-venv` environment), not in the workbench:
it imports only the standard library, argilla_server and what argilla_server itself depends on.

argilla-server 2.8 wants Elasticsearch or OpenSearch, which a student laptop without Docker cannot run. It picks
its engine by name from a registry (`SearchEngine.register`), so we register one more, `workbench-sql`:

- index calls (create/delete index, index records, responses, suggestions) are no-ops: the records, responses and
  suggestions are already in the server's database, which is what we read;
- search, filters, sorting, progress and metadata metrics are SQL queries over the records, responses and
  suggestions tables, with the same meaning as the Elasticsearch engine's queries: an annotator's page of pending
  records is one indexed query with a LIMIT, a metric one aggregate, so a request costs what it returns, not what
  the dataset holds (`bench/review_class.py` measures a class of 30 on 50k records).

It knows no workbench question (`annotation.questions`): responses are filtered and sorted by their stored values,
whatever Argilla question type holds them (a terms filter matches a value or any item of a list; a range filter and a
sort read numbers), so a new question kind needs nothing here.

The engine draws on connections of its own (`_sessions`), apart from the request handlers' pool; SQLite runs in WAL
mode with a busy timeout. An annotator's pending queue is in an order of their own (`_rotated`) and leaves out the
records that already have the dataset's `min_submitted` votes (a discard counts, as in the pull).

Limits (documented in the README): no vector similarity search; text search matches every query word as a
substring of the text as annotators see it (case-insensitive, no stemming; scored by the number of occurrences),
by a scan in SQL rather than a full-text index.

Run as a script: `python argilla_engine.py --host 127.0.0.1 --port 6900 [--owner NAME]` migrates the database,
creates the first user if asked, registers the engine and serves the app with uvicorn in this process (the
registry is per process, so the server must start here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import io
import os
import re
import time
from datetime import datetime
from typing import Any

from argilla_server.enums import MetadataPropertyType, RecordStatus, ResponseStatus, ResponseStatusFilter, SortOrder
from argilla_server.errors.future import UnprocessableEntityError
from argilla_server.models import Dataset, MetadataProperty, Question, Record, Response, Suggestion, User
from argilla_server.search_engine.base import (
    AndFilter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
)
from sqlalchemy import (
    Column,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Uuid,
    and_,
    case,
    cast,
    delete,
    event,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.engine import Engine

ENGINE_NAME = "workbench-sql"


@functools.lru_cache(maxsize=1)
def _sessions():
    """The engine's own connections, apart from the request handlers' pool: a handler holds one connection of that
    pool while it calls the engine, so an engine drawing from the same pool waits on itself once ~15 requests are in
    flight (`QueuePool limit of size 5 overflow 10 reached`, then 500s). SQLite: a connection per use (opening one
    costs microseconds; WAL lets readers run beside the one writer); PostgreSQL: a pool of its own."""
    from argilla_server.settings import settings
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.pool import NullPool

    if settings.database_is_sqlite:
        engine = create_async_engine(settings.database_url, poolclass=NullPool, **settings.database_engine_args)
    else:
        engine = create_async_engine(settings.database_url, pool_size=10, max_overflow=30, pool_pre_ping=True)
    return async_sessionmaker(bind=engine, expire_on_commit=False)


def _session():
    # Made late: argilla_server's settings are read from the environment the server was started with.
    return _sessions()()


def _is_sqlite() -> bool:
    from argilla_server.settings import settings

    return settings.database_is_sqlite


@event.listens_for(Engine, "connect")
def _sqlite_wal(dbapi_connection, connection_record):
    """SQLite in WAL mode with a busy timeout: readers never wait on the writer, and a writer waits its turn instead
    of failing with "database is locked"."""
    if _is_sqlite():
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if hasattr(value, "value") and not isinstance(value, (int, float, str)):
        return value.value  # enums
    return value



# --- the requests answered in SQL ---------------------------------------------------------------------------------
#
# What the UI sends (the pending queue of an annotator, filters on metadata, responses and suggestions, sorts, the
# metadata metrics) becomes one SQL query over indexed columns with a LIMIT, so it costs what the page costs, not
# what the dataset holds. A request SQL cannot express here (a vector query) is refused as before; nothing falls
# back to reading the dataset.


class _Json:
    """A JSON column's value at a path, in the database's own JSON functions (SQLite's json_*, PostgreSQL's #>>)."""

    def __init__(self, column, *keys: str):
        self.column, self.keys = column, keys
        self.sqlite = _is_sqlite()

    def _path(self) -> str:
        return "$" + "".join('."' + k.replace('"', '""') + '"' for k in self.keys)

    def node(self):
        """PostgreSQL: the JSON value at the path (`->` / `#>`)."""
        if not self.keys:
            return self.column
        return self.column[self.keys[0]] if len(self.keys) == 1 else self.column[tuple(self.keys)]

    def text(self):
        if self.sqlite:
            return cast(func.json_extract(self.column, self._path()), String)
        if not self.keys:
            return self.column.op("#>>")(literal_column("'{}'"))
        return self.node().as_string()

    def number(self):
        if self.sqlite:
            return func.json_extract(self.column, self._path())
        # a number, or NULL for anything else (a string, a list): as a sort or a range reads it
        return cast(func.substring(self.text(), r"^-?[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?$"), Float)

    def in_terms(self, values: list[str]):
        """The value, or any item of a list value, is one of VALUES (compared as strings, like a keyword field;
        a boolean as "true"/"false")."""
        wanted = sorted({str(v) for v in values} | {"1" for v in values if str(v) == "true"}
                        | {"0" for v in values if str(v) == "false"})
        if self.sqlite:
            items = func.json_each(self.column, self._path()).table_valued("value")
            return exists(select(literal(1)).select_from(items).where(cast(items.c.value, String).in_(wanted)))
        items = self.items()
        return exists(select(literal(1)).select_from(items).where(items.c.value.in_(wanted)))

    def items(self):
        """PostgreSQL: the value's items as text rows (a list's items, or the one value; none when missing)."""
        node = self.node()
        listed = case((func.json_typeof(node) == "array", node), else_=func.json_build_array(node))
        return func.json_array_elements_text(listed).table_valued("value")

    def in_range(self, ge, le):
        value = self.number()
        return and_(value.is_not(None), *([value >= float(ge)] if ge is not None else []),
                    *([value <= float(le)] if le is not None else []))


class _CannotSay(Exception):
    """A filter or sort this engine cannot express."""


def _record_column(name: str):
    column = getattr(Record, name, None)
    if column is None or name not in ("id", "external_id", "status", "inserted_at", "updated_at"):
        raise _CannotSay(f"record property {name!r}")
    return column


def _record_value(name: str, value):
    if name == "status":
        return RecordStatus(str(value))
    if name in ("inserted_at", "updated_at") and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value)
    return value


def _responses_of(scope: ResponseFilterScope):
    """The responses a response scope looks at: of the record, and of the scope's user when it names one."""
    where = [Response.record_id == Record.id]
    if scope.user is not None:
        where.append(Response.user_id == scope.user.id)
    return where


def _suggestion_of(dataset_id, question: str):
    return [Suggestion.record_id == Record.id, Suggestion.question_id == Question.id, Question.name == question,
            Question.dataset_id == dataset_id]


def _sql_filter(f, dataset):
    """A search engine filter as a SQL condition on Record."""
    if isinstance(f, AndFilter):
        return and_(true(), *(_sql_filter(inner, dataset) for inner in f.filters))
    scope = f.scope
    if isinstance(scope, MetadataFilterScope):
        value = _Json(Record.metadata_, scope.metadata_property)
        return value.in_terms(f.values) if isinstance(f, TermsFilter) else value.in_range(f.ge, f.le)
    if isinstance(scope, RecordFilterScope):
        column = _record_column(scope.property)
        if isinstance(f, TermsFilter):
            return column.in_([_record_value(scope.property, v) for v in f.values])
        return and_(true(), *([column >= _record_value(scope.property, f.ge)] if f.ge is not None else []),
                    *([column <= _record_value(scope.property, f.le)] if f.le is not None else []))
    if isinstance(scope, SuggestionFilterScope):
        where = _suggestion_of(dataset.id, scope.question)
        if scope.property in ("value", "score"):
            value = _Json(getattr(Suggestion, scope.property))
            where.append(value.in_terms(f.values) if isinstance(f, TermsFilter) else value.in_range(f.ge, f.le))
        elif scope.property in ("agent", "type") and isinstance(f, TermsFilter):
            where.append(cast(getattr(Suggestion, scope.property), String).in_([str(v) for v in f.values]))
        else:
            raise _CannotSay(f"suggestion property {scope.property!r}")
        return exists(select(literal(1)).select_from(Suggestion).join(Question, Question.id == Suggestion.question_id)
                      .where(*where))
    if isinstance(scope, ResponseFilterScope):
        where = _responses_of(scope)
        if scope.question:
            value = _Json(Response.values, scope.question, "value")
            where.append(value.in_terms(f.values) if isinstance(f, TermsFilter) else value.in_range(f.ge, f.le))
            return exists(select(literal(1)).select_from(Response).where(*where))
        if scope.property == "status" and isinstance(f, TermsFilter):
            wanted = {str(v) for v in f.values}
            statuses = [ResponseStatus(v) for v in wanted if v != ResponseStatusFilter.pending]
            conditions = []
            if statuses:
                conditions.append(exists(select(literal(1)).select_from(Response)
                                         .where(*where, Response.status.in_(statuses))))
            if ResponseStatusFilter.pending in wanted:
                conditions.append(_pending(scope, dataset))
            return or_(false(), *conditions)
        raise _CannotSay(f"response property {scope.property!r}")
    raise _CannotSay(f"filter {f}")


def _pending(scope: ResponseFilterScope, dataset):
    """Pending for a user: no response from them, and (an annotator's queue) the record still needs answers: fewer
    than the dataset's min_submitted votes, counting a discard as the pull does. Without a user: no response."""
    mine = not_(exists(select(literal(1)).select_from(Response).where(*_responses_of(scope))))
    needed = _min_submitted(dataset)
    if scope.user is None or needed is None:
        return mine
    votes = select(func.count()).select_from(Response).where(
        Response.record_id == Record.id,
        Response.status.in_([ResponseStatus.submitted, ResponseStatus.discarded])).scalar_subquery()
    return and_(mine, votes < needed)


def _min_submitted(dataset) -> int | None:
    distribution = getattr(dataset, "distribution", None) or {}
    value = distribution.get("min_submitted") if isinstance(distribution, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else None


def _sql_sort_key(order, dataset):
    """The value a sort orders by, as a SQL expression (missing values last either way, as in Elasticsearch)."""
    scope = order.scope
    if isinstance(scope, RecordFilterScope):
        return _record_column(scope.property)
    if isinstance(scope, MetadataFilterScope):
        return _Json(Record.metadata_, scope.metadata_property).number()
    if isinstance(scope, SuggestionFilterScope):
        if scope.property not in ("value", "score", "agent"):
            raise _CannotSay(f"sort on suggestion property {scope.property!r}")
        column = getattr(Suggestion, scope.property)
        key = column if scope.property == "agent" else _Json(column).number() if scope.property == "score" \
            else _Json(column).text()
        return (select(key).select_from(Suggestion).join(Question, Question.id == Suggestion.question_id)
                .where(*_suggestion_of(dataset.id, scope.question)).limit(1).scalar_subquery())
    if isinstance(scope, ResponseFilterScope) and scope.question:
        # the mean of the responses' numeric values (Elasticsearch's nested sort mode "avg")
        return (select(func.avg(_Json(Response.values, scope.question, "value").number())).select_from(Response)
                .where(*_responses_of(scope)).scalar_subquery())
    raise _CannotSay(f"sort on {scope}")


def _salt(user_id) -> int:
    return int(hashlib.sha1(str(user_id).encode()).hexdigest()[:8], 16)


async def _rotated(db, dataset_id, user_id, where: list, offset: int, limit: int) -> list:
    """An annotator's queue in an order of their own (Elasticsearch shuffles by a seed per user): the records in the
    order they were pushed, starting at a place drawn from the user id and going round. Students starting together
    start in different places, and each query walks the (dataset, inserted_at, id) index from there and stops after
    the page (`migrate` makes the index), instead of ordering every pending record."""
    order = (Record.inserted_at, Record.id)
    size = (await db.execute(select(func.count()).select_from(Record).where(Record.dataset_id == dataset_id)))\
        .scalar_one()
    if not size:
        return []
    start = (await db.execute(select(*order).where(Record.dataset_id == dataset_id).order_by(*order)
                              .offset(_salt(user_id) % size).limit(1))).one()
    wanted = offset + limit
    rows = (await db.execute(select(Record.id, literal(0)).where(*where, tuple_(*order) >= tuple_(*start))
                             .order_by(*order).limit(wanted))).all()
    if len(rows) < wanted:  # round to the beginning
        rows += (await db.execute(select(Record.id, literal(0)).where(*where, tuple_(*order) < tuple_(*start))
                                  .order_by(*order).limit(wanted - len(rows)))).all()
    return rows[offset:]


# The records an annotator's queue showed them are theirs for a while (a lease): no one else's queue shows them until
# they answer (the engine hears of every response) or the lease ends, so that students working at once do not answer
# the same record past its min_submitted. Leases live in the server's database (a table of the engine's own, made in
# `migrate`), not in a process: with `--workers N` every worker process sees every lease, and the claim is one
# INSERT ... ON CONFLICT whose RETURNING says which records this page got, so no two pages hold a record even when
# two workers answer two annotators at the same instant. Wall-clock seconds, as every worker reads the same clock.
LEASE_SECONDS = 120.0
_LEASES_METADATA = MetaData()
LEASES = Table(
    "workbench_leases", _LEASES_METADATA,
    Column("record_id", Uuid, primary_key=True),
    Column("dataset_id", Uuid, nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("until", Float, nullable=False),
    Index("workbench_leases_dataset", "dataset_id", "until"),
)


def _leased_to_others(dataset_id, user_id, now: float):
    """The ids of the dataset's records on another annotator's page now (a subquery)."""
    return select(LEASES.c.record_id).where(LEASES.c.dataset_id == dataset_id, LEASES.c.user_id != user_id,
                                            LEASES.c.until > now)


async def _claim(db, dataset_id, user_id, record_ids: list, now: float) -> set:
    """Lease RECORD_IDS to the user where no one else holds them now; returns the ids this page got."""
    if not record_ids:
        return set()
    if _is_sqlite():
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    until = now + LEASE_SECONDS
    statement = insert(LEASES).values([{"record_id": r, "dataset_id": dataset_id, "user_id": user_id, "until": until}
                                       for r in record_ids])
    statement = statement.on_conflict_do_update(
        index_elements=[LEASES.c.record_id],
        set_={"user_id": statement.excluded.user_id, "until": statement.excluded.until},
        where=or_(LEASES.c.until <= now, LEASES.c.user_id == statement.excluded.user_id),
    ).returning(LEASES.c.record_id)
    got = {row[0] for row in (await db.execute(statement)).all()}
    await db.execute(delete(LEASES).where(LEASES.c.dataset_id == dataset_id, LEASES.c.until <= now))  # ended ones
    await db.commit()
    return got


async def _release(record_id, user_id) -> None:
    """The user answered the record: its lease ends, and the record goes to whoever's queue it is pending in."""
    async with _session() as db:
        await db.execute(delete(LEASES).where(LEASES.c.record_id == record_id, LEASES.c.user_id == user_id))
        await db.commit()


METRICS_SECONDS = 60.0
_METRICS: dict[Any, tuple[tuple, float, Any]] = {}  # metadata property id -> (records' version, until, metrics)
_METRICS_LOCKS: dict[Any, asyncio.Lock] = {}


def _asks_pending(f) -> bool:
    """The filter holds "pending for this user": the request is an annotator's queue."""
    if isinstance(f, AndFilter):
        return any(_asks_pending(inner) for inner in f.filters)
    return (f is not None and isinstance(f.scope, ResponseFilterScope) and f.scope.property == "status"
            and f.scope.user is not None and ResponseStatusFilter.pending in {str(v) for v in f.values})


def _text_hits(query):
    """Records whose text holds every word of the query (as annotators see it: the fields are stored with & < >
    as entities, undone here), scored by how often: what the search box asks."""
    q = query if isinstance(query, str) else query.q
    field = None if isinstance(query, str) else query.field
    words = [w for w in re.findall(r"\w+", str(q).lower()) if w]
    if _is_sqlite():
        items = func.json_each(Record.fields).table_valued("key", "value")
        shown = select(func.group_concat(cast(items.c.value, String), " ")).select_from(items)
        if field:
            shown = shown.where(items.c.key == field)
    else:
        source = Record.fields.op("->>")(literal(field)) if field else cast(Record.fields, String)
        shown = select(source)
    shown = shown.scalar_subquery()
    for entity, character in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#x27;", "'"), ("&amp;", "&")):
        shown = func.replace(shown, entity, character)
    shown = func.lower(shown)
    conditions = [shown.contains(word, autoescape=True) for word in words]
    score = literal(0)
    for word in words:
        score = score + (func.length(shown) - func.length(func.replace(shown, word, ""))) / max(len(word), 1)
    return conditions, score


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
        _METRICS.clear()  # new or changed metadata (a push is rare next to the opens: forget them all)

    async def partial_record_update(self, record: Record, **update):
        pass

    async def delete_records(self, dataset: Dataset, records):
        pass

    async def update_record_response(self, response: Response):
        await _release(response.record_id, response.user_id)

    async def delete_record_response(self, response: Response):
        pass

    async def update_record_suggestion(self, suggestion: Suggestion):
        pass

    async def delete_record_suggestion(self, suggestion: Suggestion):
        pass

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        """Records done and pending, as the pull counts them: a record is done once it has the dataset's
        min_submitted votes, the Discard button's included (argilla-server's own record status counts submitted
        responses only, so the owner's bar said 61% where the pull had every record decided)."""
        if dataset.is_draft:
            return {}
        needed = _min_submitted(dataset)
        mine = Record.dataset_id == dataset.id
        async with _session() as db:
            total = (await db.execute(select(func.count()).select_from(Record).where(mine))).scalar_one()
            if needed is None:
                done_statement = select(func.count()).select_from(Record).where(
                    mine, Record.status == RecordStatus.completed)
            else:
                votes = (select(Response.record_id).join(Record, Record.id == Response.record_id)
                         .where(mine, Response.status.in_([ResponseStatus.submitted, ResponseStatus.discarded]))
                         .group_by(Response.record_id).having(func.count() >= needed).subquery())
                done_statement = select(func.count()).select_from(votes)
            done = (await db.execute(done_statement)).scalar_one()
        return {"total": total, "completed": done, "pending": total - done}

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
        where = [Record.dataset_id == dataset.id]
        try:
            if filter is not None:
                where.append(_sql_filter(filter, dataset))
            order = []
            for by in sort or []:
                key = _sql_sort_key(by, dataset)
                order.append((key.desc() if by.order == SortOrder.desc else key.asc()).nulls_last())
        except _CannotSay as e:
            raise UnprocessableEntityError(f"The workbench's SQL search engine cannot search by {e}") from None
        score = literal(0)
        if query is not None:
            conditions, score = _text_hits(query)
            where += conditions
            if not sort:
                order.append(score.desc())
        rotate = not order and user_id is not None
        order += [Record.inserted_at, Record.id]  # a stable order: pages never overlap
        queue = user_id is not None and _asks_pending(filter)
        now = time.time()
        if queue:
            where.append(Record.id.not_in(_leased_to_others(dataset.id, user_id, now)))  # on another one's page now
        async with _session() as db:
            total = (await db.execute(select(func.count()).select_from(Record).where(*where))).scalar_one()
            if rotate:
                rows = await _rotated(db, dataset.id, user_id, where, offset, limit)
            else:
                rows = (await db.execute(select(Record.id, score).where(*where).order_by(*order)
                                         .offset(offset).limit(limit))).all()
            if queue:
                # Another annotator's page (in this worker or another) may have taken some of these while this query
                # ran: they are left out, a shorter page, never a shared one. The read transaction ends first: SQLite
                # cannot turn a read into a write once another writer has committed (it would fail, not wait).
                await db.rollback()
                got = await _claim(db, dataset.id, user_id, [record_id for record_id, _ in rows], now)
                rows = [row for row in rows if row[0] in got]
        return SearchResponses(items=[SearchResponseItem(record_id=record_id, score=float(points or 0))
                                      for record_id, points in rows], total=total)

    async def similarity_search(self, dataset: Dataset, vector_settings, value=None, record=None, query=None,
                                filter=None, max_results: int = 100, order=None, threshold=None) -> SearchResponses:
        raise UnprocessableEntityError(
            "Vector similarity search is not available with the workbench's SQL search engine "
            "(use an Argilla server with Elasticsearch or OpenSearch for it)."
        )

    async def compute_metrics_for(self, metadata_property: MetadataProperty):
        """min/max or the terms' counts, by SQL aggregates over the dataset's records (the slider's range, the
        filter's list), the UI asks for each metadata property when a dataset opens: eight aggregates over every
        record per annotator, so a class opening the page at once would scan the dataset 240 times. They are kept
        (`_METRICS`) while the dataset's records are the same ones: same count, same newest record (two index reads),
        and for at most METRICS_SECONDS, since a worker process does not hear of another's metadata update."""
        mine = Record.dataset_id == metadata_property.dataset_id
        async with _session() as db:
            version = tuple((await db.execute(select(func.count(), func.max(Record.inserted_at)).where(mine))).one())
        # One computation at a time per property: a class opening the page at once waits for the first one's answer
        # instead of computing it 30 times side by side (36 s p95 to open a 50k dataset before).
        async with _METRICS_LOCKS.setdefault(metadata_property.id, asyncio.Lock()):
            kept = _METRICS.get(metadata_property.id)
            if kept and kept[0] == version and kept[1] > time.monotonic():
                return kept[2]
            metrics = await self._metrics(metadata_property)
            _METRICS[metadata_property.id] = (version, time.monotonic() + METRICS_SECONDS, metrics)
        return metrics

    async def _metrics(self, metadata_property: MetadataProperty):
        value = _Json(Record.metadata_, metadata_property.name)
        mine = Record.dataset_id == metadata_property.dataset_id
        async with _session() as db:
            if metadata_property.type == MetadataPropertyType.terms:  # a list value counts each of its items
                if _is_sqlite():
                    items = func.json_each(Record.metadata_, value._path()).table_valued("value")
                    term = cast(items.c.value, String)
                    statement = select(term, func.count()).select_from(Record).join(items, true()).where(mine)
                else:
                    items = value.items()
                    term = items.c.value
                    statement = select(term, func.count()).select_from(Record).join(items, true()).where(mine)
                rows = (await db.execute(statement.where(term.is_not(None)).group_by(term)
                                         .order_by(func.count().desc(), term))).all()
                return TermsMetrics(total=sum(n for _, n in rows),
                                    values=[TermsMetrics.TermCount(term=str(t), count=n) for t, n in rows])
            low, high = (await db.execute(select(func.min(value.number()), func.max(value.number()))
                                          .where(mine))).one()
        if metadata_property.type == MetadataPropertyType.integer:
            return IntegerMetadataMetrics(min=None if low is None else int(low),
                                          max=None if high is None else int(high))
        return FloatMetadataMetrics(min=low, max=high)


# --- one change to argilla-server's own search handler --------------------------------------------------------------
#
# For each record of a page, argilla-server 2.8 decides which metadata an annotator may see by asking the database,
# per metadata key, whether the user is a member of the workspace (about 80 queries for a page of 10), and assigns the
# filtered dict to the ORM record, which the next such query autoflushes as an UPDATE of the record (rolled back when
# the request ends, but holding SQLite's one write lock meanwhile, so every annotator's page waited on every submit).
# Measured on a 2k-record dataset: 81 membership queries and 10 UPDATEs per search. The replacement makes the same
# decisions with the membership asked once (kept MEMBERSHIP_SECONDS) and without a query between the assignments.

MEMBERSHIP_SECONDS = 10.0
_MEMBERS: dict[tuple, tuple[float, bool]] = {}  # (user id, workspace id) -> (until, member)


async def _is_member(user: User, workspace_id) -> bool:
    key = (user.id, workspace_id)
    kept = _MEMBERS.get(key)
    if kept and kept[0] > time.monotonic():
        return kept[1]
    member = await user.is_member(workspace_id)
    _MEMBERS[key] = (time.monotonic() + MEMBERSHIP_SECONDS, member)
    return member


async def _metadata_for_user(record: Record, user: User) -> dict[str, Any] | None:
    """argilla-server's `_filter_record_metadata_for_user`: a metadata property's value for the roles it allows
    (members only), metadata without a property for the workspace's admins; everything for an owner."""
    if record.metadata_ is None:
        return None
    if user.is_owner:
        return dict(record.metadata_)
    shown = {}
    for name, value in record.metadata_.items():
        metadata_property = record.dataset.metadata_property_by_name(name)
        allowed = (user.role in metadata_property.allowed_roles) if metadata_property else user.is_admin
        if allowed and await _is_member(user, record.dataset.workspace_id):
            shown[name] = value
    return shown


def _patch_search_handler() -> None:
    from argilla_server.api.handlers.v1.datasets import records as handlers

    if hasattr(handlers, "_filter_record_metadata_for_user"):  # argilla-server 2.8 (server-requirements.txt)
        handlers._filter_record_metadata_for_user = _metadata_for_user


# And one to its models: `Question.parsed_settings` and `MetadataProperty.parsed_settings` build a pydantic TypeAdapter
# (a schema for a union of settings types) at every call, which is per record and property when records are pushed
# and per question when a response is validated: 22% of the server's samples during a push (py-spy). The adapter of
# a type is the same every time, so it is made once.
_ADAPTERS: dict[int, Any] = {}


def _type_adapter(kind):
    from pydantic import TypeAdapter

    adapter = _ADAPTERS.get(id(kind))
    if adapter is None:
        adapter = _ADAPTERS[id(kind)] = TypeAdapter(kind)
    return adapter


def _patch_settings_parsing() -> None:
    from argilla_server.models import database

    if getattr(database, "TypeAdapter", None) is not None:  # argilla-server 2.8: used only by parsed_settings
        database.TypeAdapter = _type_adapter


# And one to its webhooks: every record pushed, response submitted and status changed builds a webhook event first
# (seven queries: the dataset with its workspace, fields, questions, metadata properties and vector settings) and only
# then asks whether any webhook is enabled. On a server without webhooks, as the workbench's, that was 14,000 of a
# 2,000-record push's 14,400 queries. The event is now built only when an enabled webhook listens for it.
def _only_when_listened(notify):
    async def notify_if_listened(db, event, *args, **kwargs):
        from argilla_server.contexts.webhooks import list_enabled_webhooks

        name = getattr(event, "value", event)
        if not any(name in webhook.events for webhook in await list_enabled_webhooks(db)):
            return []
        return await notify(db, event, *args, **kwargs)

    notify_if_listened.__wrapped__ = notify
    return notify_if_listened


def _patch_webhook_events() -> None:
    import importlib

    for module_name in ("argilla_server.webhooks.v1.records", "argilla_server.webhooks.v1.responses",
                        "argilla_server.webhooks.v1.datasets", "argilla_server.bulk.records_bulk",
                        "argilla_server.contexts.records", "argilla_server.contexts.datasets",
                        "argilla_server.contexts.distribution"):
        module = importlib.import_module(module_name)
        for name in ("notify_record_event", "notify_response_event", "notify_dataset_event",
                     "notify_record_event_v1", "notify_response_event_v1", "notify_dataset_event_v1"):
            notify = getattr(module, name, None)
            if notify is not None and not hasattr(notify, "__wrapped__"):
                setattr(module, name, _only_when_listened(notify))


_patch_search_handler()  # at import: in the serving process and in each worker (they import this file again)
_patch_settings_parsing()
_patch_webhook_events()


def migrate() -> None:
    """argilla-server's migrations, then the engine's own index: an annotator's queue walks a dataset's records in
    the order they were pushed (`_rotated`)."""
    from argilla_server.cli.database.migrate import migrate_db
    from argilla_server.database import sync_engine

    migrate_db(revision="head")
    with sync_engine.begin() as connection:
        connection.execute(text("CREATE INDEX IF NOT EXISTS workbench_records_queue "
                                "ON records (dataset_id, inserted_at, id)"))
    _LEASES_METADATA.create_all(sync_engine)  # the annotators' leases (`_claim`), shared by every worker


def create_owner(username: str, workspace: str) -> None:
    """The first user, an owner, with the password and API key from the environment (never on a command line)."""
    from argilla_server.cli.database.users.create import _create
    from argilla_server.models import UserRole

    # argilla-server prints the new user's API key; this output goes to the server log, where keys must not be.
    async def create() -> None:
        from argilla_server.database import async_engine

        await _create(first_name=username.title(), username=username, role=UserRole.owner,
                      password=os.environ["WORKBENCH_NEW_USER_PASSWORD"],
                      api_key=os.environ["WORKBENCH_NEW_USER_API_KEY"], workspace=[workspace])
        # The app's engine is shared: its pooled connections belong to this loop, which ends here, and the app's
        # loop could not use them ("Future attached to a different loop" on PostgreSQL).
        await async_engine.dispose()

    with contextlib.redirect_stdout(io.StringIO()) as said:
        asyncio.run(create())
    outcome = "created" if "successfully created" in said.getvalue() else "already existed"
    print(f"owner user {username!r} {outcome} (workspace {workspace!r}); its key is in credentials.json", flush=True)


WORKER_PING_SECONDS = 60.0


def _patient_supervisor() -> None:
    """uvicorn (0.32) kills and restarts a worker that does not answer its supervisor's ping within 5 s. A worker
    importing argilla-server (3 s alone) on a busy 2-core machine, or one validating a batch of 500 records, misses
    that: seen as a worker restarted every ten seconds during a push, each restart dropping the requests it held.
    A worker that is really hung is still replaced, after WORKER_PING_SECONDS."""
    from uvicorn.supervisors import multiprocess

    answers = multiprocess.Process.is_alive
    multiprocess.Process.is_alive = lambda self, timeout=WORKER_PING_SECONDS: answers(self, timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="argilla-server with the workbench's SQL search engine")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6900)
    parser.add_argument("--owner", help="create this owner user first (password and key from the environment)")
    parser.add_argument("--workspace", default="workbench", help="the owner's workspace")
    parser.add_argument("--workers", type=int, default=1, help="server processes (uvicorn workers)")
    args = parser.parse_args(argv)

    # One process does it all (migrations, the first user, the app): each argilla_server import costs ~3 s.
    migrate()
    if args.owner:
        create_owner(args.owner, args.workspace)
    import uvicorn

    # The engine is registered above, in this process: the app looks it up by ARGILLA_SEARCH_ENGINE per request.
    # Workers are spawned processes that import this file again (as __mp_main__), which registers it in each; they
    # share the database (the leases included) and nothing else.
    if args.workers > 1:
        _patient_supervisor()
    # Keep-alive 65 s, not uvicorn's 5: a browser reuses an idle connection for longer, and one the server closes as
    # the next request goes out is a dropped request ("Server disconnected", seen once in 5,000 under a class's load).
    uvicorn.run("argilla_server:app", host=args.host, port=args.port, log_level="warning", access_log=False,
                workers=args.workers, timeout_keep_alive=65)


if __name__ == "__main__":
    main()
