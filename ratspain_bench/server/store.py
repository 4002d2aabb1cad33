"""The service's tables in PostgreSQL (next to procrastinate's): teams, submissions, and the data's fingerprint.

Tokens: `rbt_<team id>_<secret>`; only SHA-256 of the whole token is stored (the secret is 256 random bits, so a slow
hash adds nothing), and the check is `hmac.compare_digest` on the hash of the team the token names: constant time.
Quota: a submission is charged when it is accepted; a harness fault (`error`) refunds it (`charged = false`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS rb_team (
    id serial PRIMARY KEY,
    name text UNIQUE NOT NULL,
    contact text NOT NULL DEFAULT '',
    token_hash text NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    revoked timestamptz,
    released double precision,                   -- the Ladder's last released score
    leader_errors jsonb,                         -- its leader's per-image errors
    selected integer                             -- its pick for the final run
);
CREATE TABLE IF NOT EXISTS rb_submission (
    id serial PRIMARY KEY,
    team_id integer NOT NULL REFERENCES rb_team(id),
    name text NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'queued',      -- queued | running | scored | failed | error
    reason text NOT NULL DEFAULT '',             -- failed: one of REASONS; error: the harness fault (host only)
    charged boolean NOT NULL DEFAULT true,       -- counts against the quota (false once refunded)
    archive bytea NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    limits jsonb NOT NULL DEFAULT '{}',
    job_id bigint,
    attempts integer NOT NULL DEFAULT 0,
    started timestamptz,
    finished timestamptz,
    f1 double precision,
    accuracy double precision,
    record jsonb,                                -- the board's record of a scored run (no timings)
    predictions text,                            -- its predictions (CSV): host and board only
    log text NOT NULL DEFAULT '',                -- what the harness printed: host only
    released double precision,                   -- the team's released score after it (`ladder`)
    releasing boolean NOT NULL DEFAULT false     -- it set that score
);
CREATE INDEX IF NOT EXISTS rb_submission_team ON rb_submission (team_id, created);
CREATE TABLE IF NOT EXISTS rb_meta (key text PRIMARY KEY, value text NOT NULL);
"""
STATUSES = ("queued", "running", "scored", "failed", "error")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,31}$")


def connect(url: str):
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as e:
        raise InputError(f"cannot reach the database {_safe(url)}: {str(e).strip().splitlines()[0] if str(e).strip() else e}") from None


def _safe(url: str) -> str:
    return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", url)


@contextmanager
def transaction(conn):
    with conn.transaction():
        yield conn


def init(url: str) -> None:
    """Create the tables (ours and procrastinate's) where they are missing. Tables that exist are not touched: DDL on
    them would take locks that running workers' updates wait on."""
    with connect(url) as conn:
        conn.execute("SELECT pg_advisory_lock(73921)")  # two processes starting at once
        try:
            if conn.execute("SELECT to_regclass('rb_meta')").fetchone()[0] is None:
                conn.execute(SCHEMA)
            if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None:
                import procrastinate

                app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))  # no tasks: a blueprint binds once
                with app.open():
                    app.schema_manager.apply_schema()
        finally:
            conn.execute("SELECT pg_advisory_unlock(73921)")


