"""The command line as people use it: help, the data commands, the stage commands on files, the demo."""

import json

import pytest

from workbench.cli import app


def all_commands(group=None, prefix=()):
    import typer.main

    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from all_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_help_lists_the_commands(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("data", "models", "demo"):
        assert name in result.output


@pytest.mark.parametrize("command", list(all_commands()), ids=" ".join)
def test_every_command_has_help_with_an_example(command, invoke):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_import_writes_records_and_quarantines_bad_rows(tmp_path, fixtures, invoke):
    out = tmp_path / "dolly.jsonl"
    result = invoke("data", "import", fixtures / "dolly.jsonl", "-o", out)
    assert result.exit_code == 0, result.output
    assert "Imported 6 records (dolly)" in result.output
    assert "2 bad line(s) quarantined to" in result.output
    assert len(out.read_text().splitlines()) == 6
    quarantine = [json.loads(line) for line in (tmp_path / "dolly.quarantine.jsonl").read_text().splitlines()]
    assert [(q["line"], q["field"]) for q in quarantine] == [(5, "-"), (7, "instruction")]


def test_import_strict_exits_1(tmp_path, fixtures, invoke):
    result = invoke("data", "import", fixtures / "dolly.jsonl", "-o", tmp_path / "o.jsonl", "--strict")
    assert result.exit_code == 1
    assert (tmp_path / "o.jsonl").exists()  # the good records are still written


def test_import_oasst_with_lang_and_map_options(tmp_path, fixtures, invoke):
    result = invoke("data", "import", fixtures / "oasst1_messages.jsonl", "--lang", "en", "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 0 and "Imported 2 records (oasst1)" in result.output
    assert "left out 1: oasst1: language not en" in result.output
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"q": "Q?", "a": "A."}\n')
    result = invoke("data", "import", qa, "--map", "instruction=q,response=a", "-o", tmp_path / "m.jsonl")
    assert result.exit_code == 0 and "Imported 1 records (jsonl)" in result.output


def test_errors_are_one_line_with_exit_1(tmp_path, invoke):
    result = invoke("data", "import", tmp_path / "missing.jsonl", "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'missing.jsonl'}: no such file or folder"
    result = invoke("data", "import", "org/some-dataset", "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 1 and "Hint: download it where the hub is reachable" in result.output
    assert "Traceback" not in result.output


def test_validate_prints_file_line_field_reason_and_exits_1(tmp_path, fixtures, invoke):
    bad = fixtures / "bad"
    result = invoke("data", "validate", bad / "invalid_json.jsonl", bad / "unknown_category.jsonl",
                    "--quarantine", tmp_path / "q.jsonl")
    assert result.exit_code == 1
    assert f"{bad / 'invalid_json.jsonl'}:2: -: invalid JSON" in result.output
    assert f"{bad / 'unknown_category.jsonl'}:2: category: unknown category 'brainstroming'" in result.output
    assert "2 valid record(s), 2 problem(s) in 2 file(s)" in result.output
    assert len((tmp_path / "q.jsonl").read_text().splitlines()) == 2


def test_validate_good_files_exit_0_and_an_empty_one_1_unless_allowed(fixtures, invoke):
    files = (fixtures / "good_records.jsonl", fixtures / "bad" / "empty.jsonl", fixtures / "bad" / "bom.jsonl")
    result = invoke("data", "validate", *files)
    assert result.exit_code == 1 and "3 valid record(s), 0 problem(s)" in result.output
    assert f"{files[1]}: an empty file, no record in it" in result.output
    allowed = invoke("data", "validate", *files, "--allow-empty")
    assert allowed.exit_code == 0, allowed.output


def test_validate_size_limit_flag(fixtures, invoke):
    result = invoke("data", "validate", fixtures / "good_records.jsonl", "--max-field-bytes", "5")
    assert result.exit_code == 1 and "over the limit of 5" in result.output


def test_stats_json_and_tokens(tmp_path, tiny_falcon, invoke):
    from workbench.core.catalog import SEED_TASKS

    result = invoke("data", "stats", SEED_TASKS, "--json", "--tokenizer", tiny_falcon)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["records"] >= 60 and stats["tokens"]["response"]["max"] > 0
    assert stats["dolly_shares"]["open_qa"] == pytest.approx(3742 / 15011)


def test_stats_table_quarantines_bad_lines(tmp_path, invoke):
    bad = tmp_path / "mixed.jsonl"
    bad.write_text('{"instruction": "ok", "category": "open_qa"}\n{oops\n')
    result = invoke("data", "stats", bad)
    assert result.exit_code == 0
    assert "Dolly-15k share" in result.output and "1 bad line(s) quarantined to" in result.output
    assert (tmp_path / "mixed.quarantine.jsonl").exists()


def test_models_tiny_and_check_8bit(tmp_path, invoke):
    result = invoke("models", "tiny", tmp_path / "m", "--arch", "llama", "--hidden", "64", "--heads", "2")
    assert result.exit_code == 0, result.output
    assert "Built a llama model" in result.output
    result = invoke("models", "check", tmp_path / "m", "--quant", "8bit", "--prompt", "Fees")
    assert result.exit_code == 0, result.output
    assert "quantization 8bit (14 layers)" in result.output


def test_models_tiny_rejects_bad_shapes(tmp_path, invoke):
    result = invoke("models", "tiny", tmp_path / "m", "--hidden", "100", "--heads", "3")
    assert result.exit_code == 1 and "divisible" in result.output


@pytest.mark.slow
@pytest.mark.server
def test_demo_runs_then_skips_unchanged_stages(tmp_path, invoke):
    result = invoke("demo", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    stages = ("seeds", "catalog", "tiny-model", "instructions", "instances", "from-docs", "dedup", "screen", "review",
              "holdout", "contamination", "finetune", "eval-base", "eval-instruct", "eval-finetuned", "report")
    for stage in stages:
        assert (tmp_path / "runs" / "demo" / stage / "DONE").exists()
    assert "Seed tasks: 64 records" in result.output
    # The review stage ran a real local Argilla server, three demo reviewers and a pull, then stopped the server.
    review = tmp_path / "runs" / "demo" / "review"
    counts = json.loads((review / "manifest.json").read_text())["counts"]
    screened = json.loads((tmp_path / "runs" / "demo" / "screen" / "manifest.json").read_text())["counts"]["out"]
    assert counts["pushed"] == screened > 0 and counts["pending"] == 0
    assert counts["curated"] + counts["disputed"] + counts["discarded"] == screened
    curated = [json.loads(line) for line in (review / "records.jsonl").read_text().splitlines()]
    users = set(curated[0]["lineage"][-1]["detail"]["users"].values())
    assert users == {"demo-reviewer-1", "demo-reviewer-2", "demo-reviewer-3"}
    assert not (review / "argilla" / "server.json").exists()
    key = json.loads((review / "argilla" / "credentials.json").read_text())["api_key"]
    assert all(key not in path.read_text() for path in (tmp_path / "runs" / "demo").rglob("*.json*")
               if path.name != "credentials.json")
    exported = [json.loads(line) for line in (review / "export.jsonl").read_text().splitlines()]
    assert len(exported) == screened and all(len(row["responses"]) == 3 for row in exported)
    # The finetune stage trained an adapter on the curated set.
    adapter = tmp_path / "runs" / "demo" / "finetune" / "adapter"
    tuned = json.loads((adapter / "manifest.json").read_text())
    assert tuned["records"] == counts["curated"] and tuned["steps"] > 0 and (adapter / "adapter_config.json").exists()
    assert tuned["train_examples"] + tuned["eval_examples"] + len(tuned["dropped_too_long"]) == counts["curated"]
    made = json.loads((tmp_path / "runs" / "demo" / "instructions" / "manifest.json").read_text())
    assert made["counts"]["kept"] > 0 and made["counts"]["completion_tokens"] > 0
    grounded = json.loads((tmp_path / "runs" / "demo" / "from-docs" / "manifest.json").read_text())
    assert grounded["counts"]["kept"] + grounded["counts"]["rejected"] > 0
    # Base and finetuned were evaluated on the two suites and compared; the adapter's data was checked.
    report = tmp_path / "runs" / "demo" / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["models"]) == {"base", "instruct", "finetuned"}
    # The demo learns: the finetuned tiny base answers the course-advisor suite better than its base (F1), with the
    # curated set checked clean against the suites before finetuning; the report's headline says how sure that is.
    f1 = summary["differences"]["finetuned_vs_base"]["course_advisor"]["f1"]
    assert f1["diff"] > 0, f1
    page = (report / "report.html").read_text()
    headline = page[page.index("<section id='headline'>"):page.index("</section>")]
    headline = headline.replace("<bdi>", "").replace("</bdi>", "")  # names from data are isolated in the page
    said = (f"<b>finetuned</b> beats <b>base</b> on course_advisor f1 by {f1['diff']:+.3f}" if f1["ci_low"] > 0 else
            f"No measurable difference between <b>finetuned</b> and <b>base</b> on course_advisor f1: "
            f"{f1['diff']:+.3f}")
    assert said in headline and "Contamination: none of 174 eval items found in the training data" in headline
    gate = json.loads((tmp_path / "runs" / "demo" / "contamination" / "manifest.json").read_text())["counts"]
    assert gate == {"items_checked": 174, "contaminated": 0}
    check = summary["contamination"]["finetuned"]["course_advisor"]
    assert check["checked"] and check["items_checked"] == 91
    assert "data:image/png;base64," in (report / "report.html").read_text()
    assert "Report: " in result.output and "| f1 |" in result.output
    # trace: a curated record's whole life, from generation to the adapter that trained on it.
    traced = invoke("trace", curated[0]["id"][:10], "--run", tmp_path / "runs" / "demo", "--json")
    assert traced.exit_code == 0, traced.output
    life = json.loads(traced.output)
    # the last stage that kept it: holdout, the curated set without the suites' questions, which finetuning read
    assert life["id"] == curated[0]["id"] and life["status"] == "kept through holdout"
    events = [e["stage"] for e in life["record"]["lineage"]]
    assert events[0] in ("generate", "from-docs") and {"dedup", "screen", "review"} <= set(events)
    assert [a["used"] for a in life["adapters"]] == ["in the training file"] and life["contaminated"] == []
    verdicts = {(v["stage"], v["action"], v["reason"]) for v in life["verdicts"]}
    assert verdicts & {("review", "keep", "kept by review"), ("review", "edit", "corrected by review")}
    assert "Timeline:" in invoke("trace", curated[0]["id"], "--run", tmp_path / "runs" / "demo").output
    again = invoke("demo", "--runs-dir", tmp_path / "runs", "--keep-server")
    assert again.output.count("skipped (unchanged)") == len(stages)
    assert "Argilla (kept running): http://127.0.0.1:" in again.output
    assert (review / "argilla" / "server.json").exists()
    assert invoke("annotate", "stop", "--data-dir", review / "argilla").exit_code == 0
    assert not (review / "argilla" / "server.json").exists()


def test_generate_filter_command(tmp_path, invoke):
    candidates = tmp_path / "c.jsonl"
    candidates.write_text("\n".join(json.dumps({"instruction": t}) for t in [
        "Suggest three ways to meet other students in the first week",
        "Suggest three ways to meet other students in the first month",
        "Draw the campus", "Explain how the semester fee is used by the university"]) + "\n")
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"instruction": "Explain how the semester fee is used by the university."}) + "\n")
    result = invoke("generate", "filter", candidates, "--pool", pool, "-o", tmp_path / "kept.jsonl")
    assert result.exit_code == 0, result.output
    assert "Kept 1 of 4 records" in result.output and "3 rejected" in result.output
    assert "ROUGE-L > 0.7 against the pool" in result.output and "too short (<= 3 words)" in result.output
    rules = tmp_path / "rules.yaml"
    rules.write_text("preset: none\n")
    result = invoke("generate", "filter", candidates, "--rules", rules, "-o", tmp_path / "all.jsonl")
    assert "Kept 4 of 4 records" in result.output


