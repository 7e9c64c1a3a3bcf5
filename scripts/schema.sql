-- A line per object of schema colony_assign, in a stable order: what an upgraded database and
-- a fresh install must agree on (scripts/upgrade-check diffs the two). pg_dump cannot do this:
-- it dumps an extension as one CREATE EXTENSION, never its members.
SELECT line FROM (
    SELECT format('relation %s %s', c.relname, c.relkind)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'colony_assign'
    UNION ALL
    SELECT format('column %s.%s #%s %s%s default %s', c.relname, a.attname, a.attnum,
                  format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                  coalesce(pg_get_expr(d.adbin, d.adrelid), '-') || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE n.nspname = 'colony_assign' AND c.relkind IN ('r', 'c')
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'colony_assign'
    UNION ALL
    SELECT format('reloptions %s %s', c.relname, c.reloptions)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'colony_assign' AND c.reloptions IS NOT NULL
    UNION ALL
    SELECT format('constraint %s.%s %s', r.relname, k.conname, pg_get_constraintdef(k.oid))
    FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
    WHERE n.nspname = 'colony_assign'
    UNION ALL
    SELECT format('function %s(%s) returns %s language %s volatility %s %s parallel %s config %s strict %s rows %s acl %s body %s',
                  p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), l.lanname, p.provolatile,
                  CASE WHEN p.prosecdef THEN 'definer' ELSE 'invoker' END, p.proparallel,
                  coalesce(array_to_string(p.proconfig, ','), '-'), p.proisstrict, p.prorows,
                  coalesce(p.proacl::text, '-'),
                  coalesce(p.probin || ':', '') || md5(coalesce(pg_get_functiondef(p.oid), p.prosrc)))
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
    WHERE n.nspname = 'colony_assign'
    UNION ALL
    SELECT format('acl %s %s', c.relname, coalesce(c.relacl::text, '-'))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'colony_assign'
    UNION ALL
    SELECT format('comment %s %s: %s',
                  CASE d.classoid WHEN 'pg_proc'::regclass THEN 'function' WHEN 'pg_class'::regclass THEN 'relation'
                                  WHEN 'pg_type'::regclass THEN 'type' ELSE d.classoid::regclass::text END,
                  CASE d.classoid WHEN 'pg_proc'::regclass THEN d.objoid::regprocedure::text
                                  WHEN 'pg_class'::regclass THEN d.objoid::regclass::text
                                  WHEN 'pg_type'::regclass THEN d.objoid::regtype::text ELSE d.objoid::text END
                  || CASE WHEN d.objsubid > 0 THEN '.' || (SELECT a.attname FROM pg_attribute a
                                                           WHERE a.attrelid = d.objoid AND a.attnum = d.objsubid) ELSE '' END,
                  md5(d.description))
    FROM pg_description d
    WHERE (d.classoid = 'pg_proc'::regclass AND d.objoid IN (SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'colony_assign'))
       OR (d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'colony_assign'))
       OR (d.classoid = 'pg_type'::regclass AND d.objoid IN (SELECT t.oid FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'colony_assign'))
) AS schema(line)
ORDER BY line;
