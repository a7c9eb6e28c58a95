"""The runner with a tiny model: results files, the generation cache, adapters and contamination, `eval score`."""

import json

import pytest

from eval_suites.registry import load_suite
from eval_suites.runner import EvalConfig, GenerationCache, evaluate, score_suite
from eval_suites.runner import run as eval_stage
from workbench.core.backends import BackendConfig
from workbench.core.runs import Outputs

ITEMS = [
    {"id": "fee", "question": "What is the semester fee?", "context": "The semester fee is 980 EUR for all.",
     "references": ["980 EUR"]},
    {"id": "lang", "question": "Which language is used?", "context": "All teaching is in German.",
     "references": ["German"]},
    {"id": "dorm", "question": "Is there a dormitory?", "context": "The semester fee is 980 EUR.",
     "references": ["The passage does not say."], "answerable": False},
    {"id": "start", "question": "When does it start?", "context": "It starts in October.", "references": ["October"]},
]


def make_suite(folder, items=ITEMS, max_new_tokens=12):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.yaml").write_text(
        f"name: {folder.name}\ndescription: test\ntask: qa\ngeneration: {{max_new_tokens: {max_new_tokens}}}\n"
        "metrics: [em, f1, rougeL, grounded, abstain_precision, abstain_recall, toxicity_rate]\n")
    (folder / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return folder


def test_run_writes_results_and_a_rerun_is_served_from_the_cache(tiny_generator, tmp_path):
    suite = make_suite(tmp_path / "suites" / "mini")
    config = BackendConfig(model=str(tiny_generator))
    [run] = evaluate([str(suite)], config, tmp_path / "out", name="base")
    folder = tmp_path / "out" / "mini"
    assert {p.name for p in folder.iterdir()} == {"predictions.jsonl", "scores.jsonl", "metrics.json", "manifest.json"}
    predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == [i["id"] for i in ITEMS]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["cache"]["generated"] == 4 and manifest["name"] == "base" and manifest["contamination"] is None
    assert set(json.loads((folder / "metrics.json").read_text())) >= {"em", "f1", "toxicity_rate"}
    [again] = evaluate([str(suite)], config, tmp_path / "out2", name="base")
    assert again.manifest["cache"] == {**manifest["cache"], "hits": 4, "generated": 0}
    assert (tmp_path / "out2" / "mini" / "predictions.jsonl").read_text() == (folder / "predictions.jsonl").read_text()
    # Other generation parameters are other answers.
    [longer] = evaluate([str(suite)], config, tmp_path / "out3", max_new_tokens=20)
    assert longer.manifest["cache"]["generated"] == 4 and longer.manifest["cache"]["key"] != manifest["cache"]["key"]
    # The eval stage's entry: the same answers (from the cache), results in a folder, its manifest beside them.
    stage = eval_stage(config, EvalConfig(suites=(str(suite),)), Outputs.folder(tmp_path / "stage", "eval-base"),
                       name="b")
    assert stage.counts == {"items": 4, "generated": 0, "mini_f1_x1000": round(1000 * manifest_f1(folder))}
    assert (tmp_path / "stage" / "results" / "mini" / "predictions.jsonl").exists()
    assert json.loads((tmp_path / "stage" / "manifest.json").read_text())["config"]["model"]["model"] == str(
        tiny_generator)


def manifest_f1(folder) -> float:
    return json.loads((folder / "metrics.json").read_text())["f1"]["value"]


def test_an_interrupted_run_continues_without_regenerating(tiny_generator, tmp_path):
    suite = make_suite(tmp_path / "mini")
    config = BackendConfig(model=str(tiny_generator))
    [run] = evaluate([str(suite)], config, tmp_path / "out")
    cache = GenerationCache(run.manifest["cache"]["key"])
    lines = cache.path.read_text().splitlines(keepends=True)
    cache.path.write_text("".join(lines[:2]) + lines[2][:15])  # killed while writing the third answer
    [resumed] = evaluate([str(suite)], config, tmp_path / "out")
    assert resumed.manifest["cache"]["hits"] == 2 and resumed.manifest["cache"]["generated"] == 2
    assert len(cache.path.read_text().splitlines()) == 4  # the broken line is gone, nothing duplicated


@pytest.mark.slow
def test_an_adapter_gets_its_own_answers_and_its_training_data_is_checked(tiny_generator, tmp_path):
    from pipelines import finetune
    from workbench.core.io import load_records, sha256_file, write_records
    from workbench.core.records import Record

    suite = make_suite(tmp_path / "mini")
    train = tmp_path / "train.jsonl"
    write_records(train, [Record("What is the semester fee?", response="980 EUR"),  # the suite's item: a leak
                          *[Record(f"Name fruit number {n}.", response=f"Fruit {n} is an apple.") for n in range(7)]])
    adapter = tmp_path / "adapter"
    config = finetune.FinetuneConfig(quant="none", max_steps=2, batch_size=2, eval_split=0, grad_checkpointing=False)
    finetune.train(str(tiny_generator), load_records(train, []), adapter, config, device="cpu",
                   data_sha256=sha256_file(train), data_path=str(train))
    card = (adapter / "README.md").read_text()  # our model card, not peft's empty template
    assert f"# LoRA adapter for {tiny_generator}" in card and str(train) in card
    base = evaluate([str(suite)], BackendConfig(model=str(tiny_generator)), tmp_path / "base")[0]
    [tuned] = evaluate([str(suite)], BackendConfig(model=str(tiny_generator), adapter=str(adapter)), tmp_path / "tuned")
    assert tuned.manifest["cache"]["generated"] == 4 and tuned.manifest["cache"]["key"] != base.manifest["cache"]["key"]
    assert tuned.manifest["name"] == "adapter" and tuned.manifest["adapter_fingerprint"]
    contamination = tuned.manifest["contamination"]
    assert contamination["checked"] and [f["item"] for f in contamination["contaminated"]] == ["fee"]
    # A retrained adapter (other weights) never reuses the old answers; the changed data is reported, not checked.
    import shutil
    shutil.rmtree(adapter)
    finetune.train(str(tiny_generator), load_records(train, []), adapter, config.model_copy(update={"seed": 1}),
                   device="cpu", data_sha256=sha256_file(train), data_path=str(train))
    train.write_text(train.read_text() + "\n")
    [retrained] = evaluate([str(suite)], BackendConfig(model=str(tiny_generator), adapter=str(adapter)),
                           tmp_path / "tuned2")
    assert retrained.manifest["cache"]["generated"] == 4
    assert "changed since training" in retrained.manifest["contamination"]["reason"]


def test_score_suite_by_hand():
    suite = load_suite("closed_qa")
    by_id = {i["id"]: i for i in suite.items}
    answers = {"honeybees-1": "About six weeks", "honeybees-3": "The passage does not say.",
               "lighthouse-1": "Coal"}
    scores = score_suite(suite, answers, toxicity_scorer=None)
    assert by_id["honeybees-3"]["answerable"] is False
    assert scores.metrics["em"] == {"value": pytest.approx(2 / 3), "n": 3}
    assert scores.metrics["abstain_precision"] == {"value": 1.0, "n": 1}
    assert scores.metrics["abstain_recall"]["value"] == 1.0
    assert len(scores.missing) == len(suite.items) - 3 and "toxicity_rate skipped" in scores.notes[0]


def test_eval_score_command(tmp_path, invoke):
    predictions = tmp_path / "answers.jsonl"
    predictions.write_text(json.dumps({"id": "honeybees-1", "prediction": "six weeks"}) + "\n"
                           + json.dumps({"id": "honeybees-2", "answer": "oops"}) + "\n"
                           + json.dumps({"id": "lighthouse-1", "prediction": "you stupid idiot, paraffin"}) + "\n")
    out = tmp_path / "scores.json"
    # Two of 83 items: scores over part of a suite do not compare with the suite's, so it takes --partial.
    refused = invoke("eval", "score", "--suite", "closed_qa", "--predictions", predictions, "-o", out)
    assert refused.exit_code == 1 and f"{predictions}: predictions for 2 of 83 items of closed_qa" in refused.output
    assert "--partial" in refused.output and not out.exists()
    result = invoke("eval", "score", "--suite", "closed_qa", "--predictions", predictions, "-o", out, "--json",
                    "--partial")
    assert result.exit_code == 0, result.output
    assert f"{predictions}:2: prediction: expected a string" in result.output  # quarantined, named
    assert (tmp_path / "answers.quarantine.jsonl").exists()
    scores = json.loads(out.read_text())
    assert scores["metrics"]["em"] == {"value": 0.5, "n": 2}
    assert scores["metrics"]["toxicity_rate"]["value"] == 0.5  # the insult is caught by the screen's scorer
    assert len(scores["missing"]) == len(load_suite("closed_qa").items) - 2 and scores["partial"] is True
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"id": "nope", "prediction": "x"}) + "\n")
    result = invoke("eval", "score", "--suite", "closed_qa", "--predictions", unknown)
    assert result.exit_code == 1 and "name no item of suite closed_qa: nope" in result.output


def test_brainstorming_with_the_tiny_model_and_the_list_command(tiny_generator, tmp_path, invoke):
    from eval_suites.metrics import load_embedder

    [run] = evaluate(["brainstorming"], BackendConfig(model=str(tiny_generator)), tmp_path / "out", limit=3,
                     max_new_tokens=24)
    assert run.manifest["items"] == 3 and run.manifest["limit"] == 3
    assert set(run.scores.metrics) == {"count_compliance", "unique_items", "distinct_1", "distinct_2", "relevance",
                                       "off_topic", "toxicity_rate"}
    rows = [json.loads(line) for line in (tmp_path / "out" / "brainstorming" / "scores.jsonl").read_text().splitlines()]
    assert all(r["requested"] in (3, 4, 5) and "toxic" in r for r in rows)
    if load_embedder() is not None:
        assert any(r["relevance"] is not None for r in rows) or all(r["items"] == 0 for r in rows)
    listed = invoke("eval", "list")
    assert listed.exit_code == 0 and all(n in listed.output for n in ("closed_qa", "brainstorming", "course_advisor"))