def test_generate_instructions_and_from_docs_commands(tiny_generator, tmp_path, invoke):
    result = invoke("generate", "instructions", "--model", tiny_generator, "--num", "5", "--rounds", "1",
                    "--max-new-tokens", "120", "--quota", "brainstorming=1", "-o", tmp_path / "i.jsonl")
    assert result.exit_code == 0, result.output
    assert "rejected in" in result.output and "Tokens:" in result.output
    assert (tmp_path / "i.rejected.jsonl").exists() and (tmp_path / "i.state.json").exists()
    result = invoke("generate", "instructions", "--model", tiny_generator, "--quota", "brainstroming=1",
                    "-o", tmp_path / "j.jsonl")
    assert result.exit_code == 1 and "did you mean 'brainstorming'" in result.output
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fees.md").write_text("# Fees\nThe semester fee is 980 EUR for home students.\n")
    result = invoke("generate", "from-docs", "--docs", docs, "--model", tiny_generator, "--num", "2",
                    "-o", tmp_path / "qa.jsonl")
    # The untrained generator grounds no answer in the document: nothing kept is a failure that says why...
    assert result.exit_code == 1 and "none kept" in result.output and "--allow-empty" in result.output
    assert str(tmp_path / "qa.rejected.jsonl") in result.output.replace("\n", "")
    result = invoke("generate", "from-docs", "--docs", docs, "--model", tiny_generator, "--num", "2",
                    "-o", tmp_path / "qa.jsonl", "--allow-empty", "--force")
    assert result.exit_code == 0 and "Kept 0" in result.output, result.output  # ... unless asked for


