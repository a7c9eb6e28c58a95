"""`workbench annotate ...`: human review in Argilla — a local server, accounts, push, pull, export, agreement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from annotation import client, review, server
from workbench import api, display
from workbench.cli.base import AsJson, Port, Strict, group, opt, quarantined, sibling
from workbench.cli.options import ARGILLA, ArgillaServer, grouped
from workbench.core.io import check_readable
from workbench.display import console, err_console, progress_bar

annotate_app = group("Human review in Argilla: serve a local server, push, pull the curated set back.")
users_app = group("Accounts on the Argilla server.")
annotate_app.add_typer(users_app, name="users")
GROUPS = {"annotate": annotate_app}

DataDir = Annotated[Path | None, opt("The local server's folder (default ~/.workbench/argilla).")]
Dataset = Annotated[str, opt("Argilla dataset name.", "--dataset")]
Workspace = Annotated[str, opt("Argilla workspace.")]
WORKSPACE = review.DEFAULT_WORKSPACE


@annotate_app.command("serve")
def annotate_serve(port: Port = 6900, data_dir: DataDir = None,
                   host: Annotated[str, opt("0.0.0.0 lets others on the network reach it.")] = "127.0.0.1",
                   database: Annotated[str | None, opt("A PostgreSQL URL (postgresql://USER:PASSWORD@HOST/DB) for a "
                                                       "class's server; the data dir keeps it (default: SQLite in "
                                                       "the data dir).")] = None,
                   workers: Annotated[int, typer.Option(help="Server processes: about one per core for a class "
                                                        "(they share the database).", min=1, max=64)] = 1):
    """Start a local Argilla server (SQLite or PostgreSQL, a Redis, no Elasticsearch) in the background.

    Example: workbench annotate serve --port 6900 --workers 4 --database postgresql://argilla:PASSWORD@127.0.0.1/argilla"""
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"Warning: listening on {host}: anyone who can reach this machine can reach the server "
                          "(annotators log in with their own passwords).", markup=False)
    with console.status("Starting argilla-server..."):
        served = api.serve_argilla(data_dir, host=host, port=port, database=database, workers=workers)
    display.served_summary(served, data_dir or server.default_data_dir())


@annotate_app.command("stop")
def annotate_stop(data_dir: DataDir = None):
    """Stop the local Argilla server (and the Redis it started).

    Example: workbench annotate stop --data-dir ~/.workbench/argilla"""
    where = data_dir or server.default_data_dir()
    console.print(f"Stopped the server of {where}" if server.stop(data_dir) else f"No server running for {where}")


@annotate_app.command("setup")
def annotate_setup(venv: Annotated[Path | None, opt("Where to build it.")] = None):
    """Build argilla-server's own environment (for a pip-installed workbench; `make setup` does it in a checkout).

    Example: workbench annotate setup"""
    with console.status("Installing argilla-server into its own environment..."):
        path = server.setup(venv)
    console.print(f"argilla-server is installed in {path}")


@users_app.command("add")
@grouped
def annotate_users_add(username: Annotated[str | None, typer.Argument(help="Login name (or --from a roster).")] = None,
                       role: Annotated[str, opt("annotator, admin or owner.")] = "annotator",
                       roster: Annotated[Path | None, opt("A class roster: CSV with a header username,name,role.",
                                                          "--from")] = None,
                       passwords: Annotated[Path | None, opt("Where --from writes the passwords (0600; default "
                                                             "ROSTER.passwords.csv).")] = None,
                       workspace: Workspace = WORKSPACE, argilla: ArgillaServer = ARGILLA, strict: Strict = False):
    """Create an account in a workspace and print its password once; or one per student of a roster.

    Example: workbench annotate users add alice --role annotator
    (a class: workbench annotate users add --from roster.csv)"""
    if roster is not None:
        check_readable(roster)  # a missing roster is named before anything else
    if (username is None) == (roster is None):
        raise typer.BadParameter("give a USERNAME or --from ROSTER.csv, not both or neither")
    connected = api.connect_argilla(**vars(argilla))
    if roster is None:
        password = client.add_user(connected, username, role, workspace)
        console.print(f"Created {role} {username!r} in workspace {workspace!r} on {client.api_url_of(connected)}")
        console.print(f"Password (shown once): {password}", markup=False)
        return
    rows, problems = client.read_roster(roster)
    result = client.add_roster(connected, rows, passwords or sibling(roster, ".passwords.csv"), workspace)
    for line in result.summary_lines():
        console.print(line, markup=False)
    quarantined(problems, sibling(roster, ".quarantine.jsonl"), strict)


