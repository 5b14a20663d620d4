-- `--offline`: the indexes of the tables $1 that no constraint owns (unique constraints
-- stay: they catch clashes), with their definitions to rebuild them.
SELECT i.indexname, i.indexdef FROM pg_indexes i
WHERE i.schemaname = current_schema() AND i.tablename = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                  WHERE c.conname = i.indexname AND c.conrelid =
                        (quote_ident(i.schemaname) || '.' ||
                         quote_ident(i.tablename))::regclass)
ORDER BY i.indexname