def test_dedup_command(tmp_path, invoke):
    base = "students of the nursing programme receive a training allowance during every practice placement"
    rows = [{"instruction": base}, {"instruction": base.replace("every", "each")},
            {"instruction": "what does the business information systems degree cost for international students"}]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("dedup", path, "--threshold", "0.5", "-o", tmp_path / "u.jsonl",
                    "--clusters", tmp_path / "cl.jsonl")
    assert result.exit_code == 0, result.output
    assert "Kept 2 of 3 records" in result.output and "1  drop: near-duplicate" in result.output
    [line] = [json.loads(x) for x in (tmp_path / "cl.jsonl").read_text().splitlines()]
    assert set(line) == {"id", "duplicate_of", "linked_to", "similarity"} and line["similarity"] >= 0.5
    # Beside -o: the removed records with why, the ledger's events, the manifest (config, inputs, counts, reasons).
    [removed] = [json.loads(x) for x in (tmp_path / "u.rejected.jsonl").read_text().splitlines()]
    [event] = [json.loads(x) for x in (tmp_path / "u.ledger.jsonl").read_text().splitlines()]
    assert event == {"record_id": removed["id"], "stage": "dedup", "action": "drop", "reason": "near-duplicate"}
    manifest = json.loads((tmp_path / "u.manifest.json").read_text())
    assert manifest["config"]["threshold"] == 0.5 and manifest["ledger"] == {"drop: near-duplicate": 1}
    assert manifest["inputs"][0]["path"] == str(path) and f"Manifest: {tmp_path / 'u.manifest.json'}" in result.output
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps(rows[2]) + "\n")
    result = invoke("dedup", path, "--against", seeds, "-o", tmp_path / "v.jsonl")
    assert "near-duplicate of a reference" in result.output
    result = invoke("dedup", path, "--dry-run", "--thresholds", "0.5,0.9")
    assert result.exit_code == 0 and "Dry run" in result.output and not (tmp_path / "w.jsonl").exists()
    result = invoke("dedup", path)
    assert result.exit_code != 0 and "-o/--output is required" in result.output
    result = invoke("dedup", path, "-o", path)
    assert result.exit_code == 1 and "is an input of this dedup run and would be written over" in result.output
    assert len(path.read_text().splitlines()) == 3