def get_meta(conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM rb_meta WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn, key: str, value: str) -> None:
    conn.execute("INSERT INTO rb_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, value))


# ---------------------------------------------------------------- teams


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_team(conn, name: str, contact: str = "") -> str:
    """A new team; its token (shown once: only the hash is kept)."""
    if not NAME_RE.match(name):
        raise InputError(f"team name {name!r}: use 2-32 lowercase letters, digits, '-' or '_', starting with a letter or digit")
    import psycopg

    with transaction(conn):
        try:
            tid = conn.execute("INSERT INTO rb_team (name, contact, token_hash) VALUES (%s, %s, '') RETURNING id",
                               (name, contact)).fetchone()[0]
        except psycopg.errors.UniqueViolation:
            raise InputError(f"team {name!r} exists (revoke it, or choose another name)") from None
        token = f"rbt_{tid}_{secrets.token_urlsafe(32)}"
        conn.execute("UPDATE rb_team SET token_hash = %s WHERE id = %s", (_hash(token), tid))
    return token


def list_teams(conn) -> list[dict]:
    rows = conn.execute("SELECT t.name, t.contact, t.created, t.revoked, count(s.id) FROM rb_team t "
                        "LEFT JOIN rb_submission s ON s.team_id = t.id GROUP BY t.id ORDER BY t.name").fetchall()
    return [{"name": n, "contact": c, "created": cr.isoformat(), "revoked": r.isoformat() if r else None, "submissions": k}
            for n, c, cr, r, k in rows]


def revoke_team(conn, name: str) -> None:
    if conn.execute("UPDATE rb_team SET revoked = now() WHERE name = %s AND revoked IS NULL", (name,)).rowcount == 0:
        raise InputError(f"team {name!r}: no such team, or already revoked")


@dataclass(frozen=True)
class Team:
    id: int
    name: str


def team_for_token(conn, token: str | None) -> Team | None:
    """The team a token belongs to, or None (unknown, malformed or revoked): constant time in the secret."""
    m = re.fullmatch(r"rbt_(\d{1,9})_([A-Za-z0-9_-]{20,100})", token or "")
    tid = int(m.group(1)) if m else 0
    row = conn.execute("SELECT id, name, token_hash, revoked FROM rb_team WHERE id = %s", (tid,)).fetchone()
    stored = row[2] if row else "0" * 64
    ok = hmac.compare_digest(_hash(token or ""), stored)
    if not (m and row and ok and row[3] is None):
        return None
    return Team(row[0], row[1])


# ---------------------------------------------------------------- quota and submissions


@dataclass(frozen=True)
class Quota:
    per_day: int
    total: int

    @staticmethod
    def reset(now: dt.datetime) -> dt.datetime:
        """The next UTC midnight: when a day's quota starts again."""
        day = now.astimezone(dt.timezone.utc).date() + dt.timedelta(days=1)
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)

    def left(self, conn, team: Team) -> dict:
        now = conn.execute("SELECT now()").fetchone()[0]
        start = self.reset(now) - dt.timedelta(days=1)
        today, total = conn.execute(
            "SELECT count(*) FILTER (WHERE created >= %s), count(*) FROM rb_submission WHERE team_id = %s AND charged",
            (start, team.id)).fetchone()
        return {"today_left": max(self.per_day - today, 0), "total_left": max(self.total - total, 0),
                "per_day": self.per_day, "total": self.total, "resets_at": self.reset(now).isoformat().replace("+00:00", "Z")}


class QuotaExhausted(Exception):
    def __init__(self, left: dict):
        self.left = left
        what = "total" if left["total_left"] == 0 else "daily"
        when = "never (the total is spent)" if what == "total" else f"at {left['resets_at']} (midnight UTC)"
        super().__init__(f"{what} quota spent ({left['per_day']} a UTC day, {left['total']} in all); it resets {when}")


def add_submission(conn, team: Team, name: str, archive: bytes, metadata: dict, limits: dict, quota: Quota) -> tuple[int, dict]:
    """Charge the team and queue a submission, atomically (the team's row is locked: two uploads at once cannot both
    take the last one); (its id, the quota left after it). QuotaExhausted when none is left."""
    with transaction(conn):
        conn.execute("SELECT id FROM rb_team WHERE id = %s FOR UPDATE", (team.id,))
        left = quota.left(conn, team)
        if left["today_left"] <= 0 or left["total_left"] <= 0:
            raise QuotaExhausted(left)
        sid = conn.execute("INSERT INTO rb_submission (team_id, name, archive, metadata, limits) VALUES (%s, %s, %s, %s, %s) "
                           "RETURNING id", (team.id, name, archive, json.dumps(metadata), json.dumps(limits))).fetchone()[0]
        left = quota.left(conn, team)
    return sid, left


def name_owner(conn, name: str) -> str | None:
    """The team whose submissions use this name (a method's name is its row on the board), or None."""
    row = conn.execute("SELECT t.name FROM rb_submission s JOIN rb_team t ON t.id = s.team_id WHERE s.name = %s LIMIT 1",
                       (name,)).fetchone()
    return row[0] if row else None


def set_job(conn, sid: int, job_id: int) -> None:
    conn.execute("UPDATE rb_submission SET job_id = %s WHERE id = %s", (job_id, sid))


def queue_position(conn, sid: int) -> int | None:
    row = conn.execute(f"SELECT {QUEUE_POSITION} FROM rb_submission s WHERE s.id = %s", (sid,)).fetchone()
    return None if row is None else row[0]


def start(conn, sid: int) -> dict | None:
    """Mark a submission running (one more attempt); its row, or None when it has already ended."""
    row = conn.execute("UPDATE rb_submission SET status = 'running', attempts = attempts + 1, started = coalesce(started, now()) "
                       "WHERE id = %s AND status IN ('queued', 'running') RETURNING id, name, archive, limits, attempts, "
                       "(SELECT name FROM rb_team WHERE rb_team.id = team_id)", (sid,)).fetchone()
    if row is None:
        return None
    return {"id": row[0], "name": row[1], "archive": bytes(row[2]), "limits": row[3], "attempts": row[4], "team": row[5]}


