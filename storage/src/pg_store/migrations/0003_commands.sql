-- Schema version 3: commands between nodes (issue 13). A request that reaches a node
-- which does not run the connection (connect, verify, disconnect, schedule, retry…) is
-- written here; the node holding the connection's lease takes it, carries it out and
-- writes the answer; the sender reads the answer and deletes the row. Nodes need no
-- addresses or credentials for each other: only this database.
--
-- `body` and `answer` are sealed by the vault (a reconnect carries a grant): the
-- database never holds a plaintext token. A row nobody took within its sender's wait is
-- withdrawn by the sender; rows left behind by a sender that died are purged after a day.
CREATE TABLE commands (
    id          bigserial PRIMARY KEY,
    key         bytea NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    taken_by    text,
    taken_at    timestamptz,
    answer      bytea,
    answered_at timestamptz
);
CREATE INDEX commands_waiting ON commands (key) WHERE taken_at IS NULL;