@pytest.mark.server  # the redis_server fixture may start redis-server
def test_dedup_command_with_the_index_in_redis(tmp_path, invoke, redis_server):
    base = "students of the nursing programme receive a training allowance during every practice placement"
    rows = [{"instruction": base}, {"instruction": base.replace("every", "each")},
            {"instruction": "what does the business information systems degree cost for international students"}]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    host, port = redis_server
    result = invoke("dedup", path, "--threshold", "0.5", "--storage", "redis", "--redis-url",
                    f"redis://{host}:{port}/0", "-o", tmp_path / "r.jsonl")
    assert result.exit_code == 0 and "Kept 2 of 3 records" in result.output


def test_contamination_command(tmp_path, invoke):
    question = "Do I have to know programming to apply for the Business Information Systems course?"
    answer = "No, programming knowledge is not required; the first semester starts from zero."
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"instruction": question, "response": answer}) + "\n")
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "bis-1", "question": question, "answer": answer}) + "\n"
                     + json.dumps({"id": "fees", "question": "What are the fees?", "answer": "980 EUR"}) + "\n")
    result = invoke("contamination", train, "--eval", items, "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "1 of 2 eval item(s) contaminated" in result.output and "bis-1" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["items_checked"] == 2 and report["contaminated"][0]["item"] == "bis-1"
    assert invoke("contamination", train, "--eval", items, "--fail-on-contamination").exit_code == 1


def test_screen_command(tmp_path, invoke):
    rows = [{"instruction": "What does the Nursing BSc cost?"}, {"instruction": "you are a stupid idiot"},
            {"instruction": "Email me at someone@example.org about the fees"}]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("screen", path, "--scorer", "profanity-check", "-o", tmp_path / "s.jsonl")
    assert result.exit_code == 0, result.output
    assert "Scorer: profanity-check" in result.output
    kept = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [k["meta"]["screen_route"] for k in kept] == ["pass", "review"] and "pii" in kept[1]["meta"]
    [gone] = [json.loads(x) for x in (tmp_path / "s.rejected.jsonl").read_text().splitlines()]
    assert gone["instruction"] == "you are a stupid idiot" and gone["scores"]["toxicity_max"] >= 0.8
    dry = invoke("screen", path, "--scorer", "profanity-check", "--dry-run")
    assert dry.exit_code == 0 and "dry run: nothing written" in dry.output
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"x")
    failed = invoke("screen", path, "--checkpoint", broken, "--hf-config", tmp_path, "-o", tmp_path / "t.jsonl")
    assert failed.exit_code == 1 and "did not load" in failed.output and not (tmp_path / "t.jsonl").exists()


