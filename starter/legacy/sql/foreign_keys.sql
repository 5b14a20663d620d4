-- `--offline`: the foreign keys of the tables $1, with their definitions to restore them.
SELECT c.conname, c.conrelid::regclass::text AS tbl, pg_get_constraintdef(c.oid) AS def
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
WHERE c.contype = 'f' AND t.relname = ANY($1::text[])
  AND t.relnamespace = current_schema()::regnamespace
ORDER BY c.conname
