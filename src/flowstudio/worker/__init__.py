"""Workers: claim steps, execute nodes (in-loop or in a process pool), commit, heartbeat leases."""
