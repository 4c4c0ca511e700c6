-- Replicas cache policies and reference values (read on every handshake,
-- written rarely). Every change to them, by a replica, an import or a
-- manual edit, is announced on the channel `veil_records_changed`, and
-- each replica drops its cached copies when it hears it.
CREATE OR REPLACE FUNCTION veil_records_notify() RETURNS trigger AS $$
DECLARE
    changed TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD.ns;
    ELSE
        changed := NEW.ns;
    END IF;
    IF changed IN ('policies', 'reference_values') THEN
        PERFORM pg_notify('veil_records_changed', changed);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS veil_records_changed ON veil_records;
CREATE TRIGGER veil_records_changed
    AFTER INSERT OR UPDATE OR DELETE ON veil_records
    FOR EACH ROW EXECUTE FUNCTION veil_records_notify();
