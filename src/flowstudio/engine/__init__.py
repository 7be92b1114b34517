"""The durable run engine: state machines, checkpoint transactions, planning, recovery, timers."""
