-- 0004_memory_vectors: per-user chat memory (chat_memory node) and vector collections for RAG
-- (vector_store_upsert / retriever nodes). Embeddings are float8[] with their L2 norm precomputed;
-- the retriever ranks by exact cosine similarity in SQL (pgvector is not required).

CREATE TABLE chat_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id  text NOT NULL,
    role        text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content     text NOT NULL,
    step_key    text,                      -- {run_id}:{node_id}:{item}: a re-run step appends once
    position    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, step_key, position)
);
CREATE INDEX chat_messages_session ON chat_messages(owner_id, session_id, id DESC);

CREATE TABLE vector_collections (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        text NOT NULL,
    embedder    text NOT NULL,             -- provider:model, fixed by the first upsert
    dimensions  integer NOT NULL CHECK (dimensions > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

CREATE TABLE vector_items (
    collection_id bigint NOT NULL REFERENCES vector_collections(id) ON DELETE CASCADE,
    item_id       text NOT NULL,
    text          text NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}',
    embedding     float8[] NOT NULL,
    norm          float8 NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, item_id)
);
CREATE INDEX vector_items_metadata ON vector_items USING gin (metadata jsonb_path_ops);
