import json

from eval_suites.contamination import ContaminationConfig, check, load_eval_items
from workbench.core.records import Record

LEAK_Q = "Do I have to know programming to apply for the Business Information Systems course?"
LEAK_A = ("No. Programming knowledge is not required for the Business Information Systems MSc; the first-semester "
          "module Programming Foundations for Business starts from zero.")


def write_items(path, items):
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def test_planted_leak_is_found_and_clean_items_are_not(tmp_path):
    items = load_eval_items(write_items(tmp_path / "items.jsonl", [
        {"id": "leak", "question": LEAK_Q, "references": [LEAK_A]},
        {"id": "clean", "question": "How many students does the Psychology BSc admit?", "answer": "90 per year."},
    ]), [])
    train = [Record(LEAK_Q, response=LEAK_A), Record("Name a river.", response="The Rhine.")]
    [finding] = check(train, items, ContaminationConfig())
    assert finding.item.id == "leak"
    assert finding.near_duplicates == {train[0].id: 1.0}
    assert train[0].id in finding.shared_ngrams


def test_a_shared_13_gram_alone_counts(tmp_path):
    sentence = "applicants must show at least ten credits of programming courses in python r or java"
    items = load_eval_items(write_items(tmp_path / "i.jsonl", [
        {"id": "q1", "question": "What do applicants need?", "answer": f"They say {sentence}, and more besides."}]), [])
    train = [Record("Summarise the rules for the Data Science MSc in detail for me please",
                    response=f"In short: {sentence}. Also a C1 English certificate, a CV and a letter.")]
    [finding] = check(train, items, ContaminationConfig())
    assert not finding.near_duplicates and train[0].id in finding.shared_ngrams


def test_shared_context_is_not_contamination(tmp_path):
    page = "The Nursing BSc combines university study with 2,300 hours of supervised practice in hospitals. " * 3
    items = load_eval_items(write_items(tmp_path / "i.jsonl", [
        {"id": "q", "question": "How many practice hours?", "context": page, "answer": "2,300 hours."}]), [])
    train = [Record("Is teaching in German?", context=page, response="Yes, all teaching is in German.")]
    assert check(train, items, ContaminationConfig()) == []


def test_suite_folder_and_bad_items(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    write_items(suite / "items.jsonl", [{"id": "a", "question": "Q?", "answer": "A"}, {"id": "b", "answer": "x"}])
    problems: list = []
    items = load_eval_items(suite, problems)
    assert [i.id for i in items] == ["a"] and problems[0].field == "question" and problems[0].line == 2


def test_nothing_checked_is_an_error_not_clean(tmp_path, invoke):
    from eval_suites.registry import SUITES_DIR

    train = tmp_path / "train.jsonl"
    train.write_text('{bad\n{"response": "no instruction"}\n')
    result = invoke("contamination", train, "--eval", SUITES_DIR / "closed_qa", "--fail-on-contamination",
                    "--report", tmp_path / "report.json")
    assert result.exit_code == 1 and "no valid training record to check (2 bad line(s))" in result.output
    assert "contaminated" not in result.output and not (tmp_path / "report.json").exists()
    good = tmp_path / "good.jsonl"
    good.write_text(Record(LEAK_Q, response=LEAK_A).to_json() + "\n")
    empty = write_items(tmp_path / "none.jsonl", [])
    result = invoke("contamination", good, "--eval", empty)
    assert result.exit_code == 1 and "no eval item to check against" in result.output
