-- Privileges and function comments. Runs last.
--
-- Nobody but the owner touches the tables. Functions are executable only by the role that
-- needs them (PostgreSQL grants EXECUTE to PUBLIC by default, so that is revoked first):
--   colony_assign_executor     assign, close, fail and what an executor inspects
--   colony_assign_submitter    submit, cancel and inspection
--   colony_assign_coordinator  both of the above, plus token checks, release and catch-up
--   colony_assign_admin        everything, including colonies, executors and reap()

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA colony_assign FROM PUBLIC;
GRANT USAGE ON SCHEMA colony_assign
    TO colony_assign_executor, colony_assign_submitter, colony_assign_coordinator, colony_assign_admin;

-- Everyone with a colony_assign role logs in (and out) the same way.
GRANT EXECUTE ON FUNCTION colony_assign.login(text), colony_assign.logout()
TO colony_assign_executor, colony_assign_submitter, colony_assign_coordinator, colony_assign_admin;

GRANT EXECUTE ON FUNCTION
    colony_assign.assign(text, text, integer),
    colony_assign.close(bigint, text, jsonb, text),
    colony_assign.close_many(text, jsonb, text),
    colony_assign.fail(bigint, text, text[], text),
    colony_assign.channels(text, text),
    colony_assign.channel(text, text, text),
    colony_assign.process(bigint),
    colony_assign.workflow(bigint),
    colony_assign.heartbeat(text, text, bigint[]),
    colony_assign.running(text, text),
    colony_assign.log(bigint, text, text, text),
    colony_assign.logs(bigint)
TO colony_assign_executor;

GRANT EXECUTE ON FUNCTION
    colony_assign.submit(text, jsonb, text),
    colony_assign.submit_many(text, jsonb, text),
    colony_assign.cancel(bigint),
    colony_assign.channel(text, text, text),
    colony_assign.process(bigint),
    colony_assign.stats(text),
    colony_assign.submit_workflow(text, jsonb),
    colony_assign.workflow(bigint),
    colony_assign.logs(bigint)
TO colony_assign_submitter;

GRANT EXECUTE ON FUNCTION
    colony_assign.authenticate(text),
    colony_assign.release(text, text, bigint[]),
    colony_assign.backlog(text[], text[], text[], text[], integer),
    colony_assign.worker_active(),
    colony_assign.assign_batch(text[], text[], integer[]),
    colony_assign.close_batch(bigint[], text[], jsonb[], text[]),
    -- reap() is compare-and-set, so coordinators may run it when no background worker does.
    colony_assign.reap()
TO colony_assign_coordinator;

GRANT EXECUTE ON FUNCTION
    colony_assign.add_colony(text),
    colony_assign.remove_colony(text),
    colony_assign.add_executor(text, text, text, text),
    colony_assign.remove_executor(text, text),
    colony_assign.pause(text),
    colony_assign.resume(text),
    colony_assign.set_strict(text, boolean),
    colony_assign.configure(text, interval, interval, interval),
    colony_assign.add_admin(text, text[]),
    colony_assign.remove_admin(text)
TO colony_assign_admin;

--------------------------------------------------------------------------------
-- Public functions. SQLSTATEs: 22004 NULL argument, 22023 invalid value, 23505 already
-- exists, 42501 not allowed, 54000 too large, 55000 wrong state, P0002 not found.
--------------------------------------------------------------------------------
COMMENT ON FUNCTION colony_assign.login(text) IS
    'Binds this session to the executor or admin that owns the token, until logout() or the session ends; returns (kind, colony, name). Roles other than colony_assign_coordinator and colony_assign_admin act only as what they logged in as. Errors: 28000 unknown token, 22004 NULL.';
COMMENT ON FUNCTION colony_assign.logout() IS 'Ends this session''s login: it acts as nobody again.';
COMMENT ON FUNCTION colony_assign.add_admin(text, text[]) IS
    'Creates an admin token reaching the given colonies (NULL = every colony); returns the token once (only its SHA-256 is stored). Errors: 22004/22023 bad name, P0002 unknown colony, 23505 it exists.';
COMMENT ON FUNCTION colony_assign.remove_admin(text) IS 'Removes an admin token and tells coordinators. Errors: P0002 unknown admin.';
COMMENT ON FUNCTION colony_assign.add_colony(text) IS
    'Adds a colony. Errors: 22004/22023 bad name, 23505 it exists.';
COMMENT ON FUNCTION colony_assign.remove_colony(text) IS
    'Removes a colony with its executors and processes, and tells coordinators. Errors: P0002 unknown colony.';
