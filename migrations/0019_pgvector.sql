-- 0019: pgvector where the server has it (the embedded PostgreSQL 18 does; Debian's PostgreSQL 15
-- here does not). Adds `vector_items.embedding_v` (dimension-free `vector`, filled from the float8[]
-- column); store/vectors.py then builds one HNSW index per collection on `embedding_v::vector(d)` and
-- searches through it. Without the extension (or without the right to create it) nothing changes and
-- the exact float8[] search stays. Installing pgvector later: re-run this file's body by hand.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS vector;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'pgvector is available but this role cannot create it: exact search';
            RETURN;
        END;
        ALTER TABLE vector_items ADD COLUMN IF NOT EXISTS embedding_v vector;
        UPDATE vector_items SET embedding_v = embedding::vector WHERE embedding_v IS NULL;
    END IF;
END $$;