def finish(conn, sid: int, status: str, *, reason: str = "", f1=None, accuracy=None, record=None, predictions=None,
           log: str = "", errors=None) -> None:
    """End a submission: scored (with its record and per-image 0/1 `errors`), failed (a fixed reason; still charged) or
    error (a harness fault: refunded, at most the daily quota's number of times a UTC day per team: a refund is an
    outcome the team sees, so refunds must not be a free channel). The team's Ladder (`ladder`) moves on with it."""
    assert status in ("scored", "failed", "error")
    refund = False
    if status == "error":
        per_day = (conn.execute("SELECT limits->>'quota_per_day' FROM rb_submission WHERE id = %s", (sid,)).fetchone() or [None])[0]
        now = conn.execute("SELECT now()").fetchone()[0]
        refunded = conn.execute("SELECT count(*) FROM rb_submission WHERE team_id = (SELECT team_id FROM rb_submission WHERE id = %s) "
                                "AND status = 'error' AND NOT charged AND finished >= %s",
                                (sid, Quota.reset(now) - dt.timedelta(days=1))).fetchone()[0]
        refund = per_day is None or refunded < int(per_day)
    from .ladder import State, advance

    with transaction(conn):
        team_id, limits, released, leader = conn.execute(
            "SELECT t.id, s.limits, t.released, t.leader_errors FROM rb_submission s JOIN rb_team t ON t.id = s.team_id "
            "WHERE s.id = %s FOR UPDATE OF t", (sid,)).fetchone()
        before = State(released, tuple(leader) if leader is not None else None)
        after = advance(limits.get("ladder", "step"), before, f1 if status == "scored" else None, errors, limits.get("eta", 0.02))
        conn.execute("UPDATE rb_team SET released = %s, leader_errors = %s WHERE id = %s",
                     (after.released, None if after.leader_errors is None else json.dumps(after.leader_errors), team_id))
        conn.execute("UPDATE rb_submission SET status = %s, reason = %s, f1 = %s, accuracy = %s, record = %s, predictions = %s, "
                     "log = left(log || %s, 200000), finished = now(), charged = charged AND NOT %s, released = %s, releasing = %s "
                     "WHERE id = %s", (status, reason, f1, accuracy, None if record is None else json.dumps(record), predictions,
                                       log, refund, after.released, after != before, sid))


def append_log(conn, sid: int, text: str) -> None:
    conn.execute("UPDATE rb_submission SET log = left(log || %s, 200000) WHERE id = %s", (text, sid))


QUEUE_POSITION = ("CASE WHEN s.status = 'queued' THEN (SELECT count(*) FROM rb_submission q WHERE q.status = 'queued' "
                  "AND (q.created, q.id) <= (s.created, s.id)) END")  # submission s's place in the queue, or null
TEAM_FIELDS = ("s.id, t.name, s.name, s.created, s.status, s.reason, s.f1, s.accuracy, s.finished, s.charged, "
               "s.released, coalesce(s.limits->>'ladder', 'step'), s.started, now(), coalesce((s.limits->>'reveal_step')::float, 0), "
               + QUEUE_POSITION)


def _team_view(row) -> dict:
    sid, team, name, created, status, reason, f1, acc, finished, charged, released, ladder, started, now, step, position = row
    if finished is not None and started is not None and step > 0:  # its end is told on a grid of `step` seconds from its
        shown = started + dt.timedelta(seconds=step * math.ceil((finished - started).total_seconds() / step))  # start
        if now < shown:
            status = "running"
    public_reason = reason if status == "failed" else ("the harness failed" if status == "error" else "")
    out = {"id": sid, "team": team, "name": name, "created": created.isoformat(), "status": "failed" if status == "error" else status,
           "reason": public_reason, "refunded": status == "error" and not charged,
           "released": released if status in ("scored", "failed", "error") else None}
    if status == "scored" and ladder == "none":  # full precision: only where the host chose no Ladder
        out.update({"f1": f1, "accuracy": acc})
    if status == "queued":
        out["queue_position"] = position
    return out


def team_submission(conn, team: Team, sid: int) -> dict | None:
    """What a team may read of its own submission: status, a fixed reason, the pooled score. Nothing the code steers
    beyond these (no message, output, per-rat figure, fold or time)."""
    row = conn.execute(f"SELECT {TEAM_FIELDS} FROM rb_submission s JOIN rb_team t ON t.id = s.team_id "
                       "WHERE s.id = %s AND s.team_id = %s", (sid, team.id)).fetchone()
    return None if row is None else _team_view(row)


