"""The review UI as annotators use it: Debian's Chromium, driven by playwright, against the real local server.

Hostile records (scripts, an `<img onerror>`, code with `<T>`, `a<b and c>d`, entities, Markdown-looking text)
must show character for character and run nothing; an annotator submits keep with a rating and a correction, uses
the Discard button on another record, filters by `screen_route` and sorts by `toxicity_max`; `annotate pull` then
has both decisions, with the original texts and the correction as typed."""

import json

import httpx
import pytest
from playwright.sync_api import expect

from annotation import client as api
from workbench.core.io import load_records
from workbench.core.records import Record

pytestmark = pytest.mark.server

DATASET = "browser-review"


def screened(instruction: str, context: str = "", response: str = "", *, toxicity: float = 0.01,
             route: str = "pass", category: str = "open_qa") -> Record:
    meta = {"screen_route": route, "screen_scorer": "detoxify"}
    if route == "review":
        meta["screen_reasons"] = ["toxicity: insult"]
    return Record(instruction, context, response, category=category, source="generated",
                  scores={"toxicity_max": toxicity}, meta=meta)


STEALER = screened(
    "Summarise this page: <script>window.__pwned = 1; document.title = 'pwned:' + "
    "localStorage.getItem('auth._token.local')</script>",
    '<img src=x onerror="window.__pwned = 2"><b>bold?</b>',
    "**Not bold** and # not a heading\n  indented line\n\ttab &amp; &lt;b&gt; &#60;",
    category="summarization")
GENERICS = screened("What does List<String> mean in Java?", "",
                    "A list of strings: List<String> names = new ArrayList<>(); in C++ std::vector<int>.")
COMPARISON = screened("Is a<b and c>d true when a=1, b=2, c=5 and d=3?", "", "Yes: a<b and c>d both hold.",
                      category="closed_qa")
THINK = screened("Explain the <think> tag.", "", "Models write <think>reasoning</think> before the answer.")
UNSURE = screened("Which course is for people who hate statistics?", "", "None of them, you idiot.",
                  toxicity=0.120152, route="review")
RUDE = screened("Which course is worst?", "", "All of them are garbage.", toxicity=0.300004, route="review")
RECORDS = [STEALER, GENERICS, COMPARISON, THINK, UNSURE, RUDE]


