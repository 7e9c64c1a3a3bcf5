-- Identity: who a session acts as (src/identity.rs explains the model; docs/sql-api.md the use).
-- login() and logout() are C functions: the identity lives in the backend's memory, where
-- every executor entry point checks it.

CREATE FUNCTION colony_assign.login(token text,
    OUT kind text, OUT colony text, OUT name text)
RETURNS record
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'colony_assign_login';

CREATE FUNCTION colony_assign.logout() RETURNS void
LANGUAGE c VOLATILE PARALLEL UNSAFE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'colony_assign_logout';

-- An admin token: for operators (SQL login) and the coordinator's admin routes. The token is
-- returned once; only its SHA-256 is stored. `colonies` NULL reaches every colony.
CREATE FUNCTION colony_assign.add_admin(name text, colonies text[] DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- 244 random bits, as executor tokens; the prefix tells a leaked admin token apart.
    token text := 'caa_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
    unknown text;
BEGIN
    PERFORM colony_assign._check_name(name, 'admin');
    IF colonies IS NOT NULL THEN
        SELECT c INTO unknown FROM unnest(colonies) AS c
        WHERE c IS NULL OR NOT EXISTS (SELECT FROM colony_assign.colonies k WHERE k.name = c) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'unknown colony %', coalesce(to_jsonb(unknown)::text, 'NULL') USING ERRCODE = 'P0002';
        END IF;
    END IF;
    INSERT INTO colony_assign.admins (name, token_hash, colonies)
    VALUES (add_admin.name, sha256(convert_to(token, 'UTF8')), add_admin.colonies)
    ON CONFLICT ON CONSTRAINT admins_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'admin % already exists', to_jsonb(name)::text USING ERRCODE = '23505';
    END IF;
    RETURN token;
END
$$;

CREATE FUNCTION colony_assign.remove_admin(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM colony_assign._check_name(name, 'admin');
    DELETE FROM colony_assign.admins a WHERE a.name = remove_admin.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown admin %', to_jsonb(name)::text USING ERRCODE = 'P0002';
    END IF;
    -- Coordinators drop the cached token.
    PERFORM pg_notify('ca_control', jsonb_build_object('event', 'admin_removed', 'admin', name)::text);
END
$$;
