-- Whether a daemon's process can be shown gone (issue 12): true once the
-- store handle that registered it holds the daemon's session-level
-- advisory lock on its listener connection (postgres/liveness.rs). The
-- server frees that lock the moment the connection closes, so a reaper
-- that finds the lock free and the daemon silent for the short threshold
-- (DeadRule::gone_secs) rescues its tasks without waiting the long one.
-- Daemons of earlier releases (false) are judged by the long one alone.
-- SQLite needs no column: it checks the process id on the daemon's host.
ALTER TABLE atp_daemon ADD COLUMN liveness boolean NOT NULL DEFAULT false;