def team_submissions(conn, team: Team) -> list[dict]:
    rows = conn.execute(f"SELECT {TEAM_FIELDS} FROM rb_submission s JOIN rb_team t ON t.id = s.team_id "
                        "WHERE s.team_id = %s ORDER BY s.id", (team.id,)).fetchall()
    return [_team_view(r) for r in rows]


def all_submissions(conn, with_logs: bool = False) -> list[dict]:
    """Everything, for the host."""
    rows = conn.execute("SELECT s.id, t.name, s.name, s.created, s.status, s.reason, s.charged, s.attempts, s.f1, s.accuracy, "
                        "s.started, s.finished, s.log FROM rb_submission s JOIN rb_team t ON t.id = s.team_id ORDER BY s.id").fetchall()
    out = []
    for sid, team, name, created, status, reason, charged, attempts, f1, acc, started, finished, log in rows:
        d = {"id": sid, "team": team, "name": name, "created": created.isoformat(), "status": status, "reason": reason,
             "charged": charged, "attempts": attempts, "f1": f1, "accuracy": acc,
             "seconds": (finished - started).total_seconds() if started and finished else None}
        if with_logs:
            d["log"] = log
        out.append(d)
    return out


# a submission's end as its team is told it: on the grid of `reveal_step` seconds from its start (`_team_view`)
REVEALED = ("s.finished IS NOT NULL AND now() >= s.started + make_interval(secs => "
            "CASE WHEN coalesce((s.limits->>'reveal_step')::float, 0) > 0 THEN (s.limits->>'reveal_step')::float "
            "* ceil(extract(epoch FROM s.finished - s.started) / (s.limits->>'reveal_step')::float) ELSE 0 END)")


def released_records(conn) -> list[tuple[float, dict, str, str, float]]:
    """(released score, record, predictions CSV, ladder, eta) of each team's latest submission that set its released
    score, once its end is told: what the public board is built from."""
    rows = conn.execute("SELECT DISTINCT ON (s.team_id) s.released, s.record, s.predictions, coalesce(s.limits->>'ladder', 'step'), "
                        "coalesce((s.limits->>'eta')::float, 0.02) FROM rb_submission s WHERE s.status = 'scored' AND s.releasing "
                        f"AND {REVEALED} ORDER BY s.team_id, s.id DESC").fetchall()
    return [tuple(r) for r in rows]


def board_version(conn) -> str:
    """Changes whenever a score is added (the board is cached on it)."""
    n, last = conn.execute("SELECT count(*), max(s.id) FROM rb_submission s WHERE s.status = 'scored' AND s.releasing "
                           f"AND {REVEALED}").fetchone()
    return f"{n}:{last}"


def dangling(conn) -> list[int]:
    """Submissions still queued or running whose job has ended: its worker could not record the end (the database
    was gone for longer than it waited). Deferred again by workers: the next attempt resumes from the finished folds."""
    return [r[0] for r in conn.execute(
        "SELECT s.id FROM rb_submission s JOIN procrastinate_jobs j ON j.id = s.job_id WHERE s.status IN ('queued', 'running') "
        "AND j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')").fetchall()]


def select(conn, team: Team, sid: int) -> None:
    """The team's pick for the final run: one of its scored submissions; InputError otherwise."""
    row = conn.execute("SELECT status FROM rb_submission WHERE id = %s AND team_id = %s", (sid, team.id)).fetchone()
    if row is None:
        raise InputError(f"no submission {sid} of team {team.name}")
    if row[0] != "scored":
        raise InputError(f"submission {sid} is {row[0]}: only a scored submission can be selected")
    conn.execute("UPDATE rb_team SET selected = %s WHERE id = %s", (sid, team.id))


def final_picks(conn) -> list[dict]:
    """Each team's pick: its selected submission, else its best released one (the latest that set its released score)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (t.id) s.id, s.name, s.archive, s.limits, t.name, t.released FROM rb_team t "
        "JOIN rb_submission s ON s.team_id = t.id AND s.status = 'scored' AND (s.id = t.selected OR (t.selected IS NULL AND s.releasing)) "
        "WHERE t.revoked IS NULL ORDER BY t.id, s.id DESC").fetchall()
    return [{"id": i, "name": n, "archive": bytes(a), "limits": lim, "team": t, "released": r} for i, n, a, lim, t, r in rows]


def orphans(conn, older_s: float) -> list[int]:
    """Queued submissions whose job was never deferred (the server died between the two): deferred again by workers."""
    return [r[0] for r in conn.execute("SELECT id FROM rb_submission WHERE status = 'queued' AND job_id IS NULL "
                                       "AND created < now() - make_interval(secs => %s)", (older_s,)).fetchall()]
