"""The SQL text of a run transaction and of the step hot path: one named home for each statement,
shared by the normal, the eager/pipelined and the grouped paths (nothing here runs SQL; callers in
engine/runtxn.py, engine/checkpoint.py, engine/groupcommit.py, engine/advance.py, worker/context.py).

`lock_sql()` locks the run row; `move_sql(...)` is a guarded step UPDATE, optionally wrapped with the
payload upsert and the run's step-state read (`move_steps_reading_states`); `flush_sql(...)` is the
final statement: the run row, the event rows (gapless seqs), the outbox rows, the NOTIFY (`run id:last
seq`, plus `:status` when the run ended there: a waiter needs no query per step) when someone
follows the run (`runs.watched_until`, migration 0034: a NOTIFY serializes commits) and, for
eager dispatch, the claim of the next step plus the context rows it reads. The claim's event row is
made in SQL from the claim's RETURNING, so a claim that matched nothing logs nothing.
`CLAIM_SET` (the claim's SET list), `STEP_CONTEXT` (what a step's context reads), `SAVE_IO` /
`SAVE_IO_OF_MOVED` (the step payload upsert), `STEP_STATES` and `RUN_OUTPUTS` are shared by name.
"""

from __future__ import annotations

from flowstudio.store.statuses import RUN_ENDED_SQL

RUN_COLUMNS = """id, status, flow_id, flow_version, owner_id, inputs, tweaks, event_seq,
    batch_id IS NOT NULL AS in_batch"""
LOCK_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %(_lock_run)s FOR UPDATE"


# a claim: ready/retrying/waiting -> running under a lease (the fencing token is the new attempt)
CLAIM_SET = """attempt = s.attempt + 1, lease_owner = %(cl_owner)s,
               lease_expires_at = now() + make_interval(secs => %(cl_lease)s),
               started_at = coalesce(s.started_at, clock_timestamp()), due_at = NULL"""
# the state and output of the nodes a step's context reads (worker/context.py; eager claims)
STEP_CONTEXT = """SELECT s.node_id, s.status, s.branch, io.output
        FROM steps s LEFT JOIN step_io io ON io.step_id = s.id
        WHERE s.run_id = %(ctx_run)s AND s.item_index = 0 AND s.node_id = ANY(%(ctx_nodes)s)"""
# a step's payload, written with its move; the upsert keeps the latest attempt's
UPSERT_IO = "ON CONFLICT (step_id) DO UPDATE SET input = EXCLUDED.input, output = EXCLUDED.output"
SAVE_IO = f"""INSERT INTO step_io (step_id, input, output)
        VALUES (%(io_step)s, %(io_input)s, %(io_output)s) {UPSERT_IO}"""
SAVE_IO_OF_MOVED = f"""INSERT INTO step_io (step_id, input, output)
        SELECT id, %(_io_input)s, %(_io_output)s FROM moved {UPSERT_IO}"""
# the run's top-level step states (the planner's input) and its output nodes' outputs
STEP_STATES = "SELECT node_id, status, branch FROM steps WHERE run_id = %(run)s AND item_index = 0"
RUN_OUTPUTS = """SELECT s.node_id, io.output FROM steps s JOIN step_io io ON io.step_id = s.id
        WHERE s.run_id = %(run)s AND s.node_id = ANY(%(nodes)s) AND s.status = 'succeeded'"""


# the move that makes pending nodes ready (`advance_run`, and a success's `then_ready`)
READY_WHERE = "s.node_id = ANY(%(nodes)s) AND s.item_index = 0"
READY_SET = "ready_at = clock_timestamp(), dispatched_at = now()"
# a success's successors that wait on nothing else, made ready in the success's own statement and
# only if the success moved (a group commit cannot roll one member back alone); its rows come back
# as the `rd_rows` column (the statement's snapshot predates both updates: callers patch states)
READY_AFTER_MOVED = f"""rd AS (
        UPDATE steps s SET status = %(rd_dest)s, {READY_SET}
        WHERE s.run_id = %(run_id)s AND s.status = %(rd_source)s AND {READY_WHERE}
          AND EXISTS (SELECT 1 FROM moved)
        RETURNING s.id, s.node_id, s.item_index, s.attempt, s.max_attempts, s.node_type,
                  s.branch, %(rd_source)s::text AS from_status)"""


def move_sql(
    set_sql: str,
    where: str,
    multi_source: bool,
    *,
    io: bool,
    read_states: bool,
    then_ready: bool = False,
) -> str:
    extra = f", {set_sql}" if set_sql else ""
    if multi_source:  # several source states: a self-join reports each row's old status
        join, on, old_status = "FROM steps old", "old.id = s.id AND", "old.status"
    else:
        join, on, old_status = "", "", "%(_source)s::text"
    query = f"""UPDATE steps s SET status = %(dest)s{extra}
            {join}
            WHERE {on} s.run_id = %(run_id)s AND s.status = ANY(%(sources)s)
              AND ({where})
            RETURNING s.id, s.node_id, s.item_index, s.attempt, s.max_attempts, s.node_type,
                      s.branch, {old_status} AS from_status"""
    if not (io or read_states):
        return query
    ctes = [f"moved AS ({query})"]
    columns, sources = ["m.*"], ["moved m"]
    if io:
        ctes.append(f"io AS ({SAVE_IO_OF_MOVED})")
    if read_states:
        ctes.append("""st AS (SELECT array_agg(node_id) AS st_nodes, array_agg(status) AS st_status,
                             array_agg(branch) AS st_branch
                      FROM steps WHERE run_id = %(run_id)s AND item_index = 0)""")
        columns.append("st.*")
        sources.append("st")
    if then_ready:
        ctes.append(READY_AFTER_MOVED)
        columns.append("(SELECT coalesce(jsonb_agg(to_jsonb(rd)), '[]') FROM rd) AS rd_rows")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(columns)} FROM {', '.join(sources)}"


