"""Unified diffs from a coding model: found in its answer, checked strictly, applied in memory.

    files = apply_answer(answer, {"src/app/dates.py": text})   # {path: new text} of the changed files
    # or PatchRefused, whose message is what the model is told

A diff is refused before anything runs when it:
- is not in a ```diff block, or has no `--- a/PATH` / `+++ b/PATH` section with `@@` hunks;
- names a path that is absolute, climbs out (`..`), goes under `.git`, or is not one of the given files
  (the code surfaces): nothing else may change;
- creates a file (`/dev/null` as the old side, `new file mode`), deletes one (`/dev/null` as the new
  side, `deleted file mode`), renames or copies one, changes a mode (`old mode`/`new mode`), makes a
  symlink (mode 120000) or is binary;
- has a hunk whose context and removed lines are not in the file (compared without trailing blanks,
  searched outward from the line the hunk names, hunks in order and not overlapping: no fuzz);
- changes nothing, or leaves a Python file that no longer compiles.

The line counts in `@@` headers are recounted from the hunk body (as `git apply --recount` does):
models miscount them, and the body says unambiguously what changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

FENCE = re.compile(r"^```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
NO_EOL = "\\ No newline at end of file"
DIFF_LANGS = {"diff", "patch", "udiff"}

# git's extended header lines that say something other than "change these lines of this file"
REFUSED_HEADERS = (
    ("new file mode", "creates a file"),
    ("deleted file mode", "deletes a file"),
    ("old mode", "changes a file mode"),
    ("new mode", "changes a file mode"),
    ("rename from", "renames a file"),
    ("rename to", "renames a file"),
    ("copy from", "copies a file"),
    ("copy to", "copies a file"),
    ("similarity index", "renames or copies a file"),
    ("dissimilarity index", "rewrites a file as a rename"),
    ("GIT binary patch", "is a binary patch"),
    ("Binary files", "is a binary patch"),
)


class PatchRefused(ValueError):
    """The diff was refused; the message says why, in words the coding model can act on."""


@dataclass
class Hunk:
    header: str
    old_start: int
    new_start: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    """(op, text): op is ' ' (context), '-' (removed) or '+' (added)."""
    old_no_eol: bool = False
    new_no_eol: bool = False

    @property
    def old(self) -> list[str]:
        return [t for op, t in self.lines if op != "+"]

    @property
    def new(self) -> list[str]:
        return [t for op, t in self.lines if op != "-"]

    @property
    def changes(self) -> bool:
        return any(op != " " for op, _ in self.lines)


@dataclass
class FilePatch:
    path: str
    hunks: list[Hunk]


def extract_diff(answer: str) -> str:
    """The diff in the model's answer: its ```diff blocks, joined (one per file is fine)."""
    blocks = FENCE.findall(answer)
    diffs = [body for lang, body in blocks if lang.lower() in DIFF_LANGS]
    if not diffs:  # an unlabelled fence holding a diff
        diffs = [body for lang, body in blocks if not lang and re.search(r"^@@ ", body, re.MULTILINE)]
    if diffs:
        return "\n".join(diffs)
    if re.search(r"^```[ \t]*(diff|patch|udiff)\b", answer, re.MULTILINE):
        raise PatchRefused("the ```diff block is not closed (was the answer cut off?): answer with a shorter, "
                           "complete diff")
    if re.search(r"^@@ ", answer, re.MULTILINE):
        raise PatchRefused("the diff is not inside a ```diff fenced block: put the whole unified diff in one "
                           "```diff ... ``` block")
    if blocks:
        raise PatchRefused("the answer's ``` block holds code, not a unified diff: write the change as a diff "
                           "(--- a/PATH, +++ b/PATH, @@ hunks of ' ' context, '-' removed and '+' added lines) in "
                           "one ```diff block, not the new code")
    raise PatchRefused("the answer holds no unified diff: answer with one ```diff block (--- a/PATH, +++ b/PATH, "
                       "@@ hunks)")


def _label(raw: str) -> str:
    """The path of a `---`/`+++` line, without the timestamp diff(1) appends after a tab, unquoted."""
    label = raw.split("\t", 1)[0].strip()
    if len(label) >= 2 and label[0] == label[-1] == '"':
        label = label[1:-1]
    return label


