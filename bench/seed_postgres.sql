-- The seed's Postgres design, as bench/ingest.py runs it for comparison: one `run_log` table, a
-- BEFORE INSERT trigger that hash-chains each row to the one before it with pgcrypto's digest()
-- under a transaction-scoped advisory lock, and row level security that lets the application role
-- only INSERT and SELECT (it gets no UPDATE or DELETE grant either).
--
-- bench/ingest.py fills in {schema} (one schema per variant, dropped afterwards), {role} (the
-- application role, NOLOGIN; clients connect as the superuser and SET ROLE to it, so grants and
-- RLS apply), {crypto} (the schema pgcrypto is installed in) and {lock_key}. A section runs as
-- one multi-statement string: its own statements, then the common ones.

-- @variant correct
-- The id is assigned inside the trigger, after the lock is held: ids follow lock order, so each
-- row's prev is the hash of the row with the previous id.
CREATE SCHEMA {schema};
CREATE TABLE {schema}.run_log (
    id bigint PRIMARY KEY,
    trace_id text NOT NULL,
    step text NOT NULL,
    status text NOT NULL,
    attrs jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    prev bytea,
    hash bytea NOT NULL
);
CREATE FUNCTION {schema}.run_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_id bigint;
    last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock({lock_key});
    SELECT id, hash INTO last_id, last_hash FROM {schema}.run_log ORDER BY id DESC LIMIT 1;
    NEW.id := coalesce(last_id, 0) + 1;
    NEW.prev := last_hash;
    NEW.hash := {crypto}.digest(
        coalesce(last_hash, ''::bytea) || convert_to(
            concat_ws('|', NEW.id, NEW.trace_id, NEW.step, NEW.status, NEW.attrs::text, NEW.created_at), 'UTF8'),
        'sha256');
    RETURN NEW;
END $$;

-- @variant bigserial
-- The obvious way: the id comes from the bigserial default, evaluated before the trigger takes
-- the lock. Two concurrent inserts can take ids 5 and 6 and then the lock in the order 6, 5:
-- row 6 chains to row 4 and row 5 to row 6, a fork that nothing reports.
CREATE SCHEMA {schema};
CREATE TABLE {schema}.run_log (
    id bigserial PRIMARY KEY,
    trace_id text NOT NULL,
    step text NOT NULL,
    status text NOT NULL,
    attrs jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    prev bytea,
    hash bytea NOT NULL
);
GRANT USAGE ON SEQUENCE {schema}.run_log_id_seq TO {role};
CREATE FUNCTION {schema}.run_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock({lock_key});
    SELECT hash INTO last_hash FROM {schema}.run_log ORDER BY id DESC LIMIT 1;
    NEW.prev := last_hash;
    NEW.hash := {crypto}.digest(
        coalesce(last_hash, ''::bytea) || convert_to(
            concat_ws('|', NEW.id, NEW.trace_id, NEW.step, NEW.status, NEW.attrs::text, NEW.created_at), 'UTF8'),
        'sha256');
    RETURN NEW;
END $$;

-- @common
CREATE TRIGGER run_log_chain BEFORE INSERT ON {schema}.run_log
    FOR EACH ROW EXECUTE FUNCTION {schema}.run_log_chain();
ALTER TABLE {schema}.run_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY run_log_insert ON {schema}.run_log FOR INSERT TO {role} WITH CHECK (true);
CREATE POLICY run_log_select ON {schema}.run_log FOR SELECT TO {role} USING (true);
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT, INSERT ON {schema}.run_log TO {role};

-- @forks
-- A fork: a row whose prev is not the hash of the row with the previous id.
SELECT count(*) FROM (
    SELECT prev, lag(hash) OVER (ORDER BY id) AS expected, row_number() OVER (ORDER BY id) AS n
    FROM {schema}.run_log
) chained
WHERE n > 1 AND prev IS DISTINCT FROM expected;
