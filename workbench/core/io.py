"""Reading and writing records: JSONL with line-numbered problems, Parquet through `datasets`, atomic writes.

Every reader takes a `problems` list and appends one Problem per bad line instead of raising, so the good
lines are always kept and the bad ones can be written to a quarantine file with their reason.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError, OutputError
from workbench.core.records import DEFAULT_MAX_FIELD_BYTES, Record, check_record_dict

BOM = b"\xef\xbb\xbf"
JSON_COLUMNS = ("lineage", "scores", "meta")  # stored as JSON strings in Parquet/Arrow


@dataclass(frozen=True)
class Problem:
    """One bad line: where it is, which field, why, and the line itself."""

    file: str
    line: int
    field: str  # "-" for whole-line problems (invalid JSON or UTF-8, ...)
    reason: str
    raw: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: the mode a plain open() would give new files (mkstemp makes them 0600)


def workbench_home() -> Path:
    """Per-user state (caches, the local Argilla data dir): $WORKBENCH_HOME, default ~/.workbench."""
    return Path(os.environ.get("WORKBENCH_HOME") or "~/.workbench").expanduser()


# The write failures that are the place's, not the program's: said in one line naming the file.
_PLACE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG,
                 errno.EISDIR, errno.ENOTDIR)


def check_output(path: str | Path, folder: bool = False) -> Path:
    """Where an output named PATH is written: PATH itself, or the file a symlink points to (the link stays). Refused
    (OutputError) when what is there is not what would be written: a device (/dev/null, /dev/full), a FIFO or a
    socket is never replaced by a regular file, nor a folder by a file or a file by a folder."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if path.is_symlink() and os.path.exists(path) and not os.path.lexists(target):
        target = path  # a link to what has no path (/dev/stdout on a pipe: "pipe:[123]"): judged by what it is
    folder_above = next((p for p in Path(os.path.abspath(target)).parents if p.exists()), None)
    if folder_above is not None and not os.access(folder_above, os.W_OK):  # said before the work, not after it
        raise OutputError(f"{path}: cannot write: {folder_above} is read-only for this user",
                          hint="name an output in a folder you can write")
    if not os.path.lexists(target):
        return target
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target  # a dangling link: the file it names is made
    if stat.S_ISDIR(mode) and not folder:
        raise OutputError(f"{path}: is a folder, and this output is a file", hint="name a file (for example "
                          f"{Path(path) / 'records.jsonl'})")
    if stat.S_ISREG(mode) and folder:
        raise OutputError(f"{path}: is a file, and this output is a folder", hint="name a folder")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OutputError(f"{path}: is {kind}, not a regular file: outputs are written to a file and renamed into "
                          "place, which would replace it", hint="write to a file, then copy or pipe that file")
    return target


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", permissions: int | None = None):
    """Open a temp file beside `path`; on success fsync it and rename it over `path`, else remove it.
    The file gets `permissions` (e.g. 0o600 for secrets), else the mode a plain open() would give it. A symlink's
    target is written (the link stays); a device, FIFO or folder at `path` is refused (`check_output`); a read-only
    folder or a full disk is one OutputError naming the file."""
    path = check_output(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, permissions if permissions is not None else 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        if e.errno in _PLACE_ERRORS:
            raise OutputError(f"{path}: cannot write: {e.strerror}") from None
        raise
    except BaseException:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str, permissions: int | None = None) -> None:
    with atomic_open(path, permissions=permissions) as f:
        f.write(text)


