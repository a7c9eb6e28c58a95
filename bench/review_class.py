"""A class reviewing at once on one local Argilla server: the requests Argilla 2.8's UI sends, with errors, latency and
lost work measured.

A real argilla-server 2.8 (`annotation.server.serve`: SQLite, Redis, the workbench's SQL search engine) is started in a
temporary data dir, N generated records are pushed (`annotation.client.push`, timed: records/s) with the review
questions and `--min-submitted`, and one annotator user per student is created (`annotation.client.add_user`, logged
in with `user_token`). Then every annotator, concurrently (asyncio, one httpx.AsyncClient each, at most 6
connections like a browser), does what the UI does (the requests and bodies are those of the UI bundled in
argilla_server 2.8, static/_nuxt):

- open the dataset: GET /me; then together GET /datasets/{id}, /datasets/{id}/questions, /datasets/{id}/fields,
  /me/datasets/{id}/metadata-properties (the UI's; there is no GET /datasets/{id}/metadata-properties); then together
  GET /metadata-properties/{p}/metrics for every property, /me/datasets/{id}/metrics and /datasets/{id}/progress
  (there is no /me/datasets/{id}/progress in 2.8). "open" is the time of the whole sequence;
- its pending queue, 10 at a time: POST /me/datasets/{id}/records/search?include=responses&include=suggestions
  &offset=0&limit=10 with the UI's body for "pending": the response-status filter (no response from this user) and,
  as the 2.8 UI adds for pending, the record-status filter (record not yet completed); `--queue response-only` sends
  the first alone. The next page is searched at offset 0 again: what was answered has left the queue;
- for each record of the page: think 0.5-2 s (seeded), then POST /records/{id}/responses: Submit
  ({"decision": keep, "quality": 4}, "submitted") or, for the `--discarders` share of annotators, Discard ({},
  "discarded"); then together GET /datasets/{id}/progress and /me/datasets/{id}/metrics, as the UI refetches them.
  A submit that gets no answer or a 5xx is sent again (the student clicks again) up to 3 times.

The anchor, timed the same way during the load: the plain listing GET /datasets/{id}/records?limit=10 (no search
engine; owner's key, since annotators may not list), one request every 0.5-2 s; the table gives search p95 / listing
p95. `--kill`: the server is killed (-9, `annotation.server.kill`) at half time and started again with `serve`; the
annotators keep going with their tokens. After the run every record with responses is read back (GET
/datasets/{id}/records?include=responses, paginated) and every acknowledged (HTTP 2xx) submit must be there, from its
user with its status: the bench exits 1 when one is missing. Over-assigned: records with more submitted responses
than min_submitted.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/review_class.py --records 50000 --annotators 30 --minutes 5 [--kill]
        [--min-submitted 2] [--seed 0] [--database sqlite|postgresql://...] [--push-only] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAGE = 10  # the UI's page of records
BROWSER_CONNECTIONS = 6  # what a browser opens to one host
SUBMIT_TRIES = 3
KINDS = ("open", "me", "dataset", "questions", "fields", "metadata-properties", "metadata-metrics", "me-metrics",
         "progress", "search", "submit", "listing")


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


class Stats:
    """Latency of every answered request by kind, HTTP status counts, and requests that got no answer."""

    def __init__(self, start: float):
        self.start = start
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.dropped: dict[str, Counter] = defaultdict(Counter)  # kind -> exception name (timeouts included)
        self.failures: list[tuple[float, str, str]] = []  # (seconds since start, kind, status or exception)
        self.elapsed = 0.0

    def answered(self, kind: str, seconds: float, status: int) -> None:
        self.latency[kind].append(seconds)
        self.statuses[kind][str(status)] += 1
        if not 200 <= status < 300:
            self.failures.append((time.perf_counter() - self.start, kind, str(status)))

    def step_failed(self, kind: str) -> None:
        """A sequence (opening the dataset) of which one request failed: counted, not timed."""
        self.statuses[kind]["failed"] += 1

    def lost(self, kind: str, error: Exception) -> None:
        name = "timeout" if isinstance(error, httpx.TimeoutException) else type(error).__name__
        self.dropped[kind][name] += 1
        self.failures.append((time.perf_counter() - self.start, kind, name))

    async def request(self, client: httpx.AsyncClient, kind: str, method: str, url: str,
                      **kwargs) -> httpx.Response | None:
        """The response, or None when the connection dropped or timed out (counted either way)."""
        start = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError as e:
            self.lost(kind, e)
            return None
        self.answered(kind, time.perf_counter() - start, response.status_code)
        return response

    def rows(self) -> list[dict]:
        rows = []
        for kind in KINDS:
            statuses, dropped, times = self.statuses.get(kind, Counter()), self.dropped.get(kind, Counter()), \
                self.latency.get(kind, [])
            if not statuses and not dropped:
                continue
            ok = sum(n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300)
            rows.append({"kind": kind, "requests": sum(statuses.values()) + sum(dropped.values()), "ok": ok,
                         "http_errors": {s: n for s, n in sorted(statuses.items())
                                         if not (s.isdigit() and 200 <= int(s) < 300)},
                         "dropped": dict(dropped),
                         "p50_ms": _ms(quantile(times, 0.5)), "p95_ms": _ms(quantile(times, 0.95)),
                         "max_ms": _ms(max(times) if times else None)})
        return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def pending_query(queue: str) -> dict:
    filters = [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]}]
    if queue == "ui":
        filters.append({"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]})
    return {"query": {}, "filters": {"and": filters}}


class Run:
    """What the annotators share: the server's address, the dataset, the clock and what was acknowledged."""

    def __init__(self, api_url: str, dataset_id: str, args, stats: Stats, deadline: float):
        self.api_url, self.dataset_id, self.args, self.stats, self.deadline = api_url, dataset_id, args, stats, \
            deadline
        self.acknowledged: list[dict] = []  # {record_id, user_id, username, status}
        self.opens_failed = 0
        self.finished_queue = 0  # annotators whose pending queue came back empty
        self.query = pending_query(args.queue)

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))


