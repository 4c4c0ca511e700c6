-- Attested sessions hold an EAR token (about 2 KiB), which PostgreSQL
-- would compress with pglz on every write: CPU spent on rows that live for
-- minutes. Keep session values uncompressed and inline up to a full page.
ALTER TABLE veil_sessions ALTER COLUMN value SET STORAGE EXTERNAL;
ALTER TABLE veil_sessions SET (toast_tuple_target = 8160);
-- Room on each page for the consumed → attested update of a session to be
-- a heap-only tuple update (no index writes).
ALTER TABLE veil_sessions SET (fillfactor = 70);