def atomic_write_json(path: str | Path, data: Any, permissions: int | None = None) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", permissions)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Magic bytes of the compressed files people pass for JSON lines, and how to unpack each (gzip is read as it is).
COMPRESSED = ((b"\x1f\x8b", "gzip", "gunzip -k"), (b"BZh", "bzip2", "bunzip2 -k"), (b"\xfd7zXZ\x00", "xz", "unxz -k"),
              (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"), (b"PK\x03\x04", "zip", "unzip"))
# Byte-order marks of the encodings that are not UTF-8 (UTF-32 first: its little-endian mark starts like UTF-16's).
ENCODINGS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe", "UTF-16LE"),
             (b"\xfe\xff", "UTF-16BE"))


def is_gzip(path: str | Path) -> bool:
    return _head(path).startswith(b"\x1f\x8b")


def check_readable(path: str | Path) -> None:
    """An InputError naming PATH if it cannot be read as a file (missing, a folder, no permission)."""
    _head(path)


def _head(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(6)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None


def refuse_compressed(path: str | Path, gzip_ok: bool = False) -> None:
    """A compressed file (but gzip where the reader unpacks it) or a UTF-16/32 file is one clear error, not a
    line-by-line report of binary garbage; a file that cannot be read (a folder, say) one line too."""
    head = _head(path)
    for magic, kind, unpack in COMPRESSED:
        if head.startswith(magic) and not (gzip_ok and kind == "gzip"):
            raise InputError(f"{path}: a {kind}-compressed file, not JSON lines",
                             hint=f"unpack it first: {unpack} {path}")
    for mark, encoding in ENCODINGS:
        if head.startswith(mark):
            raise InputError(f"{path}: {encoding} text; record files are UTF-8",
                             hint=f"convert it: iconv -f {encoding} -t UTF-8 {path} > {Path(path).stem}.utf8.jsonl")


def refuse_overwrite(output: str | Path, inputs: Iterable[str | Path], what: str = "this command") -> None:
    """An output never replaces an input: refuse before anything is written."""
    if Path(output).resolve() in {Path(p).resolve() for p in inputs}:
        raise InputError(f"{output}: is an input of {what} and would be written over",
                         hint="write the output to another file")


def read_json_lines(path: str | Path, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any], str]]:
    """Yield (line number, object, raw line) for each line that is a JSON object; the rest go to `problems`.

    Blank lines are skipped. A UTF-8 byte-order mark at the start of the file is accepted; a gzip file (by its
    magic bytes, whatever its name) is read through gzip.
    """
    name = str(path)
    refuse_compressed(path, gzip_ok=True)
    try:
        f = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e.strerror}") from e
    with f:
        previous: bytes | None = None
        number = 0
        lines = iter(f)
        # Look one line ahead so the last line can be recognised (a truncated write lacks its newline).
        while True:
            try:
                current = next(lines)
            except StopIteration:
                break
            except (OSError, EOFError) as e:  # a damaged or cut gzip stream
                raise InputError(f"{name}: a damaged gzip file after line {number}: {e}") from None
            if previous is not None:
                yield from _parse_line(name, number, previous, False, problems)
            number += 1
            previous = current[len(BOM):] if number == 1 and current.startswith(BOM) else current
        if previous is not None:
            yield from _parse_line(name, number, previous, True, problems)