async def open_dataset(run: Run, client: httpx.AsyncClient) -> bool:
    """The requests the UI sends on opening the dataset's annotation page; True when every one was answered 2xx."""
    d, s = run.dataset_id, run.stats
    start = time.perf_counter()
    ok = lambda r: r is not None and 200 <= r.status_code < 300  # noqa: E731
    me = await s.request(client, "me", "GET", "/api/v1/me")
    first = await asyncio.gather(
        s.request(client, "dataset", "GET", f"/api/v1/datasets/{d}"),
        s.request(client, "questions", "GET", f"/api/v1/datasets/{d}/questions"),
        s.request(client, "fields", "GET", f"/api/v1/datasets/{d}/fields"),
        s.request(client, "metadata-properties", "GET", f"/api/v1/me/datasets/{d}/metadata-properties"))
    properties = [p["id"] for p in first[3].json()["items"]] if ok(first[3]) else []
    second = await asyncio.gather(
        *[s.request(client, "metadata-metrics", "GET", f"/api/v1/metadata-properties/{p}/metrics")
          for p in properties],
        s.request(client, "me-metrics", "GET", f"/api/v1/me/datasets/{d}/metrics"),
        s.request(client, "progress", "GET", f"/api/v1/datasets/{d}/progress"))
    if all(ok(r) for r in (me, *first, *second)):
        s.answered("open", time.perf_counter() - start, 200)
        return True
    s.step_failed("open")
    run.opens_failed += 1
    return False


async def submit(run: Run, client: httpx.AsyncClient, record_id: str, discard: bool) -> dict | None:
    body = {"values": {}, "status": "discarded"} if discard else \
        {"values": {"decision": {"value": "keep"}, "quality": {"value": 4}}, "status": "submitted"}
    for attempt in range(SUBMIT_TRIES):
        response = await run.stats.request(client, "submit", "POST", f"/api/v1/records/{record_id}/responses",
                                           json=body)
        if response is not None and 200 <= response.status_code < 300:
            return response.json()
        if response is not None and response.status_code < 500:
            return None  # refused (e.g. 409/422: already answered): clicking again changes nothing
        if run.over():
            return None
        await asyncio.sleep(1.0 + attempt)
    return None


