"""The demo's reviewers: three automatic accounts, `demo-reviewer-1..3` (first name "DEMO REVIEWER (automatic)"),
that answer through the real REST API exactly as annotators clicking Submit in the UI do, so the demo runs the
whole review loop without a person. Their rules are simple and deliberately different, so that the pull has
majorities, disagreements and corrections to resolve. Never mistake their votes for human judgement: the lineage
names them.

The other mode is people (`--review manual`): the run stops after the push and resumes once every record is
complete (`annotation.review.review`).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from annotation import client as argilla_client
from annotation.mapping import texts_of
from annotation.questions import EMPTY_SLOT, ON_THE_PAGE, PAGE_ANSWERS, Question, questions_for, slot
from workbench.core.io import atomic_write_json
from workbench.core.text import grounding

REVIEWERS = (
    ("demo-reviewer-1", "strict"),  # short or flagged responses go; cuts a response's unfinished last sentence
    ("demo-reviewer-2", "lenient"),  # keeps almost everything, rates generously, never corrects
    ("demo-reviewer-3", "grounded"),  # for document questions: the answer must come from the context
)
FIRST_NAME = "DEMO REVIEWER (automatic)"


def judge(style: str, fields: dict, metadata: dict) -> dict:
    """One reviewer's answers for one record."""
    instruction, context = fields.get("instruction") or "", fields.get("context") or ""
    response = fields.get("response") or ""
    words = len(response.split())
    flagged = metadata.get("screen_route") == "review"
    if style == "lenient":
        keep = words >= 3
    elif style == "grounded" and context:
        keep = words >= 3 and grounding(response, context) >= 0.5 and not flagged
    else:
        keep = words >= 6 and len(instruction.split()) >= 4 and not flagged
    answers = {"decision": "keep" if keep else "discard",
               "quality": max(1, min(5, 1 + words // 12 + (style == "lenient")))}
    if keep and style != "lenient":
        fixed = instruction.strip()
        fixed = fixed[:1].upper() + fixed[1:]
        if fixed != instruction:
            answers["corrected_instruction"] = fixed
        finished = complete_sentences(response)
        if finished != response:
            answers["corrected_response"] = finished
    return answers


def rank(style: str, fields: dict, metadata: dict) -> dict:
    """One reviewer's answers for one comparison: a ranking by the reviewer's rule (equal scores share a rank;
    an empty slot comes last), kept unless no response says anything."""
    context = fields.get("context") or ""
    responses = {name: text for name, text in fields.items() if name.startswith("response_")}

    def score(text: str) -> float:
        if text == EMPTY_SLOT:
            return -1.0
        words = len(text.split())
        if style == "lenient":
            return float(min(words, 60))  # longer is better, up to a point
        if style == "grounded" and context:
            return round(grounding(text, context), 1) + (words >= 3)
        return float(words >= 6) + (complete_sentences(text) == text.strip()) + min(words, 40) / 100

    scores = {name: score(text) for name, text in responses.items()}
    ranking = [{"value": name, "rank": 1 + sum(other > s for other in scores.values())} for name, s in scores.items()]
    usable = any(len(text.split()) >= 3 for text in responses.values() if text != EMPTY_SLOT)
    flagged = metadata.get("screen_route") == "review" and style != "lenient"
    best = responses[max(scores, key=scores.get)]
    return {"decision": "keep" if usable and not flagged else "discard", "ranking": ranking,
            "quality": max(1, min(5, 1 + len(best.split()) // 12 + (style == "lenient")))}


def check_question(style: str, fields: dict, metadata: dict) -> dict:
    """One reviewer's answers for one drafted eval question (`annotation.questions.SUITE_QUESTIONS`): whether the page
    answers it is read off the page (the share of the reference's content words the page has: strict wants all of
    them, grounded most, lenient some); a question is kept when it reads as one; strict shortens a "Label: value"
    reference to its value (what a student's answer is scored against), grounded discards a question it finds
    answered without its reference on the page."""
    question, page, reference = (fields.get(name) or "" for name in ("instruction", "context", "response"))
    found = grounding(reference, page) if reference.strip() else 0.0
    on_page = found >= {"strict": 0.99, "grounded": 0.6}.get(style, 0.3)
    keep = len(question.split()) >= 4 and question.rstrip().endswith("?")
    answers = {"decision": "keep" if keep else "discard", ON_THE_PAGE: PAGE_ANSWERS[0] if on_page else PAGE_ANSWERS[1]}
    if style == "strict" and keep and on_page:
        label, colon, value = reference.partition(":")
        if colon and len(label.split()) <= 4 and value.strip():
            answers["corrected_response"] = value.strip().rstrip(".")
    return answers


def answers_of(style: str, fields: dict, metadata: dict, questions: tuple[Question, ...] | None = None) -> dict:
    """One reviewer's answers for one server record: by the rules above (`rank` for a comparison, `check_question`
    for a drafted eval question, `judge` for a record), and to any question they leave unanswered, its kind's demo
    answer (`QuestionKind.demo`; the built-in
    kinds have none, so what the rules leave empty stays empty). `questions`: other than the dataset type's set."""
    compare = slot(1) in fields
    drafted = questions is not None and any(q.name == ON_THE_PAGE for q in questions)
    answers = (rank if compare else check_question if drafted else judge)(style, fields, metadata)
    for question in questions_for(compare) if questions is None else questions:
        if question.name not in answers:
            value = question.kind_spec.demo(question, style, fields, metadata)
            if value is not None:
                answers[question.name] = value
    return answers


def complete_sentences(text: str) -> str:
    """The text without an unfinished last sentence (a completion cut at max_new_tokens), when what is left
    still says something (three words or more)."""
    text = text.strip()
    if not text or text[-1] in ".!?)\"'":
        return text
    end = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind(".\n"))
    kept = text[:end + 1] if end > 0 else text
    return kept if len(kept.split()) >= 3 else text


def ensure_reviewers(client, data_dir: Path, workspace: str) -> dict[str, str]:
    """username -> password; created on first use, passwords kept in DATA_DIR/demo-reviewers.json (0600)."""
    path = Path(data_dir) / "demo-reviewers.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    for username, _ in REVIEWERS:
        if username not in saved:
            saved[username] = argilla_client.add_user(client, username, "annotator", workspace,
                                              password=secrets.token_urlsafe(9), first_name=FIRST_NAME)
            atomic_write_json(path, saved, permissions=0o600)  # passwords: the owner alone may read them
    return saved


def review_all(client, dataset: str, workspace: str, data_dir: Path,
               progress: Callable[[int, int], None] | None = None,
               questions: tuple[Question, ...] | None = None) -> Counter:
    """Every demo reviewer answers every record it has not answered yet (a comparison with a ranking; `answers_of`);
    returns counts of decisions."""
    if questions is None:  # the set the dataset asks (`workbench annotate review-as-demo` names none)
        questions = argilla_client.questions_of(argilla_client.get_dataset(client, dataset, workspace))
    passwords = ensure_reviewers(client, data_dir, workspace)
    api_url = argilla_client.api_url_of(client)
    ids = {name: user_id for user_id, name in argilla_client.user_names(client).items()}
    items = list(argilla_client.fetch(client, dataset, workspace))
    counts: Counter = Counter()
    total, done = len(items) * len(REVIEWERS), 0
    for username, style in REVIEWERS:
        token = argilla_client.user_token(api_url, username, passwords[username])
        user_id = ids[username]
        for item in items:
            answered = any(str(r["user_id"]) == user_id for r in item.get("responses") or [])
            if not answered:
                answers = answers_of(style, texts_of(item), item.get("metadata") or {}, questions)
                argilla_client.submit_response(api_url, token, item["id"], answers)
                counts[f"{username}: {answers['decision']}"] += 1
            done += 1
            if progress:
                progress(done, total)
    return counts