def test_no_command_writes_over_its_input_or_reads_a_compressed_file_as_lines(tmp_path, invoke, fixtures):
    import bz2
    import gzip
    import shutil

    data = tmp_path / "records.jsonl"
    shutil.copy(fixtures / "good_records.jsonl", data)
    before = data.read_bytes()
    for args in (("data", "import", data, "-o", data), ("data", "export", data, "--format", "dolly", "-o", data),
                 ("data", "validate", data, "--quarantine", data),
                 ("eval", "score", "--suite", "closed_qa", "--predictions", data, "-o", data),
                 ("screen", data, "--scorer", "profanity-check", "-o", data)):
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert result.output.startswith(f"Error: {data}: is an input of ") and "Traceback" not in result.output
    assert data.read_bytes() == before
    packed = tmp_path / "records.jsonl.bz2"
    packed.write_bytes(bz2.compress(before))
    for args in (("data", "validate", packed), ("data", "stats", packed), ("generate", "filter", packed, "-o",
                                                                         tmp_path / "kept.jsonl")):
        result = invoke(*args)
        assert result.exit_code == 1 and result.output.splitlines()[0] == \
            f"Error: {packed}: a bzip2-compressed file, not JSON lines", args
    # gzip is read as it is (by its magic bytes, whatever the name), and written where -o ends in .gz.
    zipped = tmp_path / "records.jsonl.gz"
    zipped.write_bytes(gzip.compress(before))
    renamed = tmp_path / "gzip-without-the-name.jsonl"
    renamed.write_bytes(gzip.compress(before))
    for source in (zipped, renamed):
        result = invoke("screen", source, "--scorer", "profanity-check", "-o", tmp_path / "kept.jsonl.gz")
        assert result.exit_code == 0, result.output
        assert gzip.decompress((tmp_path / "kept.jsonl.gz").read_bytes()).count(b"\n") == before.count(b"\n")
        assert (tmp_path / "kept.manifest.json").exists()
    # UTF-16 (Windows tools write it) is one line naming the encoding and the fix.
    wide = tmp_path / "wide.jsonl"
    wide.write_bytes(before.decode().encode("utf-16"))
    result = invoke("data", "validate", wide)
    assert result.exit_code == 1 and result.output.splitlines()[0] == \
        f"Error: {wide}: UTF-16LE text; record files are UTF-8" and "iconv -f UTF-16LE -t UTF-8" in result.output


def test_options_out_of_range_are_one_line_not_a_traceback(tmp_path, invoke, tiny_falcon):
    for args, said in ((("--max-new-tokens", "0"), "Error: --max-new-tokens: Input should be greater than or "
                                                    "equal to 1"),
                       (("--limit", "0"), "Error: --limit: Input should be greater than or equal to 1")):
        result = invoke("eval", "run", "--model", tiny_falcon, "--suite", "closed_qa", "-o", tmp_path / "e", *args)
        assert result.exit_code == 1 and said in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "e").exists()
    port = invoke("serve", "--model", tiny_falcon, "--port", "70000")
    assert port.exit_code == 2 and "--port" in port.output and "65535" in port.output
    port = invoke("annotate", "serve", "--port", "0", "--data-dir", tmp_path / "a")
    assert port.exit_code == 2 and not (tmp_path / "a").exists()