async def annotator(run: Run, index: int, user: dict) -> None:
    args = run.args
    rng = random.Random(f"{args.seed}:{index}")
    discarder = index < round(args.discarders * args.annotators)
    d = run.dataset_id
    limits = httpx.Limits(max_connections=BROWSER_CONNECTIONS, max_keepalive_connections=BROWSER_CONNECTIONS)
    async with httpx.AsyncClient(base_url=run.api_url, headers={"Authorization": f"Bearer {user['token']}"},
                                 timeout=args.timeout, limits=limits) as client:
        await run.sleep(rng.uniform(0, 2))  # the class opens the page within a couple of seconds
        while not run.over() and not await open_dataset(run, client):
            await run.sleep(2.0)  # the student reloads the page
        failures = 0
        while not run.over():
            response = await run.stats.request(
                client, "search", "POST", f"/api/v1/me/datasets/{d}/records/search",
                params=[("include", "responses"), ("include", "suggestions"), ("offset", 0), ("limit", PAGE)],
                json=run.query)
            if response is None or response.status_code != 200:
                failures += 1
                await run.sleep(min(2.0 * failures, 10.0))
                if failures % 3 == 0 and not run.over():
                    await open_dataset(run, client)  # the student reloads the page
                continue
            failures = 0
            items = response.json()["items"]
            if not items:
                run.finished_queue += 1
                return
            for item in items:
                await run.sleep(rng.uniform(0.5, 2.0))
                if run.over():
                    return
                record_id = item["record"]["id"]
                answer = await submit(run, client, record_id, discarder)
                if answer is None:
                    continue
                run.acknowledged.append({"record_id": record_id, "user_id": user["id"], "username": user["name"],
                                         "status": answer.get("status"), "response_id": answer.get("id")})
                await asyncio.gather(run.stats.request(client, "progress", "GET", f"/api/v1/datasets/{d}/progress"),
                                     run.stats.request(client, "me-metrics", "GET",
                                                       f"/api/v1/me/datasets/{d}/metrics"))


async def listing_anchor(run: Run, owner_key: str) -> None:
    """The plain listing (no search engine) timed alongside the load."""
    rng = random.Random(f"{run.args.seed}:listing")
    async with httpx.AsyncClient(base_url=run.api_url, headers={"X-Argilla-Api-Key": owner_key},
                                 timeout=run.args.timeout) as client:
        while not run.over():
            await run.stats.request(client, "listing", "GET", f"/api/v1/datasets/{run.dataset_id}/records",
                                    params={"limit": PAGE})
            await run.sleep(rng.uniform(0.5, 2.0))


async def kill_and_restart(run: Run, data_dir: Path, port: int, serve_kwargs: dict, at: float,
                           report: dict) -> None:
    from annotation import server

    await asyncio.sleep(at)
    report["killed_at_s"] = round(time.perf_counter() - run.stats.start, 1)
    start = time.perf_counter()
    server.kill(data_dir)
    await asyncio.to_thread(server.serve, data_dir, port=port, **serve_kwargs)
    report["down_s"] = round(time.perf_counter() - start, 1)
    report["restarted_at_s"] = round(time.perf_counter() - run.stats.start, 1)


