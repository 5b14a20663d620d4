-- The staging tables one import fills chunk by chunk (COPY), dropped at its commit.
-- legacy_import_staging: one row per record -- what the intake registered, the read
-- model after its last transition, and the termination registry's entry of a case
-- concluded after re-review. legacy_import_events: the audit records of its transitions.
-- Personal data arrives sealed (load.seal_rows): not even a temp table holds it in clear.
CREATE TEMP TABLE legacy_import_staging (
    line integer, intake_id text, workflow_id text, registration_no text,
    registered_unit text, channel text, category text, law_related boolean, profile text,
    persons integer, matter_key text, petitioner_id_index text, petitioner_phone_index text,
    petitioner_sealed bytea, subject_sealed bytea, content_sealed bytea,
    attachments_sealed bytea, received_at timestamptz, registered_at timestamptz,
    -- the read model (domain.projections.read_model_row), merged over the records
    stage text, outcome text, holding_unit text, responsible_unit text, handler_id text,
    leader_id text, next_deadline timestamptz, overdue boolean, was_overdue boolean,
    escalation_level integer, extension_days integer, satisfaction text,
    repeat_visits integer, reviewed boolean, acceptance_due timestamptz,
    handling_due timestamptz, accepted_at timestamptz, replied_at timestamptz,
    closed_at timestamptz, last_seq integer,
    concluded_at timestamptz, concluded_by text
) ON COMMIT DROP;

CREATE TEMP TABLE legacy_import_events (
    intake_id text, seq integer, idempotency_key text, action text, actor_id text,
    actor_role text, actor_unit text, from_stage text, to_stage text, detail jsonb,
    detail_sealed bytea, at timestamptz
) ON COMMIT DROP;
