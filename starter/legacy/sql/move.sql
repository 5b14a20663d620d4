-- One statement per chunk: the petitions, their registration numbers, their audit
-- records, the termination registry for cases concluded after re-review, and the unit
-- counters moved past imported numbers in this system's own format (so a live
-- registration never draws a number an imported case holds). A clash with stored rows
-- breaks a unique key. Returns (0, rows inserted) and (line, petition id) of every open
-- case, new or imported by an earlier run.
WITH new AS (
    INSERT INTO petitions (intake_id, workflow_id, registration_no, registered_unit,
        holding_unit, responsible_unit, handler_id, leader_id, channel, category,
        law_related, profile, persons, matter_key, petitioner_id_index,
        petitioner_phone_index, petitioner_sealed, subject_sealed, content_sealed,
        attachments_sealed,
        stage, outcome, received_at, registered_at, accepted_at, replied_at, closed_at,
        acceptance_due, handling_due, next_deadline, overdue, was_overdue, escalation_level,
        extension_days, satisfaction, repeat_visits, reviewed, last_seq)
    SELECT intake_id, workflow_id, registration_no, registered_unit, holding_unit,
        responsible_unit, handler_id, leader_id, channel, category, law_related, profile,
        persons, matter_key, petitioner_id_index, petitioner_phone_index, petitioner_sealed,
        subject_sealed, content_sealed, attachments_sealed, stage, outcome, received_at, registered_at,
        accepted_at, replied_at, closed_at, acceptance_due, handling_due, next_deadline,
        overdue, was_overdue, escalation_level, extension_days, satisfaction, repeat_visits,
        reviewed, last_seq
    FROM legacy_import_staging s
    WHERE NOT EXISTS (SELECT 1 FROM petitions p WHERE p.intake_id = s.intake_id
                      AND p.registration_no = s.registration_no)
    RETURNING id, intake_id, workflow_id, registration_no, registered_unit, registered_at,
        matter_key
), numbers AS (
    INSERT INTO registration_numbers (intake_id, registration_no, unit_code, allocated_at)
    SELECT intake_id, registration_no, registered_unit, registered_at FROM new n
    WHERE NOT EXISTS (SELECT 1 FROM registration_numbers r WHERE r.intake_id = n.intake_id
                      AND r.registration_no = n.registration_no)
), audit AS (
    INSERT INTO petition_events (petition_id, workflow_id, idempotency_key, seq, action,
        actor_id, actor_role, actor_unit, from_stage, to_stage, accepted, detail,
        detail_sealed, at)
    SELECT n.id, n.workflow_id, e.idempotency_key, e.seq, e.action, e.actor_id,
        e.actor_role, e.actor_unit, e.from_stage, e.to_stage, true, e.detail,
        e.detail_sealed, e.at
    FROM new n JOIN legacy_import_events e USING (intake_id)
), concluded AS (
    INSERT INTO termination_registry (petition_id, matter_key, registration_no,
        concluded_at, concluded_by_unit)
    SELECT n.id, n.matter_key, n.registration_no, s.concluded_at, s.concluded_by
    FROM new n JOIN legacy_import_staging s USING (intake_id)
    WHERE s.concluded_at IS NOT NULL
    ON CONFLICT (petition_id) DO NOTHING
), counters AS (
    INSERT INTO registration_counters (unit_code, year, last_seq)
    SELECT registered_unit, split_part(tail, '-', 1)::int,
           max(split_part(tail, '-', 2)::int)
    FROM (SELECT registered_unit,
                 substr(registration_no, length(registered_unit) + 2) AS tail
          FROM legacy_import_staging
          WHERE left(registration_no, length(registered_unit) + 1) = registered_unit || '-'
         ) t
    WHERE tail ~ '^[0-9]{4}-[0-9]{1,9}$'
    GROUP BY 1, 2
    ON CONFLICT (unit_code, year)
    DO UPDATE SET last_seq = GREATEST(registration_counters.last_seq, EXCLUDED.last_seq)
)
SELECT 0 AS line, count(*) AS id FROM new
UNION ALL
SELECT s.line, coalesce(n.id, p.id)
FROM legacy_import_staging s LEFT JOIN new n USING (intake_id)
     LEFT JOIN petitions p ON p.intake_id = s.intake_id
WHERE s.stage <> 'closed'
