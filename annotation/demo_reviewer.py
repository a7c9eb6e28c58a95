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
               progress: Callable[[int, int], None] | None = None) -> Counter:
    """Every demo reviewer answers every record it has not answered yet; returns counts of decisions."""
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
                answers = judge(style, texts_of(item), item.get("metadata") or {})
                argilla_client.submit_response(api_url, token, item["id"], answers)
                counts[f"{username}: {answers['decision']}"] += 1
            done += 1
            if progress:
                progress(done, total)
    return counts