COMMENT ON FUNCTION colony_assign.add_executor(text, text, text, text) IS
    'Registers an executor of a type, optionally at a location; returns its bearer token (only the SHA-256 is stored). Errors: P0002 unknown colony, 22004/22023 bad name, 23505 it exists.';
COMMENT ON FUNCTION colony_assign.remove_executor(text, text) IS
    'Removes an executor; its RUNNING processes go back to WAITING at once and are notified. Errors: P0002 unknown colony or executor.';
COMMENT ON FUNCTION colony_assign.submit(text, jsonb, text) IS
    'Submits one ColonyOS-style FunctionSpec; returns its id and notifies its key at commit. With an idempotency_key, a retry returns the first call''s id instead of submitting again. Errors: P0002 unknown colony, 22023 invalid spec (the message names the field) or key reused for another request, 54000 spec over 256 KiB.';
COMMENT ON FUNCTION colony_assign.submit_many(text, jsonb, text) IS
    'Submits a JSON array of specs in one transaction (all or none); returns ids in input order; one NOTIFY per distinct key. Errors as submit(), messages prefixed with spec[i]; 54000 over 100000 specs.';
COMMENT ON FUNCTION colony_assign.assign(text, text, integer) IS
    'Claims up to max_count processes the executor may run (type, names, location; priority then age) with FOR UPDATE SKIP LOCKED, marks them RUNNING with deadlines and the executor alive. Empty when nothing is assignable or the colony is paused. Strict colonies serialize claims per type for exact order. Errors: 22023 max_count outside 1..1000, P0002 unknown colony or executor.';
COMMENT ON FUNCTION colony_assign.close(bigint, text, jsonb, text) IS
    'Marks a RUNNING process SUCCESS with its output; only its assigned executor may (of the given colony, when one is given: executor names are unique per colony). Errors: P0002 unknown process, 55000 not running (e.g. closed twice), 42501 assigned to another executor or in another colony, 54000 output over 256 KiB.';
COMMENT ON FUNCTION colony_assign.close_many(text, jsonb, text) IS
    'Closes a batch (JSON array of {"id", "output"}, at most 1000) for one executor in one statement; returns per id whether it was closed and why not. Errors: 22023 malformed batch, 54000 too many or an output over 256 KiB.';
COMMENT ON FUNCTION colony_assign.fail(bigint, text, text[], text) IS
    'Marks a RUNNING process FAILED with errors; only its assigned executor may. Errors as close().';
COMMENT ON FUNCTION colony_assign.authenticate(text) IS
    'The executor (colony, name, type, location) a bearer token belongs to; no row for an unknown token.';
COMMENT ON FUNCTION colony_assign.assign_batch(text[], text[], integer[]) IS
    'Coordinator: assign() for several executors in one call (parallel arrays, served in order); per claimed process (request, process), per refused request (request, NULL, sqlstate, message). Strict colonies hold their (colony, type) lock once for the batch. Each claim carries a lease (lease_until = claim time + the colony''s claim_lease) that the executor''s close, fail, log or heartbeat acknowledges; reap() gives back claims whose lease ran out. Errors: 22004 NULL array, 22023 arrays of different lengths.';
COMMENT ON FUNCTION colony_assign.close_batch(bigint[], text[], jsonb[], text[]) IS
    'Coordinator: close() for several (process, executor, output, colony) in one call; one row per request (request, sqlstate, message), sqlstate NULL when closed, else what close() would have raised. Errors: 22004 NULL array, 22023 arrays of different lengths.';
COMMENT ON FUNCTION colony_assign.release(text, text, bigint[]) IS
    'Puts processes claimed by an executor back to WAITING (no retry counted) and notifies them: for a long-poll response that could not be delivered.';
COMMENT ON FUNCTION colony_assign.backlog(text[], text[], text[], text[], integer) IS
    'Catch-up check: per wake-up key (parallel arrays), how many processes are assignable now, capped. Keys without work and keys of paused colonies are left out.';
COMMENT ON FUNCTION colony_assign.cancel(bigint) IS
    'Cancels a WAITING or RUNNING process. Errors: P0002 unknown process, 55000 already ended.';
COMMENT ON FUNCTION colony_assign.pause(text) IS
    'Pauses assignment in a colony: assign() returns nothing until resume(). Errors: P0002 unknown colony.';
COMMENT ON FUNCTION colony_assign.resume(text) IS
    'Resumes assignment and notifies every key with waiting work, so waiters on every coordinator replica wake. Errors: P0002 unknown colony.';