async def class_run(api_url: str, dataset_id: str, users: list[dict], owner_key: str, args, data_dir: Path,
                    port: int, serve_kwargs: dict) -> tuple[Run, dict]:
    duration = 60 * args.minutes
    stats = Stats(time.perf_counter())
    run = Run(api_url, dataset_id, args, stats, time.monotonic() + duration)
    kill_report: dict = {}
    tasks = [asyncio.create_task(annotator(run, i, u)) for i, u in enumerate(users)]
    anchor = asyncio.create_task(listing_anchor(run, owner_key))
    killer = asyncio.create_task(kill_and_restart(run, data_dir, port, serve_kwargs, duration / 2, kill_report)) \
        if args.kill else None
    await asyncio.gather(*tasks)
    run.deadline = min(run.deadline, time.monotonic())  # everyone is done: stop the anchor too
    await anchor
    if killer is not None:
        if not killer.done():
            killer.cancel()  # the class finished its queue before half time
        try:
            await killer
        except asyncio.CancelledError:
            kill_report["skipped"] = "every pending queue was empty before half time"
    stats.elapsed = time.perf_counter() - stats.start
    return run, kill_report


def read_back(api_url: str, owner_key: str, dataset_id: str, timeout: float) -> dict[str, list[dict]]:
    """record id -> its responses, for every record of the dataset (owner's listing, paginated)."""
    responses: dict[str, list[dict]] = {}
    offset = 0
    with httpx.Client(base_url=api_url, headers={"X-Argilla-Api-Key": owner_key}, timeout=timeout) as client:
        while True:
            answer = client.get(f"/api/v1/datasets/{dataset_id}/records",
                                params={"include": "responses", "offset": offset, "limit": 1000})
            answer.raise_for_status()
            body = answer.json()
            for item in body["items"]:
                responses[item["id"]] = item.get("responses") or []
            offset += len(body["items"])
            if not body["items"] or offset >= (body.get("total") or 0):
                return responses


def verify(run: Run, responses: dict[str, list[dict]], min_submitted: int) -> dict:
    on_server = {(rid, r["user_id"]): r["status"] for rid, rs in responses.items() for r in rs}
    missing = [a for a in run.acknowledged if (a["record_id"], a["user_id"]) not in on_server]
    wrong_status = [a for a in run.acknowledged if (a["record_id"], a["user_id"]) in on_server
                    and on_server[(a["record_id"], a["user_id"])] != a["status"]]
    acknowledged_keys = {(a["record_id"], a["user_id"]) for a in run.acknowledged}
    submitted = Counter(rid for rid, rs in responses.items() for r in rs if r["status"] == "submitted")
    answered = Counter(rid for rid, rs in responses.items() for r in rs)
    return {
        "acknowledged": len(run.acknowledged),
        "acknowledged_distinct": len(acknowledged_keys),
        "responses_on_server": len(on_server),
        "missing": len(missing),
        "missing_examples": missing[:5],
        "wrong_status": len(wrong_status),
        "unacknowledged_on_server": len(set(on_server) - acknowledged_keys),  # committed, answer never came back
        "records_answered": len(answered),
        "records_completed": sum(1 for n in submitted.values() if n >= min_submitted),
        "over_assigned": sum(1 for n in submitted.values() if n > min_submitted),
        "over_assigned_any_status": sum(1 for n in answered.values() if n > min_submitted),
        "submitted_per_record": dict(sorted(Counter(submitted.values()).items())),
    }


def make_records(n: int):
    from workbench.core.records import Record

    return [Record(instruction=f"Question {i}: which programme fits a student who likes topic {i % 97}?",
                   response=f"Answer {i}: the programme with strand {i % 13} fits them best.",
                   category="open_qa", source="generated", scores={"toxicity_max": (i % 100) / 1000},
                   meta={"screen_route": "pass", "dedup_cluster_size": 1 + i % 4, "round": i % 5, "model": "tiny"})
            for i in range(n)]