@users_app.command("list")
@grouped
def annotate_users_list(argilla: ArgillaServer = ARGILLA, as_json: AsJson = False):
    """The accounts on the server: username, name, role, when made.

    Example: workbench annotate users list"""
    users = client.list_users(api.connect_argilla(**vars(argilla)))
    if as_json:
        console.print_json(json.dumps(users))
        return
    for user in users:
        console.print(f"{user['username']:<24} {user['role']:<10} {user['created']}  {user['name']}", markup=False)
    console.print(f"{len(users)} account(s)")


@users_app.command("reset-password")
@grouped
def annotate_users_reset_password(username: Annotated[str, typer.Argument(help="Login name.")],
                                  argilla: ArgillaServer = ARGILLA):
    """Give a student a new password (the old one stops working) and print it once.

    Example: workbench annotate users reset-password alice"""
    password = client.reset_password(api.connect_argilla(**vars(argilla)), username)
    console.print(f"New password for {username!r} (shown once): {password}", markup=False)


@users_app.command("remove")
@grouped
def annotate_users_remove(username: Annotated[str, typer.Argument(help="Login name.")],
                          argilla: ArgillaServer = ARGILLA):
    """Delete an account, and the responses it submitted (`annotate export` first keeps them).

    Example: workbench annotate users remove alice"""
    client.remove_user(api.connect_argilla(**vars(argilla)), username)
    console.print(f"Removed {username!r}")


@annotate_app.command("push")
@grouped
def annotate_push(
    records: Annotated[Path, typer.Argument(help="Records to review (JSONL).")], dataset: Dataset,
    workspace: Workspace = WORKSPACE,
    min_submitted: Annotated[int, typer.Option(help="Answers a record needs (submitted, or the Discard button).",
                                               min=1)] = api.PUSH.min_submitted,
    batch_size: Annotated[int, typer.Option(help="Records per request (argilla-server takes at most 500).", min=1,
                                            max=500)] = api.PUSH.batch_size,
    in_flight: Annotated[int, typer.Option(help="Batches sent at once: up to the server's --workers.", min=1,
                                           max=16)] = api.PUSH.in_flight,
    compare: Annotated[bool, opt("The records are candidates (`generate responses`): one record per group with "
                                 "its K responses and a ranking question.")] = api.PUSH.compare,
    adjudicate: Annotated[bool, opt("The records are a pull's disputed ones: each shown with every annotator's "
                                    "answers side by side, for one adjudicator.")] = api.PUSH.adjudicate,
    argilla: ArgillaServer = ARGILLA, strict: Strict = False,
):
    """Push records to an Argilla dataset (created if needed; pushing again updates, never duplicates).

    Example: workbench annotate push screened.jsonl --dataset advisor-round-1
    (candidates to rank: workbench annotate push candidates.jsonl --dataset advisor-ranking --compare;
    the disputes for one adjudicator: workbench annotate push curated.disputed.jsonl --dataset round-1-adjudication
    --adjudicate)"""
    with progress_bar(f"Pushing to {dataset}") as update:
        result, problems = api.push(records, dataset, workspace=workspace, min_submitted=min_submitted,
                                    batch_size=batch_size, compare=compare, adjudicate=adjudicate, progress=update,
                                    in_flight=in_flight, **vars(argilla))
    display.push_summary(result)
    quarantined(problems, sibling(records, ".quarantine.jsonl"), strict)


