-- The store port on PostgreSQL, schema version 1.
--
-- Every record is the codec's versioned bytes (`bytea`), keyed as the sled layout keys
-- it (a connection by `pen \0 platform`, a post by its 16-byte id); grants and OAuth
-- states are sealed before they reach the database. Beside each record are the columns
-- the queries select on (its pen name, connection, state, times), written from the record
-- in the same statement. Nothing derived is stored: post and connection counts are
-- counted from those columns.

CREATE TABLE meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE connections (
    key      bytea PRIMARY KEY,
    pen_name text NOT NULL,
    -- `active`, `expired`, `error`; NULL for a record written past the codec (tests).
    status   text,
    record   bytea NOT NULL
);
CREATE INDEX connections_by_pen ON connections (pen_name, key);
CREATE INDEX connections_by_status ON connections (status);

CREATE TABLE grants (
    key      bytea PRIMARY KEY,
    pen_name text NOT NULL,
    sealed   bytea NOT NULL
);
CREATE INDEX grants_by_pen ON grants (pen_name);

-- A post's body and its status are two records in one row: a transition rewrites the
-- status (and the columns taken from it) only.
CREATE TABLE posts (
    id         bytea PRIMARY KEY,
    connection bytea NOT NULL,
    pen_name   text NOT NULL,
    state      text NOT NULL,
    queued     boolean NOT NULL,
    due_at     bigint NOT NULL,
    updated_at bigint NOT NULL,
    body       bytea,
    status     bytea
);
CREATE INDEX posts_by_connection ON posts (connection, state);
CREATE INDEX posts_by_pen ON posts (pen_name, connection, id);
CREATE INDEX posts_queued ON posts (id) WHERE queued;
CREATE INDEX posts_finished ON posts (updated_at) WHERE state IN ('published', 'cancelled');

-- The one counter events are numbered from. A commit with events updates its row and
-- holds that row lock until it commits, so numbers are handed out in commit order and a
-- reader of `events` never sees N+1 before N. A rolled back commit rolls its numbers back
-- too; `high` is never lowered (a purge or an erasure leaves it).
CREATE TABLE event_counter (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    high     bigint NOT NULL
);
INSERT INTO event_counter (high) VALUES (0);

CREATE TABLE events (
    seq        bigint PRIMARY KEY,
    connection bytea NOT NULL,
    pen_name   text NOT NULL,
    post       bytea,
    at         bigint NOT NULL,
    record     bytea NOT NULL
);
CREATE INDEX events_by_connection ON events (connection, seq);
CREATE INDEX events_by_pen ON events (pen_name);

-- The newest claim on each connection: a batch fenced by an older epoch is refused in
-- the transaction that would apply it (`SELECT … FOR UPDATE` on this row). Kept through
-- an erasure, so an epoch is never handed out twice for one connection.
CREATE TABLE epochs (
    key   bytea PRIMARY KEY,
    epoch bigint NOT NULL
);

CREATE TABLE oauth_states (
    state      text PRIMARY KEY,
    -- The pen name of the pending authorization (sealed inside), so an erasure finds it.
    pen_name   text,
    expires_at bigint NOT NULL,
    used       boolean NOT NULL,
    sealed     bytea NOT NULL
);
CREATE INDEX oauth_states_by_pen ON oauth_states (pen_name);

CREATE TABLE idempotency (
    pen_name   text NOT NULL,
    key        text NOT NULL,
    created_at bigint NOT NULL,
    record     bytea NOT NULL,
    PRIMARY KEY (pen_name, key)
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);