def resolve_path(label: str, allowed: set[str]) -> str:
    """The allowed file `label` names (`a/` and `b/` prefixes are git's), or PatchRefused."""
    if label.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", label):
        raise PatchRefused(f"{label}: an absolute path; name files relative to the target, e.g. a/{_example(allowed)}")
    if "\\" in label or "\0" in label:
        raise PatchRefused(f"{label!r}: a path with backslashes or NUL; use a/{_example(allowed)}")
    parts = label.split("/")
    if ".." in parts:
        raise PatchRefused(f"{label}: '..' climbs out of the target; only these files may change: {_listing(allowed)}")
    if any(p.lower() == ".git" for p in parts):
        raise PatchRefused(f"{label}: nothing under .git may change; only these files may: {_listing(allowed)}")
    candidates = [label]
    if label[:2] in ("a/", "b/"):
        candidates.append(label[2:])
    for candidate in candidates:
        while candidate.startswith("./"):
            candidate = candidate[2:]
        if candidate in allowed:
            return candidate
    raise PatchRefused(f"{label}: not a file you may change; only these may: {_listing(allowed)}")


def _example(allowed: set[str]) -> str:
    return min(allowed) if allowed else "PATH"


def _listing(allowed: set[str]) -> str:
    return ", ".join(sorted(allowed)) or "none"


def parse_diff(text: str, allowed: set[str]) -> list[FilePatch]:
    """Parse and check a unified diff against the files that may change (see the module doc)."""
    lines = text.splitlines()
    patches: list[FilePatch] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        for prefix, what in REFUSED_HEADERS:
            if line.startswith(prefix):
                raise PatchRefused(f"the diff {what} ({line.strip()}): only the lines of existing files may change")
        if line.startswith("index ") and line.split()[-1] == "120000":
            raise PatchRefused(f"the diff makes a symlink ({line.strip()}): only the lines of existing files may change")
        if line.startswith("diff --git "):
            for label in line[len("diff --git "):].split():
                resolve_path(_label(label), allowed)
        if line.startswith("@@"):
            raise PatchRefused(f"line {i + 1}: a hunk without its file header: start each file with "
                               f"--- a/PATH and +++ b/PATH")
        if line.startswith("--- "):
            if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
                raise PatchRefused(f"line {i + 1}: '--- ' must be followed by '+++ ' (the new side of the file)")
            old, new = _label(line[4:]), _label(lines[i + 1][4:])
            if old == "/dev/null":
                raise PatchRefused(f"the diff creates {new}: no new file may be added, only existing files changed "
                                   f"({_listing(allowed)})")
            if new == "/dev/null":
                raise PatchRefused(f"the diff deletes {old}: no file may be deleted")
            old_path, new_path = resolve_path(old, allowed), resolve_path(new, allowed)
            if old_path != new_path:
                raise PatchRefused(f"the diff renames {old_path} to {new_path}: files may be changed, not renamed")
            i += 2
            hunks: list[Hunk] = []
            while i < len(lines) and lines[i].startswith("@@"):
                hunk, i = _parse_hunk(lines, i, old_path)
                hunks.append(hunk)
            if not hunks:
                raise PatchRefused(f"{old_path}: a file header without any @@ hunk")
            patches.append(FilePatch(old_path, hunks))
            continue
        i += 1  # text between file sections (git's `diff --git`, `index`, commentary) carries no change
    if not patches:
        raise PatchRefused("the diff has no file section: each file needs --- a/PATH, +++ b/PATH and @@ hunks")
    return patches


def _ends_hunk(lines: list[str], i: int) -> bool:
    line = lines[i]
    if line.startswith(("@@", "diff --git ")):
        return True
    return line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _parse_hunk(lines: list[str], i: int, path: str) -> tuple[Hunk, int]:
    m = HUNK_HEADER.match(lines[i])
    if m is None:
        raise PatchRefused(f"{path}: bad hunk header {lines[i]!r}: use '@@ -OLD_START,OLD_COUNT +NEW_START,NEW_COUNT @@'")
    hunk = Hunk(header=lines[i].strip(), old_start=int(m.group(1)), new_start=int(m.group(3)))
    i += 1
    while i < len(lines) and not _ends_hunk(lines, i):
        line = lines[i]
        if line == "":
            hunk.lines.append((" ", ""))  # a blank context line whose leading space was stripped
        elif line[0] in " -+":
            hunk.lines.append((line[0], line[1:]))
        elif line.startswith("\\"):
            if not hunk.lines:
                raise PatchRefused(f"{path}: {hunk.header}: '{NO_EOL}' before any line")
            op = hunk.lines[-1][0]
            hunk.old_no_eol |= op in " -"
            hunk.new_no_eol |= op in " +"
        else:
            break  # the end of the diff text: commentary after it is not part of the hunk
        i += 1
    while hunk.lines and hunk.lines[-1] == (" ", ""):
        hunk.lines.pop()  # blank lines after a hunk separate it from what follows
    if not hunk.lines:
        raise PatchRefused(f"{path}: {hunk.header}: an empty hunk")
    return hunk, i