def print_table(rows: list[dict]) -> None:
    def cell(v):
        return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

    print(f"\n{'request':<20} {'n':>7} {'2xx':>7} {'HTTP errors':<16} {'dropped/timeouts':<20} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for r in rows:
        errors = " ".join(f"{s}:{n}" for s, n in r["http_errors"].items()) or "-"
        dropped = " ".join(f"{s}:{n}" for s, n in r["dropped"].items()) or "-"
        print(f"{r['kind']:<20} {r['requests']:>7,} {r['ok']:>7,} {errors:<16} {dropped:<20} "
              f"{cell(r['p50_ms']):>8} {cell(r['p95_ms']):>8} {cell(r['max_ms']):>8}")


def database_kwargs(database: str) -> dict:
    """sqlite: the server's default (in its data dir); else a PostgreSQL URL for `annotation.server.serve`."""
    return {} if database == "sqlite" else {"database": database}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--annotators", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--database", default="sqlite",
                        help="sqlite (default, in the data dir), or a PostgreSQL URL (a fresh database)")
    parser.add_argument("--min-submitted", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--push-only", action="store_true", help="push and time the records, then stop")
    parser.add_argument("--kill", action="store_true", help="kill -9 the server at half time and restart it")
    parser.add_argument("--discarders", type=float, default=0.2, help="share of annotators who press Discard")
    parser.add_argument("--queue", choices=("ui", "response-only"), default="ui",
                        help="ui: the 2.8 UI's pending body (response and record status); response-only: the "
                             "response-status filter alone")
    parser.add_argument("--batch-size", type=int, default=500, help="push batch (argilla-server takes at most 500)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as timed out")
    parser.add_argument("--workers", type=int, default=1, help="server processes (annotate serve --workers)")
    parser.add_argument("--in-flight", type=int, default=1, help="push batches at once (annotate push --in-flight)")
    parser.add_argument("--redis-url", default=None, help="a Redis for the server (default: serve starts one)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    from annotation import client as review
    from annotation import server

    serve_kwargs = {"redis_url": args.redis_url, "workers": args.workers, **database_kwargs(args.database)}
    from workbench.core.urls import masked

    results: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    results["args"].update(database=masked(args.database), redis_url=args.redis_url and masked(args.redis_url))
    with tempfile.TemporaryDirectory(prefix="review-class-") as tmp:
        data_dir = Path(tmp) / "argilla"
        port = server.free_port()
        start = time.perf_counter()
        served = server.serve(data_dir, port=port, **serve_kwargs)
        print(f"server up in {time.perf_counter() - start:.1f} s ({served.redis}), database {masked(args.database)}")
        try:
            results.update(bench(args, review, served, data_dir, port, serve_kwargs))
        finally:
            server.stop(data_dir)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults: {args.json}")
    return 1 if results.get("verify", {}).get("missing") else 0


def bench(args, review, served, data_dir: Path, port: int, serve_kwargs: dict) -> dict:
    client = review.connect(data_dir=data_dir)
    records = make_records(args.records)
    name = f"class-{args.records}"
    start = time.perf_counter()  # the dataset first, timed apart: the push's rate is the records'
    review.ensure_dataset(client, name, min_submitted=args.min_submitted)
    create_s = time.perf_counter() - start
    start = time.perf_counter()
    tenth = max(1, args.records // 10)

    def progress(done: int, total: int) -> None:
        if done // tenth != (done - args.batch_size) // tenth or done == total:
            print(f"  pushed {done:,}/{total:,} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    pushed = review.push(records, name, client=client, min_submitted=args.min_submitted, batch_size=args.batch_size,
                         progress=progress if args.records >= 5000 else None, in_flight=args.in_flight)
    push_s = time.perf_counter() - start
    push = {"records": args.records, "seconds": round(push_s, 2), "records_per_s": round(args.records / push_s, 1),
            "batch_size": args.batch_size, "in_flight": args.in_flight, "on_server": pushed.on_server,
            "retries": pushed.retries,
            "dataset_create_s": round(create_s, 2)}
    print(f"push: {args.records:,} records in {push_s:.1f} s = {args.records / push_s:,.0f} records/s "
          f"(batches of {args.batch_size}, {pushed.on_server:,} on the server; dataset created before, in "
          f"{create_s:.1f} s)")
    if args.push_only:
        return {"push": push}

    dataset_id = str(review.get_dataset(client, name).id)
    users = []
    start = time.perf_counter()
    for i in range(args.annotators):
        username = f"student-{i:03d}"
        token = review.user_token(served.api_url, username, review.add_user(client, username))
        me = httpx.get(f"{served.api_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        me.raise_for_status()
        users.append({"name": username, "token": token, "id": me.json()["id"]})
    print(f"{args.annotators} annotators created and logged in in {time.perf_counter() - start:.1f} s; reviewing for "
          f"{args.minutes:g} min (min_submitted {args.min_submitted}, queue {args.queue}"
          f"{', kill -9 at half time' if args.kill else ''})")

    run, kill_report = asyncio.run(class_run(served.api_url, dataset_id, users, served.credentials.api_key, args,
                                             data_dir, port, serve_kwargs))
    responses = read_back(served.api_url, served.credentials.api_key, dataset_id, args.timeout)
    checked = verify(run, responses, args.min_submitted)

    rows = run.stats.rows()
    print_table(rows)
    by_kind = {r["kind"]: r for r in rows}
    search_p95 = (by_kind.get("search") or {}).get("p95_ms")
    listing_p95 = (by_kind.get("listing") or {}).get("p95_ms")
    ratio = round(search_p95 / listing_p95, 1) if search_p95 and listing_p95 else None
    elapsed = run.stats.elapsed
    submits = (by_kind.get("submit") or {}).get("ok", 0)
    summary = {
        "elapsed_s": round(elapsed, 1),
        "submits_acknowledged": len(run.acknowledged),
        "submits_per_minute": round(60 * len(run.acknowledged) / elapsed, 1) if elapsed else None,
        "submit_requests_2xx": submits,
        "http_errors": sum(sum(r["http_errors"].values()) for r in rows if r["kind"] != "open"),
        "dropped_or_timeouts": sum(sum(r["dropped"].values()) for r in rows if r["kind"] != "open"),
        "dataset_opens_failed": run.opens_failed,
        "annotators_with_empty_queue": run.finished_queue,
        "search_p95_over_listing_p95": ratio,
    }
    if args.kill:
        restarted = kill_report.get("restarted_at_s")
        summary["kill"] = {**kill_report, "failures_after_restart": None if restarted is None else sum(
            1 for t, _, _ in run.stats.failures if t > restarted + 1.0)}
    print(f"\nsubmits acknowledged: {len(run.acknowledged):,} in {elapsed:.0f} s "
          f"({summary['submits_per_minute']:,.0f}/min); HTTP errors {summary['http_errors']}, dropped/timeouts "
          f"{summary['dropped_or_timeouts']}, dataset opens failed {run.opens_failed}; "
          f"{run.finished_queue} annotators emptied their queue")
    print(f"search p95 / listing p95: {ratio if ratio is not None else '-'}x "
          f"({search_p95} ms / {listing_p95} ms; listing: GET /datasets/{{id}}/records?limit={PAGE}, "
          "no search engine)")
    print(f"records answered {checked['records_answered']:,}, completed (>= {args.min_submitted} submitted) "
          f"{checked['records_completed']:,}, over-assigned (> {args.min_submitted} submitted) "
          f"{checked['over_assigned']:,} (> {args.min_submitted} responses of any status: "
          f"{checked['over_assigned_any_status']:,}); submitted per record {checked['submitted_per_record']}")
    if args.kill:
        k = summary["kill"]
        if "down_s" in k:
            print(f"kill -9 at {k['killed_at_s']} s, serving again after {k['down_s']} s; failures more than 1 s after "
                  f"the restart: {k['failures_after_restart']}")
        else:
            print(f"kill: {k.get('skipped', 'did not happen')}")
    lost = checked["missing"]
    print(f"lost work: {lost} of {checked['acknowledged']:,} acknowledged submits missing on the server, "
          f"{checked['wrong_status']} with another status; {checked['unacknowledged_on_server']} responses on the "
          f"server whose answer never came back" + ("" if not lost else f"; e.g. {checked['missing_examples'][:2]}"))
    return {"push": push, "requests": rows, "summary": summary, "verify": checked}


if __name__ == "__main__":
    sys.exit(main())