CLAIM_CTE = f"""cl AS (
        UPDATE steps s SET status = %(cl_dest)s, {CLAIM_SET}
        WHERE s.id = %(cl_step)s AND s.run_id = %(id)s AND s.attempt = %(cl_token)s
          AND s.status = ANY(%(cl_sources)s)
        RETURNING s.id, s.node_id, s.item_index, s.node_type, s.attempt, s.max_attempts
    ), cx AS ({STEP_CONTEXT}), """
CLAIM_EVENT = """
        UNION ALL
        SELECT jsonb_build_object('kind', 'step', 'step_id', cl.id, 'node_id', cl.node_id,
                                  'item_index', cl.item_index, 'attempt', cl.attempt,
                                  'from_status', %(cl_from)s::text, 'to_status', %(cl_dest)s::text),
               %(n)s::int + 1
        FROM cl"""
CLAIM_COLUMNS = """,
           (SELECT to_jsonb(cl) FROM cl) AS cl_row,
           (SELECT coalesce(jsonb_agg(to_jsonb(cx)), '[]') FROM cx) AS cl_ctx"""


# a claim's flush also reads the claimed step's context (`rc_nodes`): what the worker would query
READ_CONTEXT_COLUMN = """,
           (SELECT coalesce(jsonb_agg(to_jsonb(rc)), '[]'::jsonb)
              FROM (SELECT s.node_id, s.status, s.branch, io.output
                      FROM steps s LEFT JOIN step_io io ON io.step_id = s.id
                     WHERE s.run_id = %(id)s AND s.item_index = 0
                       AND s.node_id = ANY(%(rc_nodes)s)) rc) AS rc_rows"""


def flush_sql(run_sets: list[str], *, claim: bool, read_context: bool = False) -> str:
    """`run_sets`: the runs SET items besides event_seq. Params: id, n (events from Python), events
    (jsonb array), ob_steps/ob_tokens, channel; with `claim` also the cl_* params; with
    `read_context` also rc_nodes (the `rc_rows` column: those nodes' state and output)."""
    return f"""WITH {CLAIM_CTE if claim else ''}evs AS (
        SELECT e.ev, e.ord::int AS ord
        FROM jsonb_array_elements(%(events)s) WITH ORDINALITY AS e(ev, ord){CLAIM_EVENT if claim else ''}
    ), r AS (
        UPDATE runs SET event_seq = event_seq + (SELECT count(*) FROM evs)::int, {', '.join(run_sets)}
        WHERE id = %(id)s
        RETURNING event_seq, status, (SELECT count(*) FROM evs)::int AS n_ev,
                  watched_until >= now() AS watched
    ), ev AS (
        INSERT INTO run_events (run_id, seq, kind, step_id, node_id, item_index,
                                attempt, from_status, to_status, data)
        SELECT %(id)s, r.event_seq - r.n_ev + e.ord, e.ev->>'kind',
               (e.ev->>'step_id')::bigint, e.ev->>'node_id',
               (e.ev->>'item_index')::int, (e.ev->>'attempt')::int,
               e.ev->>'from_status', e.ev->>'to_status', e.ev->'data'
        FROM r, evs e
    ), ob AS (
        INSERT INTO outbox (run_id, step_id, token)
        SELECT %(id)s, u.s, u.t
        FROM unnest(%(ob_steps)s::bigint[], %(ob_tokens)s::int[]) AS u(s, t)
        RETURNING id, step_id, token
    ), nt AS (
        SELECT pg_notify(%(channel)s, %(id)s::text || ':' || r.event_seq
                         || CASE WHEN r.status IN {RUN_ENDED_SQL} THEN ':' || r.status ELSE '' END)
        FROM r WHERE r.n_ev > 0 AND r.watched  -- only a followed run (migration 0034)
    )
    SELECT r.event_seq, (SELECT count(*) FROM nt) AS notified,
           ARRAY(SELECT ob.id FROM ob ORDER BY ob.id) AS ob_ids,
           ARRAY(SELECT ob.step_id FROM ob ORDER BY ob.id) AS ob_steps,
           ARRAY(SELECT ob.token FROM ob ORDER BY ob.id) AS ob_tokens{CLAIM_COLUMNS if claim else ''}\
{READ_CONTEXT_COLUMN if read_context else ''}
    FROM r"""


# the worker's lease heartbeat (`checkpoint.heartbeat`): extends the leases it can lock without
# waiting; answers the ids it extended and the ids it skipped that are still its per the snapshot
HEARTBEAT = """
WITH held AS (
    SELECT s.id FROM steps s
      JOIN unnest(%(ids)s::bigint[], %(attempts)s::int[]) AS h(id, attempt)
        ON s.id = h.id AND s.attempt = h.attempt
     WHERE s.status = 'running' AND s.lease_owner = %(owner)s
), free AS (
    SELECT s.id FROM steps s WHERE s.id IN (SELECT id FROM held) FOR UPDATE SKIP LOCKED
), extended AS (
    UPDATE steps SET lease_expires_at = now() + make_interval(secs => %(lease)s)
      FROM free
     WHERE steps.id = free.id AND steps.status = 'running' AND steps.lease_owner = %(owner)s
    RETURNING steps.id
)
SELECT id FROM extended
UNION ALL
SELECT id FROM held WHERE id NOT IN (SELECT id FROM free)"""
