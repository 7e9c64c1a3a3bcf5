-- Workflows: DAGs of processes by nodename and conditions.dependencies.
--
-- The graph lives on the processes themselves: `parents` (in dependency order), `children`
-- and `pending_parents`. A child is assignable when pending_parents reaches 0, which happens
-- in the transaction of its last parent's close(): one decrement per edge, never a re-read of
-- the whole graph (ColonyOS re-resolves the graph on every assign and close).

-- Called by close() with the children of a process that just succeeded: decrements each,
-- and releases (inputs + notification) those whose last parent this was. Returns how many.
CREATE FUNCTION colony_assign._release_children(child_ids bigint[]) RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    ready bigint[];
    channels integer;
BEGIN
    -- Two parents closing at once serialize on the child's row lock, so exactly one of them
    -- sees the count reach 0.
    WITH counted AS (
        UPDATE colony_assign.processes c SET pending_parents = c.pending_parents - 1
        WHERE c.id = ANY (child_ids) AND c.state = 0 AND c.pending_parents > 0
        RETURNING c.id, c.pending_parents
    )
    SELECT array_agg(counted.id) INTO ready FROM counted WHERE counted.pending_parents = 0;
    IF ready IS NULL THEN
        RETURN 0;
    END IF;
    -- A second statement on purpose: its fresh snapshot sees the output of a parent whose
    -- close committed while the decrement above waited for the child's row lock.
    -- A child with a preferred location starts its wait for it now (local-first placement),
    -- and is announced on that location's key until the wait is over.
    WITH filled AS (
        UPDATE colony_assign.processes c
        SET input = (SELECT jsonb_agg(p.output ORDER BY u.ord)
                     FROM unnest(c.parents) WITH ORDINALITY AS u(id, ord)
                     JOIN colony_assign.processes p ON p.id = u.id),
            locality_until = CASE
                WHEN c.preferred_location IS NOT NULL AND c.location IS NULL AND c.executor_names IS NULL
                     AND c.locality_wait > 0
                THEN now() + c.locality_wait * interval '1 second' END
        WHERE c.id = ANY (ready)
        RETURNING c.colony, c.executor_type, coalesce(c.location, CASE WHEN c.locality_until IS NOT NULL
                                                                   THEN c.preferred_location END) AS location,
                  c.executor_names
    ), keys AS (
        SELECT f.colony, f.executor_type, f.location, f.executor_names, count(*) AS n
        FROM filled f GROUP BY f.colony, f.executor_type, f.location, f.executor_names
    )
    SELECT sum(colony_assign._wake_group(k.colony, k.executor_type, k.location, k.executor_names, k.n))
    INTO channels FROM keys k;
    RETURN cardinality(ready);
END
$$;