def _same(a: str, b: str) -> bool:
    return a.rstrip() == b.rstrip()


def _matches(lines: list[str], at: int, want: list[str]) -> bool:
    return at + len(want) <= len(lines) and all(_same(lines[at + k], w) for k, w in enumerate(want))


def _find(lines: list[str], want: list[str], hint: int, lowest: int) -> int | None:
    """Where `want` sits in `lines` at or after `lowest`, nearest to `hint`."""
    last = len(lines) - len(want)
    if last < lowest:
        return None
    hint = min(max(hint, lowest), last)
    for delta in range(max(hint - lowest, last - hint) + 1):
        for at in (hint - delta, hint + delta) if delta else (hint,):
            if lowest <= at <= last and _matches(lines, at, want):
                return at
    return None


def _why_not(lines: list[str], hunk: Hunk, path: str) -> str:
    missing = next((t for t in hunk.old if t.strip() and not any(_same(line, t) for line in lines)), None)
    if missing is not None:
        return (f"{path}: hunk {hunk.header} does not apply: the line {missing.strip()!r} is not in the file; "
                f"copy context and removed lines exactly from the file as given")
    return (f"{path}: hunk {hunk.header} does not apply: its context and removed lines are in the file but not "
            f"together in this order (or overlap an earlier hunk); copy them exactly and contiguously")


def apply_hunks(text: str, hunks: list[Hunk], path: str) -> str:
    """`text` with `hunks` applied in order, or PatchRefused saying which hunk does not fit."""
    ends_with_newline = text.endswith("\n")
    lines = text.split("\n")
    if ends_with_newline or text == "":
        lines = lines[:-1]
    out: list[str] = []
    cursor = 0
    for hunk in hunks:
        old = hunk.old
        if old:
            at = _find(lines, old, hunk.old_start - 1, cursor)
        else:  # a pure insertion goes after line old_start
            at = hunk.old_start if cursor <= hunk.old_start <= len(lines) else None
        if at is None:
            raise PatchRefused(_why_not(lines[cursor:], hunk, path))
        out.extend(lines[cursor:at])
        k = at
        for op, t in hunk.lines:
            if op == " ":
                out.append(lines[k])  # the file's own line (it may differ in trailing blanks)
                k += 1
            elif op == "-":
                k += 1
            else:
                out.append(t)
        cursor = at + len(old)
        if cursor == len(lines):
            if hunk.new_no_eol:
                ends_with_newline = False
            elif hunk.old_no_eol:
                ends_with_newline = True
    out.extend(lines[cursor:])
    result = "\n".join(out)
    return result + "\n" if ends_with_newline and out else result


def apply_diff(diff: str, texts: Mapping[str, str]) -> dict[str, str]:
    """Check `diff` against the files `texts` ({path: text}) and apply it: {path: new text} of the files it
    changes. PatchRefused when anything is wrong (see the module doc)."""
    patches = parse_diff(diff, set(texts))
    new = dict(texts)
    for patch in patches:
        new[patch.path] = apply_hunks(new[patch.path], patch.hunks, patch.path)
    changed = {path: text for path, text in new.items() if text != texts[path]}
    if not changed:
        raise PatchRefused("the diff changes nothing: its hunks add and remove no line")
    for path, text in sorted(changed.items()):
        if path.endswith(".py") and _compiles(texts[path], path):
            try:
                compile(text, path, "exec")
            except SyntaxError as exc:
                raise PatchRefused(f"{path} no longer compiles after the diff: {exc.msg} at line {exc.lineno}: "
                                   f"{(exc.text or '').strip()!r}") from None
    return changed


def _compiles(text: str, path: str) -> bool:
    try:
        compile(text, path, "exec")
        return True
    except SyntaxError:
        return False


def apply_answer(answer: str, texts: Mapping[str, str]) -> dict[str, str]:
    """`apply_diff` of the diff in a model's answer."""
    return apply_diff(extract_diff(answer), texts)


def diff_stat(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """`path (+a -r)` per changed file, from a line diff of the texts."""
    import difflib

    parts = []
    for path in sorted(new):
        added = removed = 0
        for line in difflib.unified_diff(old.get(path, "").splitlines(), new[path].splitlines(), lineterm="", n=0):
            if line.startswith("+") and not line.startswith("+++"):
                added += 1
            elif line.startswith("-") and not line.startswith("---"):
                removed += 1
        parts.append(f"{path} (+{added} -{removed})")
    return ", ".join(parts)
