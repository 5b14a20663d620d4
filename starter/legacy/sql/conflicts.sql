-- Rows clashing with what the system of record already holds: a different petition
-- under the same intake id or registration number. Identical rows are a resumed import.
-- $1: how many to report at most.
SELECT DISTINCT ON (line) line, message FROM (
    SELECT s.line, 'intake_id ' || quote_literal(s.intake_id) ||
           ' is already registered as ' || r.registration_no AS message
    FROM legacy_import_staging s JOIN registration_numbers r ON r.intake_id = s.intake_id
    WHERE r.registration_no <> s.registration_no
    UNION ALL
    SELECT s.line, 'registration_no ' || quote_literal(s.registration_no) ||
           ' already belongs to intake ' || r.intake_id
    FROM legacy_import_staging s
    JOIN registration_numbers r ON r.registration_no = s.registration_no
    WHERE r.intake_id <> s.intake_id
    UNION ALL
    SELECT s.line, 'intake_id ' || quote_literal(s.intake_id) ||
           ' is already a petition numbered ' || p.registration_no
    FROM legacy_import_staging s JOIN petitions p ON p.intake_id = s.intake_id
    WHERE p.registration_no <> s.registration_no
    UNION ALL
    SELECT s.line, 'registration_no ' || quote_literal(s.registration_no) ||
           ' is already the petition of intake ' || p.intake_id
    FROM legacy_import_staging s JOIN petitions p ON p.registration_no = s.registration_no
    WHERE p.intake_id <> s.intake_id
) clash ORDER BY line LIMIT $1