-- Ends every waiting descendant of the `ended` processes as FAILED (3) or CANCELLED (4), each
-- with an error naming the ancestor that ended it. Returns how many.
CREATE FUNCTION colony_assign._end_descendants(ended bigint[], new_state integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    count bigint;
BEGIN
    WITH RECURSIVE below(id, root) AS (
        SELECT c.id, p.id
        FROM colony_assign.processes p, unnest(p.children) AS c(id)
        WHERE p.id = ANY (ended)
        UNION
        SELECT c.id, b.root
        FROM below b
        JOIN colony_assign.processes p ON p.id = b.id
        CROSS JOIN unnest(p.children) AS c(id)
    ), first_root AS (
        SELECT DISTINCT ON (b.id) b.id, b.root FROM below b ORDER BY b.id, b.root
    ), done AS (
        UPDATE colony_assign.processes p
        SET state = new_state, ended_at = now(),
            errors = array_append(coalesce(p.errors, '{}'),
                format('parent %s (process %s) %s', to_jsonb(r.nodename), r.id,
                       CASE WHEN new_state = 3 THEN 'failed' ELSE 'was cancelled' END))
        FROM first_root f
        JOIN colony_assign.processes r ON r.id = f.root
        WHERE p.id = f.id AND p.state = 0
        RETURNING p.id
    )
    SELECT count(*) INTO count FROM done;
    RETURN count;
END
$$;

CREATE FUNCTION colony_assign.submit_workflow(colony text, specs jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    n integer;
    nodes text[];
    bad bigint;
    name text;
    edge_child integer[];
    edge_parent integer[];
    edge_dep text[];
    pending integer[];
    cycle integer[];
    workflow bigint;
    ids bigint[];
BEGIN
    PERFORM colony_assign._colony(colony);
    PERFORM colony_assign._visible_colony(colony);
    PERFORM colony_assign._check_specs(colony, specs, false, true);
    n := jsonb_array_length(specs);
    IF n = 0 THEN
        RAISE EXCEPTION 'a workflow needs at least one spec' USING ERRCODE = '22023';
    END IF;

    SELECT array_agg(coalesce(a.s ->> 'nodename', '') ORDER BY a.i) INTO nodes
    FROM jsonb_array_elements(specs) WITH ORDINALITY AS a(s, i);
    SELECT u.i - 1 INTO bad FROM unnest(nodes) WITH ORDINALITY AS u(node, i) WHERE u.node = '' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'spec[%]: spec.nodename is required in a workflow', bad USING ERRCODE = '22023';
    END IF;
    SELECT u.node INTO name FROM unnest(nodes) AS u(node) GROUP BY u.node HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'nodename % is used twice', to_jsonb(name)::text USING ERRCODE = '22023';
    END IF;

    -- Edges child <- parent as 0-based spec indexes, grouped by child with its dependencies in
    -- the order written (so an edge's position orders a child's parents).
    SELECT coalesce(array_agg(e.child ORDER BY e.child, e.ord), '{}'),
           coalesce(array_agg(e.parent ORDER BY e.child, e.ord), '{}'),
           coalesce(array_agg(e.dep ORDER BY e.child, e.ord), '{}')
    INTO edge_child, edge_parent, edge_dep
    FROM (SELECT (a.i - 1)::integer AS child, array_position(nodes, d.dep) - 1 AS parent, d.dep, d.ord
          FROM jsonb_array_elements(specs) WITH ORDINALITY AS a(s, i),
               jsonb_array_elements_text(CASE WHEN jsonb_typeof(a.s #> '{conditions,dependencies}') = 'array'
                                              THEN a.s #> '{conditions,dependencies}' ELSE '[]' END)
                   WITH ORDINALITY AS d(dep, ord)) AS e;
    SELECT e.child, e.dep INTO bad, name
    FROM unnest(edge_child, edge_parent, edge_dep) AS e(child, parent, dep) WHERE e.parent IS NULL LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'spec[%]: dependency % is not a nodename of this workflow', bad, to_jsonb(name)::text
            USING ERRCODE = '22023';
    END IF;
    SELECT e.child, e.dep INTO bad, name
    FROM unnest(edge_child, edge_dep) AS e(child, dep) GROUP BY e.child, e.dep HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'spec[%]: dependency % is listed twice', bad, to_jsonb(name)::text USING ERRCODE = '22023';
    END IF;
    cycle := colony_assign._find_cycle(n, edge_child, edge_parent);
    IF cardinality(cycle) > 0 THEN
        RAISE EXCEPTION 'the dependencies form a cycle: %',
            (SELECT string_agg(to_jsonb(nodes[c.i + 1])::text, ' -> ' ORDER BY c.ord)
             FROM unnest(cycle || cycle[1]) WITH ORDINALITY AS c(i, ord))
            USING ERRCODE = '22023';
    END IF;

    INSERT INTO colony_assign.workflows (colony) VALUES (colony) RETURNING id INTO workflow;
    SELECT array_agg(coalesce(x.parents, 0)::integer ORDER BY g.i) INTO pending
    FROM generate_series(0, n - 1) AS g(i)
    LEFT JOIN (SELECT e.child, count(*) AS parents FROM unnest(edge_child) AS e(child) GROUP BY e.child) x
        ON x.child = g.i;
    -- Roots are assignable (and notified) at once; the others wait for their parents.
    ids := colony_assign._insert_specs(colony, specs, workflow, pending);
    UPDATE colony_assign.processes p
    SET parents = up.parent_ids, children = down.child_ids
    FROM generate_series(0, n - 1) AS g(i)
    LEFT JOIN (SELECT e.child, array_agg(ids[e.parent + 1] ORDER BY e.k) AS parent_ids
               FROM unnest(edge_child, edge_parent) WITH ORDINALITY AS e(child, parent, k)
               GROUP BY e.child) up ON up.child = g.i
    LEFT JOIN (SELECT e.parent, array_agg(ids[e.child + 1] ORDER BY e.child) AS child_ids
               FROM unnest(edge_child, edge_parent) AS e(child, parent)
               GROUP BY e.parent) down ON down.parent = g.i
    WHERE p.id = ids[g.i + 1] AND (up.parent_ids IS NOT NULL OR down.child_ids IS NOT NULL);
    RETURN workflow;
END
$$;

-- A workflow and its graph, as JSON: state (the graph's: FAILED if any member failed,
-- CANCELLED if any was cancelled, SUCCESS when all succeeded, RUNNING once any started, else
-- WAITING) and every node with its process, state and edges by nodename.
CREATE FUNCTION colony_assign.workflow(workflow_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb;
BEGIN
    SELECT jsonb_build_object(
        'id', w.id,
        'colony', w.colony,
        'submitted_at', w.submitted_at,
        'state', CASE WHEN bool_or(p.state = 3) THEN 3
                      WHEN bool_or(p.state = 4) THEN 4
                      WHEN bool_and(p.state = 2) THEN 2
                      WHEN bool_or(p.state IN (1, 2)) THEN 1
                      ELSE 0 END,
        'nodes', jsonb_agg(jsonb_build_object(
            'nodename', p.nodename,
            'process_id', p.id,
            'state', p.state,
            'pending_parents', p.pending_parents,
            'parents', (SELECT coalesce(jsonb_agg(q.nodename ORDER BY u.ord), '[]')
                        FROM unnest(p.parents) WITH ORDINALITY AS u(id, ord)
                        JOIN colony_assign.processes q ON q.id = u.id),
            'children', (SELECT coalesce(jsonb_agg(q.nodename ORDER BY q.id), '[]')
                         FROM colony_assign.processes q WHERE q.id = ANY (p.children)))
            ORDER BY p.id))
    INTO result
    FROM colony_assign.workflows w
    JOIN colony_assign.processes p ON p.workflow_id = w.id
    WHERE w.id = workflow.workflow_id
    GROUP BY w.id, w.colony, w.submitted_at;
    -- Another colony's workflow looks exactly like none (src/identity.rs).
    IF result IS NULL OR NOT colony_assign._may_see(result ->> 'colony') THEN
        RAISE EXCEPTION 'unknown workflow %', workflow_id USING ERRCODE = 'P0002';
    END IF;
    RETURN result;
END
$$;