def test_a_command_that_kept_nothing_of_its_input_exits_1_unless_allow_empty(tmp_path, invoke):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": 5}\n{"bad json\n')
    toxic = tmp_path / "toxic.jsonl"
    toxic.write_text(json.dumps({"instruction": "you are a stupid idiot", "response": "shut up, you moron"}) + "\n")
    for args, why in ((("data", "import", bad, "-o", tmp_path / "i.jsonl"), "2 bad line(s) quarantined"),
                      (("data", "export", bad, "--format", "alpaca", "-o", tmp_path / "x.json"),
                       "2 bad line(s) quarantined"),
                      (("screen", bad, "--scorer", "profanity-check", "-o", tmp_path / "s.jsonl"),
                       "2 bad line(s) quarantined"),
                      (("screen", toxic, "--scorer", "profanity-check", "-o", tmp_path / "t.jsonl"),
                       "1 drop: toxicity: reject"),
                      (("generate", "filter", toxic, "--rules", _rules(tmp_path), "-o", tmp_path / "f.jsonl"),
                       "1 drop: ")):
        result = invoke(*args)
        [first] = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert result.exit_code == 1 and first.startswith(f"Error: {bad if bad in args else toxic}: ")
        assert "none kept (" + why in first and "--allow-empty" in result.output, result.output
        assert "Traceback" not in result.output
        # The outputs are there to say why; with --allow-empty the same run is a success.
        assert invoke(*args, "--allow-empty").exit_code == 0


def _rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("keywords: [idiot]\n")
    return rules


def test_a_dolly_export_with_extra_columns_is_read_as_dolly_keeping_them(tmp_path, invoke):
    source = tmp_path / "dolly-labelled.jsonl"
    row = {"instruction": "Which programmes start in spring?", "context": "", "response": "Nursing and Biology.",
           "category": "open_qa", "label": "good", "source_url": "https://example.edu/programmes"}
    source.write_text(json.dumps(row) + "\n")
    result = invoke("data", "import", source, "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 0 and "Imported 1 records (dolly)" in result.output, result.output
    [record] = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert record["meta"]["label"] == "good" and record["meta"]["source_url"] == row["source_url"]


def test_every_command_reads_a_json_array_and_writes_what_the_name_says(tmp_path, invoke, fixtures):
    records = [json.loads(x) for x in (fixtures / "good_records.jsonl").read_text().splitlines()]
    array = tmp_path / "records.json"
    # Pretty-printed, as people write them by hand; the third element is bad (a number for the instruction).
    array.write_text(json.dumps([*records, {"instruction": 7, "response": "x"}], indent=2))
    bad_line = array.read_text().splitlines().index('    "instruction": 7,')  # the line of its "{"
    for args in (("screen", array, "--scorer", "profanity-check", "-o", tmp_path / "s.json"),
                 ("dedup", array, "-o", tmp_path / "d.json"),
                 ("generate", "filter", array, "--preset", "none", "-o", tmp_path / "f.json"),
                 ("data", "validate", array)):
        result = invoke(*args)
        if args[0] == "data":
            assert result.exit_code == 1 and f"{array}:{bad_line}: instruction" in result.output, result.output
        else:
            assert result.exit_code == 0, result.output
            written = json.loads(args[-1].read_text())  # a JSON array, as the name says
            assert [r["instruction"] for r in written] == [r["instruction"] for r in records]
            quarantined = [json.loads(x) for x in args[-1].with_name(args[-1].stem + ".quarantine.jsonl")
                           .read_text().splitlines()]
            assert [(q["line"], q["field"]) for q in quarantined] == [(bad_line, "instruction")]


def test_generation_refuses_an_output_it_cannot_append_to_before_loading_a_model(tmp_path, invoke):
    for name in ("i.parquet", "i.json", "i.jsonl.gz"):
        result = invoke("generate", "instructions", "--model", tmp_path / "no-model", "-o", tmp_path / name)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"Error: {tmp_path / name}: a generation stage writes JSON lines")
        assert not (tmp_path / name).exists()


def test_generation_refuses_output_equal_to_input_before_loading_a_model(tmp_path, invoke, fixtures):
    import shutil

    data = tmp_path / "instructions.jsonl"
    shutil.copy(fixtures / "good_records.jsonl", data)
    before = data.read_bytes()
    result = invoke("generate", "instances", data, "--model", tmp_path / "no-model", "-o", data)
    assert result.exit_code == 1 and result.output.startswith(f"Error: {data}: is an input of "), result.output
    assert data.read_bytes() == before
