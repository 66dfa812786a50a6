-- Schema version 2: leases between nodes (issue 13). Which node owns which connection.
--
-- Every time is the database's clock (`now()`), never a node's: nodes compare expiries
-- and heartbeats on one clock, however far their own clocks drift.

-- The nodes sharing this database. A node is live while `heartbeat + lease_ms` is ahead
-- of `now()`; the live nodes split the connections between them (a fair share each).
-- A node leaving gracefully deletes its row; a crashed node's row is ignored once its
-- heartbeat lapsed, and deleted a day later.
CREATE TABLE nodes (
    node_id   text PRIMARY KEY,
    heartbeat timestamptz NOT NULL,
    lease_ms  bigint NOT NULL
);

-- A connection's lease lives on its epoch row, so taking a lease and superseding the
-- previous owner's epoch are one row update: the fence every write checks is the lease.
-- `owner` NULL: nobody holds it (never acquired, or released); `expires_at` at or before
-- `now()`: lapsed. Either way the next node to acquire takes it, with `epoch + 1`.
ALTER TABLE epochs
    ADD COLUMN owner      text,
    ADD COLUMN expires_at timestamptz;
CREATE INDEX epochs_by_owner ON epochs (owner) WHERE owner IS NOT NULL;
