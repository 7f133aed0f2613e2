"""The nemesis's checker: what the data itself says after the run (pure; the runner gathers the inputs).

Every write the nemesis's writers sent has a unique text, so the rows on the final primary say exactly which
writes were applied and how often:

- an acknowledged write (201) must be there exactly once, with the id the site acknowledged;
- a keyed write (`Idempotency-Key`, retried with the same key after an ambiguous failure) must never be
  there twice, whatever its outcome;
- an unkeyed write of unknown outcome (timeout, connection error, 5xx: the client cannot tell whether it
  was applied) is reported separately: applied once, not applied, or (a bug) twice;
- a write refused with a 4xx was not applied.

With the data checks come the cluster's: every DB node's table checksums equal once replicas caught up,
never more than one writable node at any poll and exactly one at the end, and errant transactions (an old
primary's unreplicated tail, set aside by a re-clone) surfaced as an event naming a file that exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["acked", "failed", "unknown"]


@dataclass(frozen=True)
class WriteOp:
    writer: int
    seq: int
    text: str
    key: str | None  # the Idempotency-Key, or None for an unkeyed write
    outcome: Outcome
    entry_id: int | None = None  # the id the site acknowledged
    attempts: int = 1
    started: float = 0.0  # seconds since the run began
    ended: float = 0.0
    last_error: str = ""


@dataclass
class Verdict:
    writes: int = 0
    acked: int = 0
    acked_keyed: int = 0
    keyed_retried: int = 0  # keyed writes acknowledged only after one or more retries
    failed: int = 0
    lost: list[str] = field(default_factory=list)  # texts of acknowledged writes that are not there
    wrong_id: list[str] = field(default_factory=list)  # acknowledged with an id the row does not have
    duplicated_keyed: list[str] = field(default_factory=list)
    duplicated_acked: list[str] = field(default_factory=list)
    applied_after_refusal: list[str] = field(default_factory=list)  # a 4xx, yet the row exists
    unknown_unkeyed: int = 0
    unknown_unkeyed_applied: int = 0
    unknown_unkeyed_not_applied: int = 0
    unknown_unkeyed_duplicated: int = 0
    unknown_keyed: int = 0  # keyed writes still without an answer when their retry budget ran out
    unknown_keyed_applied: int = 0
    checksums: dict[str, str] = field(default_factory=dict)
    checksums_equal: bool = False
    max_writable: int = 0
    final_writable: int = 0
    writable_polls: int = 0
    errant_events: list[str] = field(default_factory=list)
    errant_unsurfaced: list[str] = field(default_factory=list)  # errant data set aside without a file

    @property
    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged writes lost")
        if self.wrong_id:
            out.append(f"{len(self.wrong_id)} acknowledged writes stored under another id")
        if self.duplicated_keyed:
            out.append(f"{len(self.duplicated_keyed)} keyed writes applied twice")
        if self.duplicated_acked:
            out.append(f"{len(self.duplicated_acked)} acknowledged writes applied twice")
        if self.applied_after_refusal:
            out.append(f"{len(self.applied_after_refusal)} writes refused with a 4xx but applied")
        if self.unknown_unkeyed_duplicated:
            out.append(f"{self.unknown_unkeyed_duplicated} unkeyed writes applied twice")
        if not self.checksums_equal:
            out.append(f"DB nodes differ: {self.checksums}")
        if self.max_writable > 1:
            out.append(f"{self.max_writable} writable nodes at once")
        if self.final_writable != 1:
            out.append(f"{self.final_writable} writable nodes at the end (want 1)")
        if self.writable_polls == 0:
            out.append("the writable-node monitor took no sample")
        if self.errant_unsurfaced:
            out.append(f"errant data not surfaced: {'; '.join(self.errant_unsurfaced)}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"], data["problems"] = self.ok, self.problems
        for name in ("lost", "wrong_id", "duplicated_keyed", "duplicated_acked", "applied_after_refusal"):
            data[name] = data[name][:20]  # examples, not the whole list; the counts are in `problems`
        return data


def check_writes(ops: Sequence[WriteOp], rows: Mapping[str, Sequence[int]], verdict: Verdict | None = None) -> Verdict:
    """Compare what the writers were told with the rows (text -> ids) on the final primary."""
    v = verdict or Verdict()
    v.writes = len(ops)
    for op in ops:
        ids = list(rows.get(op.text, ()))
        if op.key is not None and len(ids) > 1:
            v.duplicated_keyed.append(op.text)
        if op.outcome == "acked":
            v.acked += 1
            if op.key is not None:
                v.acked_keyed += 1
                if op.attempts > 1:
                    v.keyed_retried += 1
            if not ids:
                v.lost.append(op.text)
            elif len(ids) > 1:
                if op.key is None:
                    v.duplicated_acked.append(op.text)
            elif op.entry_id is not None and ids[0] != op.entry_id:
                v.wrong_id.append(op.text)
        elif op.outcome == "failed":
            v.failed += 1
            if ids:
                v.applied_after_refusal.append(op.text)
        elif op.key is None:
            v.unknown_unkeyed += 1
            if not ids:
                v.unknown_unkeyed_not_applied += 1
            elif len(ids) == 1:
                v.unknown_unkeyed_applied += 1
            else:
                v.unknown_unkeyed_duplicated += 1
        else:
            v.unknown_keyed += 1
            if ids:
                v.unknown_keyed_applied += 1
    return v


def check_checksums(checksums: Mapping[str, str], verdict: Verdict) -> Verdict:
    verdict.checksums = dict(checksums)
    verdict.checksums_equal = len(checksums) > 0 and len(set(checksums.values())) == 1
    return verdict


def check_writable(counts: Iterable[int], final: int, verdict: Verdict) -> Verdict:
    counts = list(counts)
    verdict.writable_polls = len(counts)
    verdict.max_writable = max(counts, default=0)
    verdict.final_writable = final
    return verdict


def check_errant(events: Iterable[Mapping[str, Any]], file_exists: Any, verdict: Verdict) -> Verdict:
    """Every event about errant transactions must name the file they were exported to, and it must exist.
    `file_exists(host, path)` says whether `path` exists on `host`."""
    for event in events:
        kind = str(event.get("kind", ""))
        if "errant" not in kind:
            continue
        detail = str(event.get("detail", ""))
        host = str(event.get("host", ""))
        verdict.errant_events.append(f"{host}: {detail}")
        path = _path_in(detail)
        if path is None or not file_exists(host, path):
            verdict.errant_unsurfaced.append(f"{host}: {detail}")
    return verdict


def _path_in(detail: str) -> str | None:
    """The first absolute path named in an event's detail."""
    for word in detail.replace(",", " ").replace(";", " ").split():
        word = word.strip("()[]'\"")
        if word.startswith("/"):
            return word
    return None
