"""SQL for the stores that are not engine transitions: users, flows, secrets, vectors, retention."""