COMMENT ON FUNCTION colony_assign.set_strict(text, boolean) IS
    'Switches a colony between distributed (SKIP LOCKED, concurrent) and strict (exact priority order) assignment. Errors: P0002 unknown colony, 22004 NULL.';
COMMENT ON FUNCTION colony_assign.reap() IS
    'Enforces deadlines (RUNNING past maxexectime back to WAITING with retries + 1, or FAILED when maxretries is used up; WAITING past maxwaittime FAILED; workflow descendants of what failed fail too), gives back (WAITING, no retry counted, key notified) coordinator claims whose lease ran out unacknowledged, requeues the processes of executors silent past stale_after, and deletes finished processes past retention. Bounded batches; more = call again. Safe to run from many sessions at once.';
COMMENT ON FUNCTION colony_assign.submit_workflow(text, jsonb) IS
    'Submits a DAG: a JSON array of specs, each with a unique nodename and conditions.dependencies naming its parents; returns the workflow id. Roots are assignable at once, a child when its last parent succeeds (its input = the parents'' outputs in dependency order); a failed or cancelled node ends its descendants. Errors: 22023 empty, missing/duplicate nodename, unknown or repeated dependency, cycle (named), invalid spec; 54000 too large; P0002 unknown colony.';
COMMENT ON FUNCTION colony_assign.workflow(bigint) IS
    'A workflow as JSON: its state and every node with process id, state and edges. Errors: P0002 unknown workflow.';
COMMENT ON FUNCTION colony_assign.heartbeat(text, text, bigint[]) IS
    'Keeps a busy executor alive (every executor call does too) and acknowledges the claim leases of the listed processes that are RUNNING for it (others are ignored; NULL or empty acknowledges nothing). Errors: 22004 NULL name, P0002 unknown colony or executor, 42501 not the logged-in executor.';
COMMENT ON FUNCTION colony_assign.running(text, text) IS
    'The processes RUNNING for an executor, oldest claim first: those it holds and any claim whose answer it lost (a session that died between assign()''s commit and its answer). Call on each new session before the first assign() and run or fail what you do not hold. Writes nothing. Errors: 22004 NULL name, P0002 unknown colony or executor, 42501 not the logged-in executor.';
COMMENT ON FUNCTION colony_assign.log(bigint, text, text, text) IS
    'Appends a progress message to a RUNNING process (acknowledging its claim lease); only its assigned executor may. Errors: 22004 NULL message, 54000 over 16 KiB, and those of close().';
COMMENT ON FUNCTION colony_assign.logs(bigint) IS
    'A process''s log messages, oldest first. Errors: P0002 unknown process.';
COMMENT ON FUNCTION colony_assign.configure(text, interval, interval, interval) IS
    'Sets a colony''s stale_after (executor liveness), retention (finished processes) and claim_lease (how long a coordinator claim may go unacknowledged before the reaper gives it back; default 15 s); NULL keeps a value. Errors: P0002 unknown colony, 22023 not positive, stale_after or retention over 10 years, claim_lease over 1 day.';
COMMENT ON FUNCTION colony_assign.worker_active() IS
    'Whether the background reaper runs in this database.';
COMMENT ON FUNCTION colony_assign.channels(text, text) IS
    'The channels an executor LISTENs on: its location key, its type''s broadcast key and its name key. Errors: 22004 NULL name, P0002 unknown colony or executor.';
COMMENT ON FUNCTION colony_assign.channel(text, text, text) IS
    'The notification channel of (colony, executor type, location); NULL or empty location = the broadcast channel. At most 63 bytes, safe for any input.';
COMMENT ON FUNCTION colony_assign.process(bigint) IS
    'One process. Errors: P0002 unknown process.';
COMMENT ON FUNCTION colony_assign.stats(text) IS
    'Counts of a colony''s executors and processes per state. Errors: P0002 unknown colony.';

--------------------------------------------------------------------------------
-- Internal functions (not granted to anyone)
--------------------------------------------------------------------------------
COMMENT ON FUNCTION colony_assign._wake(text, text, text, text[], bigint) IS
    'Internal: records that n processes became assignable for a key; one NOTIFY per key is sent at commit.';
COMMENT ON FUNCTION colony_assign._executor_channels(text, text, text, text) IS
    'Internal: channel names of an executor with these attributes.';