@pytest.fixture(scope="module")
def review(argilla, tmp_path_factory, invoke):
    """The records pushed (min_submitted 1), an annotator added through the CLI, the owner's password."""
    served, data_dir = argilla
    path = tmp_path_factory.mktemp("browser") / "candidates.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in RECORDS))
    result = invoke("annotate", "push", path, "--dataset", DATASET, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    added = invoke("annotate", "users", "add", "browser-annotator", "--data-dir", data_dir)
    assert added.exit_code == 0, added.output
    password = added.output.split("Password (shown once): ")[1].split()[0]
    owner = json.loads((data_dir / "credentials.json").read_text())
    return served, data_dir, {"browser-annotator": password, owner["username"]: owner["password"]}


class Session:
    """One user's browser tab, watching for anything a record could make the page do."""

    def __init__(self, chromium, api_url: str, username: str, password: str):
        self.context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.api_url, self.dialogs = api_url, []
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.goto(f"{api_url}/sign-in")
        self.page.fill("input[name=Username]", username)
        self.page.fill("input[name=Password]", password)
        self.page.click("button:has-text('Sign in')")
        self.page.wait_for_url(f"{api_url}/")

    def open_dataset(self):
        self.page.get_by_text(DATASET, exact=True).click()  # waits for the home list
        self.page.wait_for_selector(".text_field_component")
        self.dataset_url = self.page.url.split("?")[0]

    def goto(self, query: str):
        self.page.goto(f"{self.dataset_url}?{query}")
        self.page.wait_for_selector(".text_field_component")
        self.page.wait_for_timeout(300)  # the record's fields render after the list arrives

    def open_pending(self, record: Record) -> None:
        """The pending record with this instruction, paging through the annotator's queue."""
        for number in range(1, len(RECORDS) + 1):
            self.goto(f"page={number}&status=pending")
            if self.fields()["Instruction"][0] == record.instruction:
                return
        raise AssertionError(f"{record.instruction!r} is not pending")

    def fields(self) -> dict[str, tuple[str, str]]:
        """title -> (the DOM text of the field's content, the text as rendered)."""
        shown = {}
        for field in self.page.query_selector_all(".text_field_component"):
            title = field.query_selector(".text_field_component__title-content").inner_text()
            content = field.query_selector(".content-area")
            shown[title] = (content.evaluate("e => e.firstElementChild.textContent"), content.inner_text().rstrip())
        return shown

    def counter(self) -> str:
        return " ".join(self.page.inner_text(".pagination__info").split())

    def nothing_ran(self) -> None:
        """No script from a record ran, in the page or any frame, and no frame was made for a field."""
        for frame in self.page.frames:
            assert frame.evaluate("window.__pwned") is None
        assert not self.page.query_selector(".text_field_component iframe")
        assert "pwned" not in self.page.title() and not self.dialogs

    def close(self):
        self.context.close()


@pytest.mark.browser
def test_annotators_see_exact_text_run_nothing_and_their_decisions_are_pulled(review, chromium, tmp_path, invoke):
    served, data_dir, passwords = review
    owner_name = next(name for name in passwords if name != "browser-annotator")
    owner = Session(chromium, served.api_url, owner_name, passwords[owner_name])
    expect(owner.page.get_by_text(DATASET, exact=True)).to_be_visible()  # the owner's home lists the dataset
    owner.close()

    annotator = Session(chromium, served.api_url, "browser-annotator", passwords["browser-annotator"])
    annotator.open_dataset()
    by_instruction = {r.instruction: r for r in RECORDS}
    seen = set()
    for number in range(1, len(RECORDS) + 1):
        annotator.goto(f"page={number}&status=pending")
        fields = annotator.fields()
        record = by_instruction[fields["Instruction"][0]]
        seen.add(record.id)
        expected = {"Instruction": record.instruction, "Context": record.context, "Response": record.response}
        for title, (dom_text, rendered) in fields.items():
            # Character for character in the DOM, and what is painted is the same text (tabs and spaces kept).
            assert dom_text == expected[title] and rendered == expected[title].rstrip(), title
        assert set(fields) == {title for title, text in expected.items() if text}
        annotator.nothing_ran()
        decision = {"keep": annotator.page.is_checked("#decision_keep"),
                    "discard": annotator.page.is_checked("#decision_discard")}
        # A confident screen pre-selects keep; an unsure one pre-selects nothing (pressing Submit must not vote).
        assert decision == ({"keep": True, "discard": False} if record.meta["screen_route"] == "pass"
                            else {"keep": False, "discard": False}), record.instruction
    assert seen == {r.id for r in RECORDS}
    token = annotator.page.evaluate("localStorage.getItem('auth._token.local')")
    assert token and token not in annotator.page.title()

    # The record's workbench id is visible to annotators in its metadata; the hidden record is not.
    annotator.open_pending(UNSURE)
    annotator.page.click("button.record-menu__header")
    annotator.page.get_by_text("View metadata").click()
    annotator.page.wait_for_timeout(500)
    body = annotator.page.inner_text("body")
    assert UNSURE.id in body and "toxicity: insult" in body and "workbench_record" not in body
    annotator.page.keyboard.press("Escape")

    # Filter by screen_route (the UI's own menus), then sort by toxicity_max, highest first.
    annotator.goto("page=1&status=pending")
    annotator.page.click("text=Filters")
    annotator.page.get_by_text("Metadata", exact=True).click()
    annotator.page.get_by_text("screen_route", exact=True).click()
    annotator.page.get_by_text("review", exact=True).click()
    annotator.page.wait_for_timeout(800)
    assert annotator.counter() == "1 of 2"
    annotator.page.keyboard.press("Escape")
    annotator.page.click("text=Sort")
    annotator.page.fill("input[placeholder='Filter by...']", "toxicity")
    annotator.page.get_by_text("toxicity_max", exact=True).click()
    annotator.page.wait_for_timeout(800)
    assert "sort=metadata.toxicity_max.asc" in annotator.page.url
    assert annotator.fields()["Instruction"][0] == UNSURE.instruction  # 0.1202 before 0.3
    annotator.goto(annotator.page.url.split("?")[1].replace("toxicity_max.asc", "toxicity_max.desc"))
    assert annotator.fields()["Instruction"][0] == RUDE.instruction and annotator.counter() == "1 of 2"

    # Keep with a rating and a corrected response typed as code; then the Discard button on another record.
    correction = "A list of strings, e.g. List<String> names = List.of(\"a\", \"b\"); & that's it."
    annotator.open_pending(GENERICS)
    annotator.page.click("label[for=quality_4]")
    annotator.page.click("[aria-label='Question: corrected_response'] .content__text")
    annotator.page.keyboard.type(correction)
    annotator.page.click("button.button--submit")
    annotator.page.wait_for_timeout(1500)
    annotator.open_pending(COMPARISON)
    annotator.page.click("button.button--discard")
    annotator.page.wait_for_timeout(1500)
    annotator.nothing_ran()
    annotator.close()

    out = tmp_path / "curated.jsonl"
    result = invoke("annotate", "pull", "--dataset", DATASET, "-o", out, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    [kept] = load_records(out, [])
    assert kept.id == GENERICS.id and kept.instruction == GENERICS.instruction
    assert kept.response == correction and kept.scores["review_quality"] == 4
    assert kept.lineage[-1]["detail"]["original"] == {"response": GENERICS.response}
    [discarded] = load_records(tmp_path / "curated.discarded.jsonl", [])
    assert discarded.id == COMPARISON.id and discarded.instruction == COMPARISON.instruction
    assert discarded.lineage[-1]["reason"] == "discarded by review"
    assert "4 not yet complete" in result.output


def test_float_metadata_ranges_include_the_extremes(review):
    """The server reports a float property's range rounded to 5 decimals; pushed with 4, a range filter between
    the reported ends (what the UI's slider sends) holds every record."""
    served, data_dir, _ = review
    client = api.connect(data_dir=data_dir)
    dataset = api.get_dataset(client, DATASET)
    owner = {"X-Argilla-Api-Key": api.resolve_credentials(data_dir=data_dir)[1]}
    prop = next(m for m in dataset.settings.metadata if m.name == "toxicity_max")
    metrics = httpx.get(f"{served.api_url}/api/v1/metadata-properties/{prop.id}/metrics", headers=owner).json()
    assert (metrics["min"], metrics["max"]) == (0.01, 0.3)
    ranged = {"filters": {"and": [{"type": "range", "scope": {"entity": "metadata", "metadata_property":
                                                              "toxicity_max"}, "ge": 0.12, "le": 0.1202}]}}
    search = f"{served.api_url}/api/v1/datasets/{dataset.id}/records/search"
    found = httpx.post(search, json=ranged, headers=owner).json()
    assert [item["record"]["external_id"] for item in found["items"]] == [UNSURE.id]
    everything = {"filters": {"and": [{"type": "range", "scope": {"entity": "metadata", "metadata_property":
                                                                  "toxicity_max"}, "ge": metrics["min"],
                                       "le": metrics["max"]}]}}
    assert httpx.post(search, json=everything, headers=owner).json()["total"] == len(RECORDS)


CANDIDATES = [Record("Which course teaches <b>statistics</b>?", "", text, source="generated",
                     meta={"compare_group": "ranked-in-a-browser", "candidate": k, "generator": gen})
              for k, (text, gen) in enumerate([
                  ("Maybe <script>window.__pwned = 3</script> STAT 101.", "original"),
                  ("STAT 101: statistics & data (List<String> aside).", "tiny-instruct"),
                  ("No idea.", "tiny-instruct")])]


@pytest.mark.browser
def test_an_annotator_ranks_candidates_with_the_keyboard_and_the_pull_has_the_ranking(argilla, chromium, tmp_path,
                                                                                      invoke):
    served, data_dir = argilla
    path = tmp_path / "candidates.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in CANDIDATES))
    pushed = invoke("annotate", "push", path, "--dataset", "browser-ranking", "--compare", "--data-dir", data_dir)
    assert pushed.exit_code == 0, pushed.output
    added = invoke("annotate", "users", "add", "browser-ranker", "--data-dir", data_dir)
    password = added.output.split("Password (shown once): ")[1].split()[0]

    ranker = Session(chromium, served.api_url, "browser-ranker", password)
    ranker.page.get_by_text("browser-ranking", exact=True).click()
    ranker.page.wait_for_selector(".text_field_component")
    ranker.page.wait_for_timeout(300)
    fields = ranker.fields()
    assert {title: dom for title, (dom, _) in fields.items()} == {
        "Instruction": CANDIDATES[0].instruction, **{f"Response {k + 1}": r.response for k, r in enumerate(CANDIDATES)}}
    ranker.nothing_ran()
    # The ranking question's cards; a digit key puts the focused card in that rank (Argilla's keyboard ranking).
    for slot, rank in (("response_2", "1"), ("response_1", "2"), ("response_3", "3")):
        ranker.page.focus(f".draggable [id='{slot}'][tabindex='0']")
        ranker.page.keyboard.press(rank)
        ranker.page.wait_for_timeout(400)
    ranker.page.click("label[for=decision_keep]")
    ranker.page.click("label[for=quality_4]")
    ranker.page.click("button.button--submit")
    ranker.page.wait_for_timeout(1500)
    ranker.nothing_ran()
    ranker.close()

    out = tmp_path / "ranked.jsonl"
    result = invoke("annotate", "pull", "--dataset", "browser-ranking", "-o", out, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    ranked = {r.response: r.meta["ranking"] for r in load_records(out, [])}
    assert {text: r["position"] for text, r in ranked.items()} == {
        CANDIDATES[1].response: 1, CANDIDATES[0].response: 2, CANDIDATES[2].response: 3}
    assert ranked[CANDIDATES[1].response]["ranks"] == {"browser-ranker": 1}
