"""Recipes and `workbench run`: validation, the bundled recipes, reruns of changed stages only, --dry-run,
--from/--until, the contamination gate, and a manual review that stops the run and resumes it."""

import json
from pathlib import Path

import pytest
import yaml

from workbench.core.io import load_records
from workbench.recipe import GROUPS, PreferenceSettings, Recipe, load_recipe, recipe_yaml

ROOT = Path(__file__).parent.parent


def test_the_bundled_recipes_validate_and_the_tiny_one_is_the_demo():
    tiny = load_recipe(ROOT / "recipes" / "course-advisor-tiny.yaml")
    default = Recipe()
    same_scorer = default.stages.model_copy(update={"screen": tiny.stages.screen})  # the scorer depends on the disk
    assert tiny == default.model_copy(update={"stages": same_scorer})
    falcon = load_recipe(ROOT / "recipes" / "course-advisor.yaml")
    assert falcon.models.base.model == "tiiuae/falcon-7b" and falcon.models.base.quant == "8bit"
    assert falcon.models.generator.model == "tiiuae/falcon-7b-instruct" and falcon.stages.review.mode == "manual"
    assert falcon.tiny is None and falcon.stages.finetune.quant == "8bit"
    # The preferences recipe is the demo's settings and the preference stages' defaults.
    preferences = load_recipe(ROOT / "recipes" / "course-advisor-preferences-tiny.yaml")
    assert preferences.stages.preferences == PreferenceSettings()
    same = preferences.stages.model_copy(update={"preferences": None, "screen": tiny.stages.screen})
    assert same == tiny.stages and preferences.tiny == tiny.tiny and preferences.models == tiny.models
    manual = preferences.with_review("manual").stages  # --review manual: people rank the candidates too
    assert manual.review.mode == "manual" and manual.preferences.review.mode == "manual"