def _parse_line(name: str, number: int, raw: bytes, last: bool, problems: list[Problem]):
    complete = raw.endswith(b"\n")
    raw = raw.rstrip(b"\r\n")
    shown = raw.decode("utf-8", "backslashreplace")
    if not raw.strip():
        return
    if b"\x00" in raw:
        column = raw.index(b"\x00") + 1
        problems.append(Problem(name, number, "-", f"NUL byte at column {column}", shown))
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append(Problem(name, number, "-", f"invalid UTF-8 at byte {e.start + 1}", shown))
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if last and not complete:
            reason = f"truncated last line: no newline at end of file and the JSON is incomplete ({e.msg})"
        else:
            reason = f"invalid JSON: {e.msg} at column {e.colno}"
        problems.append(Problem(name, number, "-", reason, shown))
        return
    if not isinstance(obj, dict):
        kind = {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(type(obj), "a number")
        problems.append(Problem(name, number, "-", f"expected a JSON object, got {kind}", shown))
        return
    yield number, obj, text


def records_from_objects(name: str, rows: Iterable[tuple[int, dict[str, Any], str]], problems: list[Problem],
                         *, seen_ids: dict[str, str] | None = None, allow_unknown_categories: bool = False,
                         max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES) -> Iterator[Record]:
    """Check each (line, object, raw) as a Record; bad ones and repeated ids go to `problems`."""
    seen_ids = {} if seen_ids is None else seen_ids
    for number, obj, raw in rows:
        found = check_record_dict(obj, allow_unknown_categories=allow_unknown_categories,
                                  max_field_bytes=max_field_bytes)
        if found:
            problems.extend(Problem(name, number, f, reason, raw) for f, reason in found)
            continue
        record = Record.from_checked(obj)
        where = f"{name}:{number}"
        if record.id in seen_ids:
            first = seen_ids[record.id]
            reason = (f"duplicate id {record.id!r} (first at {first})" if obj.get("id")
                      else f"exact duplicate of {first} (same instruction, context and response)")
            problems.append(Problem(name, number, "id" if obj.get("id") else "-", reason, raw))
            continue
        seen_ids[record.id] = where
        yield record


def read_records(path: str | Path, problems: list[Problem], **options: Any) -> Iterator[Record]:
    """Valid records of a record file (`record_rows`), streamed; problems are appended to `problems`.

    Options: seen_ids (a dict shared across files to catch repeated ids), allow_unknown_categories,
    max_field_bytes.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    return records_from_objects(str(path), record_rows(path, problems), problems, **options)


def record_rows(path: str | Path, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(line, object, raw text) of every object in a record file, whatever its form: Parquet (by the name), a JSON
    array (by its first character, `[`: Alpaca's alpaca_data.json), JSON lines, each gzip-compressed or not (by
    the magic bytes). The one reader every command uses."""
    path = Path(path)
    if path.suffix == ".parquet":
        return parquet_rows(path, problems)
    if is_json_array(path):
        return json_array_rows(path, problems)
    return read_json_lines(path, problems)


def is_json_array(path: str | Path) -> bool:
    if is_gzip(path):
        return False
    with open(path, "rb") as f:
        return f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def json_array_rows(path: str | Path, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any], str]]:
    """Elements of a JSON array file, each with the line it starts on."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        problems.append(Problem(str(path), line, "-", f"invalid UTF-8 at byte {e.start + 1}; file not read"))
        return
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            problems.append(Problem(str(path), line, "-", f"invalid JSON: {e.msg}; the rest of the array is unreadable",
                                    text[pos: pos + 200]))
            return
        raw = text[pos:end]
        pos = end
        if isinstance(obj, dict):
            yield line, obj, raw
        else:
            problems.append(Problem(str(path), line, "-", "expected a JSON object in the array", raw))


def load_records(path: str | Path, problems: list[Problem], **options: Any) -> list[Record]:
    return list(read_records(path, problems, **options))


def record_to_row(record: Record) -> dict[str, Any]:
    row = record.to_dict()
    for column in JSON_COLUMNS:
        row[column] = json.dumps(row[column], ensure_ascii=False)
    return row


def parquet_rows(path: Path, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(row number, row, row as JSON) of a Parquet file; our JSON-string columns are decoded."""
    import datasets

    datasets.disable_progress_bars()  # a file read is not a download: its bars would bury the command's output

    try:
        dataset = datasets.Dataset.from_parquet(str(path), keep_in_memory=True)
    except Exception as e:  # pyarrow raises many types for a damaged file; all mean the same to the user
        raise InputError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from e
    yield from _dataset_rows(str(path), dataset, problems)