@annotate_app.command("pull")
@grouped
def annotate_pull(
    dataset: Dataset, output: Annotated[Path, opt("Curated records (JSONL).", "-o", "--output")],
    disputed: Annotated[Path | None, opt("Records the policy cannot decide (default: beside -o).")] = None,
    policy: Annotated[str, opt("majority, unanimous or any-discard.")] = api.PULL.policy,
    since_last: Annotated[bool, opt("Only records completed since the previous pull.")] = False,
    exclude: Annotated[list[str] | None, opt("Leave out this annotator's answers (the set rebuilt without their "
                                             "votes); repeat for several.", "--exclude-annotator")] = None,
    workspace: Workspace = WORKSPACE, argilla: ArgillaServer = ARGILLA,
):
    """Pull the reviewed records: the answers resolved by the policy, corrections applied.

    Example: workbench annotate pull --dataset advisor-round-1 -o curated.jsonl --policy majority"""
    display.pull_summary(api.pull(dataset, output, disputed=disputed, policy=policy, since_last=since_last,
                                  workspace=workspace, exclude=exclude or (), **vars(argilla)))


@annotate_app.command("review-as-demo")
@grouped
def annotate_review_as_demo(dataset: Dataset, workspace: Workspace = WORKSPACE, argilla: ArgillaServer = ARGILLA):
    """Have the three labelled demo reviewers answer every record of a dataset (a dry run of a class exercise before
    the students review; they never stand in for people in a real review).

    Example: workbench annotate review-as-demo --dataset advisor-round-1"""
    with progress_bar(f"Demo reviewers on {dataset}") as update:
        counts = api.review_as_demo(dataset, workspace=workspace, progress=update, **vars(argilla))
    console.print(f"The demo reviewers answered {sum(counts.values()):,} record(s) of {workspace}/{dataset} they had "
                  "not answered yet; pull them with `workbench annotate pull`")
    display.lines([f"  {n:,}  {what}" for what, n in sorted(counts.items())])


@annotate_app.command("export")
@grouped
def annotate_export(dataset: Dataset, output: Annotated[Path, opt("JSONL backup.", "-o", "--output")],
                    workspace: Workspace = WORKSPACE, argilla: ArgillaServer = ARGILLA):
    """Every record with all raw responses (user, status, values, times): a backup that needs no server.

    Example: workbench annotate export --dataset advisor-round-1 -o advisor-round-1.backup.jsonl"""
    count = api.export_review(dataset, output, workspace=workspace, **vars(argilla))
    console.print(f"Exported {count:,} records of {workspace}/{dataset} to {output}")


@annotate_app.command("agreement")
@grouped
def annotate_agreement(
    dataset: Annotated[str | None, opt("Argilla dataset name.", "--dataset")] = None,
    export_file: Annotated[Path | None, opt("An `annotate export` file instead of a server.", "--from")] = None,
    workspace: Workspace = WORKSPACE, argilla: ArgillaServer = ARGILLA, as_json: AsJson = False,
):
    """Agreement per question (percent, Cohen's kappa per pair, Krippendorff's alpha) and per-annotator counts.

    Example: workbench annotate agreement --dataset advisor-round-1"""
    if (dataset is None) == (export_file is None):
        raise typer.BadParameter("give --dataset (a server) or --from (an export file)", param_hint="--dataset")
    result, problems = api.agreement(dataset, export_file=export_file, workspace=workspace, **vars(argilla))
    if export_file:
        quarantined(problems, sibling(export_file, ".quarantine.jsonl"), False)
    if as_json:
        return console.print_json(json.dumps(agreement_dict(result)))
    for table in display.agreement_tables(result, dataset or str(export_file)):
        console.print(table)


@annotate_app.command("progress")
@grouped
def annotate_progress(
    dataset: Annotated[str | None, opt("Argilla dataset name.", "--dataset")] = None,
    export_file: Annotated[Path | None, opt("An `annotate export` file instead of a server.", "--from")] = None,
    workspace: Workspace = WORKSPACE, argilla: ArgillaServer = ARGILLA, as_json: AsJson = False,
):
    """Each student's work: submitted, discarded, drafts, agreement with the others, seconds per record; flags.

    Example: workbench annotate progress --dataset advisor-round-1"""
    students, problems = api.class_progress(dataset, export_file=export_file, workspace=workspace, **vars(argilla))
    if export_file:
        quarantined(problems, sibling(export_file, ".quarantine.jsonl"), False)
    if as_json:
        return console.print_json(json.dumps([s.to_dict() for s in students]))
    console.print(display.progress_table(students, dataset or str(export_file)))
    for student in students:
        for flag in student.flags:
            console.print(f"Look at {student.username}: {flag}", markup=False)


def agreement_dict(result) -> dict:
    from annotation import agreement

    return agreement.to_dict(result)