def test_the_cluster_recipe_spreads_generation_and_finetuning_and_its_dry_run_says_so(tmp_path, invoke):
    cluster = load_recipe(ROOT / "recipes" / "course-advisor-cluster.yaml")
    falcon = load_recipe(ROOT / "recipes" / "course-advisor.yaml")
    assert cluster.models.generator.backend == "openai" and len(cluster.models.generator.api_base) == 2
    assert cluster.models.instruct.api_base == cluster.models.generator.api_base
    assert cluster.stages.training.processes == 4 and cluster.stages.dedup.storage == "redis"
    # Everything else is the one-GPU recipe's: the same data and training settings, spread out.
    same = cluster.stages.model_copy(update={"training": falcon.stages.training, "dedup": falcon.stages.dedup})
    assert same == falcon.stages and cluster.models.base == falcon.models.base
    runs = tmp_path / "runs"
    plan = invoke("run", ROOT / "recipes" / "course-advisor-cluster.yaml", "--runs-dir", runs, "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert "instructions (on 2 replicas of tiiuae/falcon-7b-instruct) would run" in plan.output
    assert "finetune (a LoRA adapter on the curated set; 4 processes) would run" in plan.output
    assert not runs.exists() or not any(runs.rglob("*.jsonl"))  # a dry run writes nothing


def test_preference_settings_that_cannot_work_are_refused(tmp_path, invoke):
    path = tmp_path / "prefs.yaml"
    path.write_text(yaml.safe_dump({"stages": {"preferences": {"review": {"compare": False}}}}))
    result = invoke("run", path, "--dry-run")
    assert result.exit_code == 1 and "stages.preferences: review.compare must be true" in result.output
    path.write_text(yaml.safe_dump({"stages": {"preferences": {"review": {"dataset": "demo-candidates",
                                                                          "compare": True}}}}))
    result = invoke("run", path, "--dry-run")
    assert result.exit_code == 1 and "the comparisons need their own dataset" in result.output


@pytest.mark.parametrize("change, message", [
    ({"stages": {"dedup": {"threshold": 2}}}, "bad.yaml: stages.dedup.threshold: Input should be less than or equal"),
    ({"stages": {"dedup": {"treshold": 0.5}}}, "bad.yaml: stages.dedup.treshold: Extra inputs are not permitted"),
    ({"models": {"base": {"model": "tiny", "quant": "3bit"}}}, "bad.yaml: models.base.quant: Input should be"),
    ({"tiny": None}, 'bad.yaml: tiny: a model is "tiny" but the recipe has no tiny section'),
])
def test_recipe_mistakes_name_the_path_and_the_reason(tmp_path, change, message, invoke):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(change))
    result = invoke("run", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 1 and message in result.output.replace(str(tmp_path) + "/", "")
    assert "Traceback" not in result.output


def test_a_broken_yaml_file_names_its_line(tmp_path, invoke):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nstages:\n  dedup: [unclosed\n")
    result = invoke("run", path)
    assert result.exit_code == 1 and f"{path}:" in result.output and "invalid YAML" in result.output


def micro(tmp_path, **changes):
    """A small tiny recipe: a short pretraining, a few generations, three items per suite."""
    data = yaml.safe_load(recipe_yaml(Recipe()))
    data["tiny"].update(train_steps=60, instruct_steps=60, seq_len=256)
    data["stages"]["generate"]["instructions"].update(num=6, rounds=2, prompts_per_round=4)
    data["stages"]["generate"]["from_docs"]["num"] = 1
    data["stages"]["screen"]["scorer"] = "profanity-check"
    data["stages"]["eval"]["limit"] = 3
    data["stages"]["report"]["bootstrap"] = 200
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    out = tmp_path / f"micro-{len(list(tmp_path.glob('micro-*')))}.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def done_and_skipped(output):
    done = [line.split(":")[0] for line in output.splitlines() if ": done in" in line]
    skipped = [line.split(":")[0] for line in output.splitlines() if ": skipped (unchanged)" in line]
    return done, skipped


@pytest.mark.slow
@pytest.mark.server
def test_run_reruns_only_what_changed(tmp_path, invoke):
    runs = tmp_path / "runs"
    # The micro recipe's briefly trained generator writes no valid instance: the run stops there, saying so...
    stopped = invoke("run", micro(tmp_path), "--name", "r", "--runs-dir", runs)
    assert stopped.exit_code == 1 and "Error: stage instances: " in stopped.output, stopped.output
    listed = invoke("runs", "list", "--runs-dir", runs, "--json")
    assert json.loads(listed.stdout)[0]["state"].startswith("stopped: stage instances: ")
    assert "none kept (" in stopped.output and "no valid instance" in stopped.output
    assert "--allow-empty" in stopped.output
    # ... and goes on with --allow-empty (as the rest of these tests do), from where it stopped.
    first = invoke("run", "--allow-empty", micro(tmp_path), "--name", "r", "--runs-dir", runs)
    assert first.exit_code == 0, first.output
    done, skipped = done_and_skipped(first.output)
    assert skipped == ["seeds", "catalog", "tiny-model", "instructions"] and done[0] == "instances"
    assert done[-1] == "report"
    assert {"contamination", "finetune", "eval-base", "eval-instruct", "eval-finetuned"} <= set(done)
    summary = json.loads((runs / "r" / "report" / "summary.json").read_text())
    assert set(summary["models"]) == {"base", "instruct", "finetuned"}
    # A changed screen threshold: the dry run says so, then only screen and the stages after it run.
    changed = micro(tmp_path, **{"stages.screen.pass_below": 0.0})  # nothing passes: all go to review
    plan = invoke("run", "--allow-empty", changed, "--name", "r", "--runs-dir", runs, "--dry-run")
    assert plan.exit_code == 0 and "nothing was run" in plan.output
    assert "dedup            skipped: unchanged" in plan.output
    assert "screen           would run: its config or inputs changed" in plan.output
    assert "report           would run: an earlier stage runs first" in plan.output
    again = invoke("run", "--allow-empty", changed, "--name", "r", "--runs-dir", runs)
    done, skipped = done_and_skipped(again.output)
    # The base and instruct models' evaluations depend on nothing that changed: they are skipped too.
    assert skipped == ["seeds", "catalog", "tiny-model", "instructions", "instances", "from-docs", "dedup",
                       "eval-base", "eval-instruct"]
    assert done == ["screen", "review", "holdout", "contamination", "finetune", "eval-finetuned", "report"]
    assert json.loads(invoke("runs", "list", "--runs-dir", runs, "--json").stdout)[0]["state"] == "complete"
    # A dry run from a later stage says the earlier ones are used as they are, even with --force.
    plan = invoke("run", "--allow-empty", changed, "--name", "r", "--runs-dir", runs, "--dry-run", "--from",
                  "finetune", "--force")
    assert "dedup            skipped: before --from finetune: used as it is" in plan.output, plan.output
    assert "contamination    would run: forced" in plan.output
    backwards = invoke("run", changed, "--name", "r", "--runs-dir", runs, "--from", "report", "--until", "generate")
    assert backwards.exit_code == 1 and "--from report comes after --until generate" in backwards.output
    # --from report --force redoes the report alone; --until stops early.
    report_only = invoke("run", "--allow-empty", changed, "--name", "r", "--runs-dir", runs, "--from", "report",
                         "--force")
    assert done_and_skipped(report_only.output)[0] == ["report"]
    early = invoke("run", "--allow-empty", micro(tmp_path), "--name", "early", "--runs-dir", runs, "--until", "dedup")
    assert done_and_skipped(early.output)[0][-1] == "dedup" and not (runs / "early" / "screen").exists()
    bad = invoke("run", "--allow-empty", changed, "--name", "fresh", "--runs-dir", runs, "--from", "screen")
    assert bad.exit_code == 1 and "has not run with these settings" in bad.output
    # Finetuning in 2 processes is another run of the stage (another effective batch): it trains again, launched.
    two = micro(tmp_path, **{"stages.screen.pass_below": 0.0, "stages.training": {"processes": 2}})
    launched = invoke("run", "--allow-empty", two, "--name", "r", "--runs-dir", runs, "--until", "finetune")
    assert launched.exit_code == 0, launched.output
    assert done_and_skipped(launched.output)[0] == ["finetune"]
    adapter = json.loads((runs / "r" / "finetune" / "adapter" / "manifest.json").read_text())
    assert adapter["processes"] == 2 and adapter["effective_batch_rows"] == 2 * Recipe().stages.finetune.batch_size
    assert json.loads((runs / "r" / "finetune" / "manifest.json").read_text())["counts"]["steps"] == adapter["steps"]
    assert invoke("run", "--allow-empty", changed, "--until", "deploy").exit_code == 1


def edited_behind_the_manifest(path, text: str) -> None:
    """A stage output edited, and its manifest's checksum with it: what a rerun cannot tell from the stage's own
    output (a plain edit is found, and the stage done again)."""
    from workbench.core.runs import output_sums

    path.write_text(text)
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["outputs"].update(output_sums({path.name: str(path)}))
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.slow
@pytest.mark.server
def test_contamination_stops_the_run_before_finetuning(tmp_path, monkeypatch, invoke):
    """A curated record that is an eval item is held out (dropped through the ledger, naming the item); one that
    reaches what finetuning reads anyway: the gate stops the run (exit 1) and writes its report."""
    runs = tmp_path / "runs"
    recipe = micro(tmp_path)
    assert invoke("run", "--allow-empty", recipe, "--name", "c", "--runs-dir", runs, "--until", "review").exit_code == 0
    leak = {"instruction": "Do I have to know programming to apply for the Business Information Systems course?",
            "response": "No, programming knowledge is not required."}
    curated = runs / "c" / "review" / "records.jsonl"
    edited_behind_the_manifest(curated, curated.read_text() + json.dumps(leak) + "\n")
    held = invoke("run", "--allow-empty", recipe, "--name", "c", "--runs-dir", runs, "--until", "review")
    assert held.exit_code == 0, held.output
    [dropped] = [json.loads(line) for line in (runs / "c" / "holdout" / "dropped.jsonl").read_text().splitlines()]
    assert dropped["instruction"] == leak["instruction"]
    assert dropped["lineage"][-1]["reason"] == "asks a suite question"
    assert dropped["lineage"][-1]["detail"]["item"] == "business-information-systems-msc-1"
    trained = runs / "c" / "holdout" / "records.jsonl"
    edited_behind_the_manifest(trained, trained.read_text() + json.dumps(leak) + "\n")  # past the holdout
    result = invoke("run", "--allow-empty", recipe, "--name", "c", "--runs-dir", runs, "--from", "finetune")
    assert result.exit_code == 1 and "contamination: 1 eval item(s)" in result.output
    report = json.loads((runs / "c" / "contamination" / "report.json").read_text())
    assert report["contaminated"][0]["item"] == "business-information-systems-msc-1"
    assert not (runs / "c" / "finetune").exists() and not (runs / "c" / "contamination" / "DONE").exists()


@pytest.mark.slow
@pytest.mark.server
def test_manual_review_stops_the_run_and_the_next_run_resumes(tmp_path, invoke):
    from annotation import client, demo_reviewer, server

    runs = tmp_path / "runs"
    recipe = micro(tmp_path)
    first = invoke("run", "--allow-empty", recipe, "--name", "m", "--runs-dir", runs, "--review", "manual")
    assert first.exit_code == 0, first.output
    assert "Waiting: review: 0 of" in first.output and "run the same command again" in first.output
    [listed] = json.loads(invoke("runs", "list", "--runs-dir", runs, "--json").stdout)
    assert listed["state"].startswith("waiting: review: 0 of")  # not counted as a complete run
    data_dir = runs / "m" / "review" / "argilla"
    assert not (runs / "m" / "review" / "DONE").exists() and (data_dir / "server.json").exists()
    try:
        still = invoke("run", "--allow-empty", recipe, "--name", "m", "--runs-dir", runs, "--review", "manual")
        assert "Waiting: review: 0 of" in still.output  # nobody reviewed yet: still waiting, nothing pushed twice
        argilla = client.connect(data_dir=data_dir.resolve())
        demo_reviewer.review_all(argilla, "demo-candidates", server.DEFAULT_WORKSPACE, data_dir.resolve())  # people
        resumed = invoke("run", "--allow-empty", recipe, "--name", "m", "--runs-dir", runs, "--review", "manual")
        assert resumed.exit_code == 0, resumed.output
        done, skipped = done_and_skipped(resumed.output)
        assert "review" in done and done[-1] == "report" and "screen" in skipped
        assert not (data_dir / "server.json").exists()  # the pull stopped the server
    finally:
        server.stop(data_dir.resolve())


@pytest.mark.slow
@pytest.mark.server
def test_the_preferences_recipe_ranks_pairs_trains_dpo_on_sft_and_evaluates_all_four(tmp_path, invoke):
    data = yaml.safe_load(micro(tmp_path).read_text())
    data["stages"]["preferences"] = {"responses": {"n": 3, "system_prompt": True, "sampling": {
        "max_new_tokens": 40, "temperature": 0.9, "top_p": 0.95, "stop": ["### End"]}},
        "review": {"dataset": "demo-comparisons", "compare": True}, "pairs": {"system_prompt": True},
        "dpo": {"method": "dpo", "quant": "none", "epochs": 1, "lr": 1e-3, "batch_size": 4,
                "grad_checkpointing": False, "eval_split": 0.0}}
    recipe = tmp_path / "prefs.yaml"
    recipe.write_text(yaml.safe_dump(data))
    runs = tmp_path / "runs"
    result = invoke("run", "--allow-empty", recipe, "--name", "p", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    done, _ = done_and_skipped(result.output)
    assert done.index("review") < done.index("responses") < done.index("compare") < done.index("pairs") < \
        done.index("finetune") < done.index("dpo") < done.index("eval-dpo") < done.index("report")
    ranked = load_records(runs / "p" / "compare" / "records.jsonl", [])
    assert ranked and all(r.meta["ranking"]["ranks"] for r in ranked)
    # The demo reviewers' rankings are labelled automatic wherever they go.
    users = ranked[0].lineage[-1]["detail"]["users"].values()
    assert set(users) <= {"demo-reviewer-1", "demo-reviewer-2", "demo-reviewer-3"} and len(set(users)) == 3
    manifest = json.loads((runs / "p" / "dpo" / "adapter" / "manifest.json").read_text())
    assert manifest["method"] == "dpo" and manifest["ref_adapter"] == str((runs / "p" / "finetune" /
                                                                          "adapter").resolve())
    summary = json.loads((runs / "p" / "report" / "summary.json").read_text())
    assert set(summary["models"]) == {"base", "instruct", "finetuned", "finetuned+dpo"}
    again = invoke("run", "--allow-empty", recipe, "--name", "p", "--runs-dir", runs)
    assert done_and_skipped(again.output)[0] == []  # nothing changed: nothing reruns


def test_an_empty_recipe_and_a_misspelt_suite_are_errors(tmp_path, invoke):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = invoke("run", empty, "--dry-run")
    assert result.exit_code == 1 and f"Error: {empty}: the recipe is empty" in result.output
    typo = tmp_path / "typo.yaml"
    typo.write_text("stages:\n  eval:\n    suites: [course_advisor, closed_qaa]\n")
    result = invoke("run", typo, "--dry-run")
    assert result.exit_code == 1 and "stages.eval.suites: no eval suite named 'closed_qaa' (did you mean " \
        "'closed_qa'?)" in result.output


def test_until_stops_after_each_of_the_loops_stages(tmp_path):
    """`--until STAGE` for each of the loop's stages: the dry run plans a longer prefix of the whole run each time,
    ending with that stage's own steps, and a name that is no stage is refused naming them all."""
    from workbench.core.errors import InputError
    from workbench.recipe import run_recipe

    def plan(until=None):
        return [stage.split()[0] for stage, _, _ in run_recipe(Recipe(), tmp_path, "x", dry_run=True, until=until).plan]

    whole, before = plan(), []
    for group in GROUPS:
        upto = plan(group)
        assert upto == whole[:len(upto)] and len(upto) > len(before)
        # dedup, screen, finetune, eval-*, report; review ends with the curated set less the suites' questions
        assert group == "generate" or upto[-1].startswith("holdout" if group == "review" else group)
        before = upto
    assert before == whole
    with pytest.raises(InputError, match="unknown stage 'train': stages are " + ", ".join(GROUPS)):
        run_recipe(Recipe(), tmp_path, "x", dry_run=True, until="train")


@pytest.mark.slow
@pytest.mark.server
def test_ctrl_c_in_the_review_stage_stops_its_server_and_redis_and_writes_nothing_after(tmp_path, invoke):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from annotation import server

    runs, recipe = tmp_path / "runs", micro(tmp_path)
    assert invoke("run", "--allow-empty", recipe, "--name", "c", "--runs-dir", runs, "--until", "screen").exit_code == 0
    data_dir = runs / "c" / "review" / "argilla"
    run = subprocess.Popen([sys.executable, "-m", "workbench", "run", "--allow-empty", str(recipe), "--name", "c",
                            "--runs-dir", str(runs)], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    state = None
    while state is None or not server._api_answers(state.api_url, timeout=1.0):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before its review stage"
        state = server.ServerState.load(data_dir) if data_dir.is_dir() else None
        time.sleep(0.1)
    started = [psutil.Process(pid) for pid in (state.pid, state.redis_pid) if pid]
    started += started[0].children(recursive=True)
    time.sleep(1.0)  # into the push or the demo reviewers' answers
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-2000:]
    assert "Interrupted (Ctrl-C)" in stderr and "Traceback" not in stderr
    _, alive = psutil.wait_procs(started, timeout=5)
    assert not alive, [p.cmdline() for p in alive]  # argilla-server, its workers and its Redis
    assert not (runs / "c" / "review" / "DONE").exists() and not (runs / "c" / "holdout").exists()
    written = {p: p.stat().st_mtime_ns for p in (runs / "c").rglob("*") if p.is_file()}
    time.sleep(2)
    assert {p: p.stat().st_mtime_ns for p in (runs / "c").rglob("*") if p.is_file()} == written
