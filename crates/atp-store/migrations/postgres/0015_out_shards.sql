-- Daemons no longer claim behind one row (issue 13, scale-out). Every claim
-- updated the one 'out' counter row and held its lock through its commit's
-- WAL flush, so the claims of several daemons committed one at a time: three
-- daemons drained no faster than one. The 'out' count is now spread over 16
-- shards like 'in' (migration 0014): a claim adds to the shard of its
-- connection (backend pid modulo 16); every other writer of 'out' (a cancel
-- or a delete of a queued task, a forced unregister) keeps to shard 0.
-- Readers sum the shards. The queue limit only ever reads 'out' (a count of
-- exits it cannot see yet makes the queue look fuller, never emptier), so it
-- stays exact.
INSERT INTO atp_queue_counter (name, shard, value)
    SELECT 'out', s, 0 FROM generate_series(1, 15) AS s;
