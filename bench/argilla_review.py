"""The local Argilla server with the workbench's SQL search engine: how fast push is, and what its searches cost.

A real argilla-server 2.8 (SQLite, Redis) is started in a temporary data dir; N generated records are pushed
(`annotation.client.push`, batches of 100) and a third of them get a submitted response from one annotator. Then, per
dataset size, the requests the review UI sends are timed (median of repeats):

- anchor: plain listing, `GET /api/v1/datasets/{id}/records?limit=50`, which never calls a search engine;
- an annotator's page: `POST /me/datasets/{id}/records/search`, unfiltered and filtered to their pending
  records, page of 50 (the /me endpoint itself does per-record work for annotators: the unfiltered row shows it);
- a metadata filter + sort, a text query, and the dataset progress.

The ratio search / listing says what answering from SQL in Python costs over what the server does anyway.

    .venv/bin/python bench/argilla_review.py [--sizes 1000,5000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(method: str, url: str, repeats: int, **kwargs) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = httpx.request(method, url, timeout=120, **kwargs)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
    return statistics.median(times)


def measure(size: int, client, served, token: str, repeats: int) -> None:
    from annotation import client as review
    from workbench.core.records import Record

    records = [Record(instruction=f"Question {i}: which programme fits a student who likes topic {i % 97}?",
                      response=f"Answer {i}: the programme with strand {i % 13} fits them best.",
                      category="open_qa", source="generated", scores={"toxicity_max": (i % 100) / 1000},
                      meta={"screen_route": "pass", "dedup_cluster_size": 1 + i % 4, "round": i % 5})
               for i in range(size)]
    name = f"bench-{size}"
    start = time.perf_counter()
    review.push(records, name, client=client)
    push_s = time.perf_counter() - start
    items = list(review.fetch(client, name))
    start = time.perf_counter()
    for item in items[::3]:
        review.submit_response(served.api_url, token, item["id"], {"decision": "keep", "quality": 4})
    respond_s = (time.perf_counter() - start) / len(items[::3])

    dataset = review.get_dataset(client, name).id
    api = f"{served.api_url}/api/v1"
    owner = {"X-Argilla-Api-Key": served.credentials.api_key}
    me = {"Authorization": f"Bearer {token}"}
    page = {"limit": 50}
    listing = timed("GET", f"{api}/datasets/{dataset}/records", repeats, params=page, headers=owner)
    pending = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                    "values": ["pending"]}]}}
    filtered = {"filters": {"and": [{"type": "range", "scope": {"entity": "metadata", "metadata_property":
                                                                "toxicity_max"}, "le": 0.05}]},
                "sort": [{"scope": {"entity": "metadata", "metadata_property": "round"}, "order": "desc"}]}
    rows = [
        ("annotator's page, no filter (50)", timed("POST", f"{api}/me/datasets/{dataset}/records/search", repeats,
                                                   json={}, params=page, headers=me)),
        ("annotator's pending queue (50)", timed("POST", f"{api}/me/datasets/{dataset}/records/search", repeats,
                                                 json=pending, params=page, headers=me)),
        ("metadata filter + sort (50)", timed("POST", f"{api}/datasets/{dataset}/records/search", repeats,
                                              json=filtered, params=page, headers=owner)),
        ("text query (50)", timed("POST", f"{api}/datasets/{dataset}/records/search", repeats,
                                  json={"query": {"text": {"q": "strand 7"}}}, params=page, headers=owner)),
        ("dataset progress", timed("GET", f"{api}/datasets/{dataset}/progress", repeats, headers=owner)),
    ]
    print(f"\n{size:,} records: push {push_s:.1f} s ({size / push_s:,.0f} records/s), "
          f"one response {1000 * respond_s:.0f} ms")
    print(f"  anchor: plain listing (50)       {1000 * listing:7.1f} ms")
    for label, seconds in rows:
        print(f"  {label:<32} {1000 * seconds:7.1f} ms  {seconds / listing:5.1f}x listing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from annotation import client as review
    from annotation import server

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "argilla"
        start = time.perf_counter()
        served = server.serve(data_dir, port=server.free_port())
        print(f"server up in {time.perf_counter() - start:.1f} s ({served.redis})")
        try:
            client = review.connect(data_dir=data_dir)
            password = review.add_user(client, "bench-annotator")
            token = review.user_token(served.api_url, "bench-annotator", password)
            for size in [int(s) for s in args.sizes.split(",")]:
                measure(size, client, served, token, args.repeats)
        finally:
            server.stop(data_dir)


if __name__ == "__main__":
    main()