def _dataset_rows(name: str, dataset, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any], str]]:
    for number, row in enumerate(dataset, start=1):
        row = dict(row)
        bad = False
        for column in JSON_COLUMNS:
            if isinstance(row.get(column), str):
                try:
                    row[column] = json.loads(row[column])
                except json.JSONDecodeError as e:
                    problems.append(Problem(name, number, column, f"invalid JSON string: {e.msg}", str(row)))
                    bad = True
        if not bad:
            yield number, row, json.dumps(row, ensure_ascii=False, default=str)


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write records atomically as the name says: Parquet (.parquet), a JSON array (.json), gzip-compressed JSON
    lines (.gz), else JSON lines; returns the count."""
    path = Path(path)
    if path.suffix == ".parquet":
        dataset = to_dataset(records)
        with atomic_open(path, "wb") as f:
            dataset.to_parquet(f)
        return len(dataset)
    count = 0
    if path.suffix == ".json":  # one element per line, so that a problem's line number still finds it
        with atomic_open(path) as f:
            f.write("[")
            for record in records:
                f.write(("\n" if not count else ",\n") + record.to_json())
                count += 1
            f.write("\n]\n")
        return count
    if path.suffix == ".gz":  # NAME.jsonl.gz: JSON lines, gzip-compressed
        with atomic_open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            for record in records:
                f.write((record.to_json() + "\n").encode("utf-8"))
                count += 1
        return count
    with atomic_open(path) as f:
        for record in records:
            f.write(record.to_json() + "\n")
            count += 1
    return count


def write_problems(path: str | Path, problems: Iterable[Problem]) -> int:
    """Write the quarantine file: one JSON object per bad line with file, line, field, reason and raw."""
    count = 0
    with atomic_open(path) as f:
        for problem in problems:
            f.write(json.dumps(asdict(problem), ensure_ascii=False) + "\n")
            count += 1
    return count


def to_dataset(records: Iterable[Record]):
    """A `datasets.Dataset` with one row per record; lineage, scores and meta as JSON strings."""
    import datasets

    datasets.disable_progress_bars()

    rows = [record_to_row(r) for r in records]
    features = datasets.Features({
        "id": datasets.Value("string"), "instruction": datasets.Value("string"),
        "context": datasets.Value("string"), "response": datasets.Value("string"),
        "category": datasets.Value("string"), "source": datasets.Value("string"),
        "lineage": datasets.Value("string"), "scores": datasets.Value("string"), "meta": datasets.Value("string"),
    })
    return datasets.Dataset.from_list(rows, features=features)


def from_dataset(dataset, problems: list[Problem], name: str = "<dataset>", **options: Any) -> Iterator[Record]:
    """Records from a `datasets.Dataset` in the to_dataset layout (row numbers stand in for lines)."""
    return records_from_objects(name, _dataset_rows(name, dataset, problems), problems, **options)


def validate_files(paths: Iterable[str | Path], **options: Any) -> tuple[list[Problem], int]:
    """Check every line of every file; ids must be unique across all of them. Returns (problems, valid)."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    valid = sum(1 for path in paths for _ in read_records(path, problems, seen_ids=seen, **options))
    return problems, valid


def line_ranges(path: str | Path, parts: int) -> list[tuple[int, int, int]]:
    """Split a file into about `parts` byte ranges on line boundaries: (start, end, number of its first line),
    so that several processes can read one JSONL file and still name lines correctly."""
    refuse_compressed(path)
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            f.seek(max(cuts[-1], size * k // parts))
            f.readline()  # move to the start of the next line
            if f.tell() >= size:
                break
            if f.tell() > cuts[-1]:
                cuts.append(f.tell())
        cuts.append(size)
        ranges, line = [], 1
        for start, end in zip(cuts, cuts[1:]):
            ranges.append((start, end, line))
            f.seek(start)
            line += f.read(end - start).count(b"\n")
    return ranges or [(0, 0, 1)]


def read_json_range(path: str | Path, start: int, end: int, first_line: int,
                    problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any], str]]:
    """read_json_lines for the lines in bytes [start, end) of a file whose line there is `first_line`."""
    name = str(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    if start == 0 and data.startswith(BOM):
        data = data[len(BOM):]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    complete = data.endswith(b"\n")
    for k, raw in enumerate(lines):
        last = end == size and k == len(lines) - 1
        yield from _parse_line(name, first_line + k, raw + (b"\n" if not last or complete else b""), last, problems)
