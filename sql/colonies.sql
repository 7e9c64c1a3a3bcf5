-- Colonies: add, remove, pause/resume, strict mode, statistics.
--
-- Every public function is SECURITY DEFINER with a pinned search_path and schema-qualified
-- references, so a caller's search_path (say, a shadowing public.processes) cannot redirect it.

--------------------------------------------------------------------------------
-- Internal helpers
--------------------------------------------------------------------------------

-- Raises P0002 when the colony does not exist; returns its row otherwise.
CREATE FUNCTION colony_assign._colony(colony text) RETURNS colony_assign.colonies
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_colony colony_assign.colonies;
BEGIN
    PERFORM colony_assign._check_name(colony, 'colony');
    SELECT * INTO found_colony FROM colony_assign.colonies c WHERE c.name = colony;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown colony %', to_jsonb(colony)::text USING ERRCODE = 'P0002';
    END IF;
    RETURN found_colony;
END
$$;

-- Notifies every key that has assignable waiting work in the colony (resume, and anything
-- else that may have left waiters asleep). Returns how many processes that covers.
CREATE FUNCTION colony_assign._wake_colony(colony text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    total bigint := 0;
    key record;
BEGIN
    FOR key IN
        -- A process still waiting for its preferred location is announced on that location's key.
        SELECT p.executor_type,
               coalesce(p.location, CASE WHEN p.locality_until IS NOT NULL THEN p.preferred_location END) AS location,
               p.executor_names, count(*) AS n
        FROM colony_assign.processes p
        WHERE p.colony = _wake_colony.colony AND p.state = 0 AND p.pending_parents = 0
        GROUP BY 1, 2, 3
    LOOP
        PERFORM colony_assign._wake_group(colony, key.executor_type, key.location, key.executor_names, key.n);
        total := total + key.n;
    END LOOP;
    RETURN total;
END
$$;

-- True when this session may see the colony; raises P0002 (as for an unknown colony) when it
-- may not, and 42501 when it has not logged in (src/identity.rs).
CREATE FUNCTION colony_assign._visible_colony(colony text) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT colony_assign._may_see(colony) THEN
        RAISE EXCEPTION 'unknown colony %', to_jsonb(colony)::text USING ERRCODE = 'P0002';
    END IF;
    RETURN true;
END
$$;

--------------------------------------------------------------------------------
-- Public functions
--------------------------------------------------------------------------------

CREATE FUNCTION colony_assign.add_colony(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._check_name(name, 'colony');
    INSERT INTO colony_assign.colonies (name) VALUES (add_colony.name)
    ON CONFLICT ON CONSTRAINT colonies_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'colony % already exists', to_jsonb(name)::text USING ERRCODE = '23505';
    END IF;
END
$$;

CREATE FUNCTION colony_assign.remove_colony(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._check_name(name, 'colony');
    DELETE FROM colony_assign.colonies c WHERE c.name = remove_colony.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown colony %', to_jsonb(name)::text USING ERRCODE = 'P0002';
    END IF;
    DELETE FROM colony_assign.executors e WHERE e.colony = remove_colony.name;
    DELETE FROM colony_assign.processes p WHERE p.colony = remove_colony.name;
    DELETE FROM colony_assign.idempotency_keys k WHERE k.colony = remove_colony.name;
    -- Coordinators drop cached tokens of this colony and answer its parked long-polls.
    PERFORM pg_notify('ca_control', jsonb_build_object('event', 'colony_removed', 'colony', name)::text);
END
$$;

CREATE FUNCTION colony_assign.pause(colony text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    UPDATE colony_assign.colonies c SET paused = true WHERE c.name = pause.colony;
END
$$;

CREATE FUNCTION colony_assign.resume(colony text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    UPDATE colony_assign.colonies c SET paused = false WHERE c.name = resume.colony AND c.paused;
    -- Waiters parked on any coordinator replica (or SQL-direct) wake through their own keys,
    -- unlike ColonyOS where only the replica that served the resume call wakes its waiters.
    IF FOUND THEN
        PERFORM colony_assign._wake_colony(colony);
    END IF;
END
$$;

CREATE FUNCTION colony_assign.set_strict(colony text, strict boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    IF strict IS NULL THEN
        RAISE EXCEPTION 'strict must not be NULL' USING ERRCODE = '22004';
    END IF;
    UPDATE colony_assign.colonies c SET strict = set_strict.strict WHERE c.name = set_strict.colony;
END
$$;

CREATE FUNCTION colony_assign.configure(colony text, stale_after interval DEFAULT NULL,
                                        retention interval DEFAULT NULL,
                                        claim_lease interval DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._colony(colony);
    IF stale_after <= interval '0' OR retention <= interval '0' OR claim_lease <= interval '0' THEN
        RAISE EXCEPTION 'stale_after, retention and claim_lease must be positive' USING ERRCODE = '22023';
    END IF;
    -- Bounded so that now() - retention (reap) and last_seen + stale_after stay timestamps:
    -- one colony's setting must not break reap() for every colony of the database.
    IF stale_after > interval '10 years' OR retention > interval '10 years' THEN
        RAISE EXCEPTION 'stale_after and retention must be at most 10 years' USING ERRCODE = '22023';
    END IF;
    -- A lease is added to a claim's time inside the claim (src/claim.rs), in microseconds.
    IF claim_lease > interval '1 day' THEN
        RAISE EXCEPTION 'claim_lease must be at most 1 day' USING ERRCODE = '22023';
    END IF;
    UPDATE colony_assign.colonies c
    SET stale_after = coalesce(configure.stale_after, c.stale_after),
        retention = coalesce(configure.retention, c.retention),
        claim_lease = coalesce(configure.claim_lease, c.claim_lease)
    WHERE c.name = configure.colony;
END
$$;

-- Each count is written so that a partial index answers it: stats() must not scan the whole
-- processes table of a busy colony.
CREATE FUNCTION colony_assign.stats(colony text,
    OUT paused boolean, OUT strict boolean, OUT executors bigint,
    OUT waiting bigint, OUT blocked bigint, OUT running bigint,
    OUT succeeded bigint, OUT failed bigint, OUT cancelled bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT c.paused, c.strict,
           (SELECT count(*) FROM colony_assign.executors e WHERE e.colony = c.name),
           (SELECT count(*) FROM colony_assign.processes p
             WHERE p.colony = c.name AND p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NULL)
         + (SELECT count(*) FROM colony_assign.processes p
             WHERE p.colony = c.name AND p.state = 0 AND p.pending_parents = 0 AND p.executor_names IS NOT NULL),
           (SELECT count(*) FROM colony_assign.processes p
             WHERE p.workflow_id IS NOT NULL AND p.colony = c.name AND p.state = 0 AND p.pending_parents > 0),
           (SELECT count(*) FROM colony_assign.processes p WHERE p.colony = c.name AND p.state = 1 AND p.started_at IS NOT NULL),
           finished.succeeded, finished.failed, finished.cancelled
    FROM colony_assign._colony(stats.colony) AS c
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE p.state = 2) AS succeeded,
               count(*) FILTER (WHERE p.state = 3) AS failed,
               count(*) FILTER (WHERE p.state = 4) AS cancelled
        FROM colony_assign.processes p WHERE p.colony = c.name AND p.state >= 2
    ) AS finished
    -- Another colony's stats look like an unknown colony's (src/identity.rs).
    WHERE colony_assign._visible_colony(c.name);
END;