COMMENT ON FUNCTION colony_assign._check_name(text, text) IS 'Internal: raises 22004/22023 for a NULL, empty or over-long name.';
COMMENT ON FUNCTION colony_assign._max_document_bytes() IS 'Internal: largest spec, output or error list accepted (bytes).';
COMMENT ON FUNCTION colony_assign._colony(text) IS 'Internal: the colony row, or P0002.';
COMMENT ON FUNCTION colony_assign._wake_colony(text) IS 'Internal: notifies every key with assignable work in a colony.';
COMMENT ON FUNCTION colony_assign._as_executor(text, text) IS 'Internal: the executor row for a call made as it: 42501 unless this session may act as it, then P0002 when unknown.';
COMMENT ON FUNCTION colony_assign._executor(text, text) IS 'Internal: the executor row, or P0002.';
COMMENT ON FUNCTION colony_assign._requeue_ids(bigint[]) IS 'Internal: puts RUNNING processes (row locks held by the caller) back to WAITING, no retry counted, and notifies their keys.';
COMMENT ON FUNCTION colony_assign._requeue_running(text, text, bigint[]) IS 'Internal: puts an executor''s RUNNING processes (all, or the given ones) back to WAITING and notifies them.';
COMMENT ON FUNCTION colony_assign._public(colony_assign.processes) IS 'Internal: a stored process in its public shape.';
COMMENT ON FUNCTION colony_assign._state_name(integer) IS 'Internal: name of a state.';
COMMENT ON FUNCTION colony_assign._wake_group(text, text, text, text[], bigint) IS 'Internal: notifies the key(s) of a group of processes; named ones only wake executors that could take them.';
COMMENT ON FUNCTION colony_assign._explain_not_running(bigint, text, text) IS 'Internal: raises why a close/fail matched no row.';
COMMENT ON FUNCTION colony_assign._touch(text, text) IS 'Internal: refreshes executor liveness (at most once a second).';
COMMENT ON FUNCTION colony_assign._check_specs(text, jsonb, boolean, boolean) IS 'Internal: raises the first problem of an array of specs (22023/54000, spec[i]: prefixed).';
COMMENT ON FUNCTION colony_assign._insert_specs(text, jsonb, bigint, integer[]) IS 'Internal: inserts checked specs and notifies the assignable ones.';
COMMENT ON FUNCTION colony_assign._release_children(bigint[]) IS 'Internal: one decrement per edge after a parent succeeded; releases children whose last parent it was.';
COMMENT ON FUNCTION colony_assign._end_descendants(bigint[], integer) IS 'Internal: fails or cancels every waiting descendant, naming the ancestor.';
COMMENT ON FUNCTION colony_assign._find_cycle(integer, integer[], integer[]) IS 'Internal: one cycle of a dependency graph (Kahn''s algorithm), or an empty array.';
COMMENT ON FUNCTION colony_assign._max_log_bytes() IS 'Internal: largest log message accepted (bytes).';
COMMENT ON FUNCTION colony_assign._reap_batch() IS 'Internal: rows per reap() pass.';
COMMENT ON FUNCTION colony_assign._release_local() IS 'Internal: processes whose preferred-location wait is over join the anywhere range and are announced to every executor of their type.';
COMMENT ON FUNCTION colony_assign._next_release() IS 'Internal: when the next preferred-location wait ends (NULL: none).';
COMMENT ON FUNCTION colony_assign._wake_launcher() IS 'Internal: asks the background launcher to look for databases when this transaction commits (the install script calls it).';
COMMENT ON FUNCTION colony_assign._may_see(text) IS 'Internal: whether this session may see a colony''s objects (42501 when it has not logged in).';
COMMENT ON FUNCTION colony_assign._visible_colony(text) IS 'Internal: true, or P0002 as for an unknown colony when this session may not see it.';
COMMENT ON FUNCTION colony_assign._trusted() IS 'Internal: whether this session''s role acts for anyone (coordinator, admin, superuser).';
COMMENT ON FUNCTION colony_assign._session_colony() IS 'Internal: the colony of the executor this session logged in as (NULL for trusted roles).';
COMMENT ON FUNCTION colony_assign._acting_as(text, text, bytea) IS 'Internal: 42501 unless this session may act as the executor (and its login token is still the executor''s).';
COMMENT ON FUNCTION colony_assign._strict_lock(text, text) IS 'Internal: takes strict mode''s (colony, executor type) lock, as assign() does (for tests that hold it).';

-- A database where the extension was just installed gets its background worker when this
-- transaction commits, not at the launcher's next round.
SELECT colony_assign._wake_launcher();
