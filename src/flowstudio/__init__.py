"""MAX Flowstudio: durable LLM workflows as a service.

The run's path through the package: api/ (HTTP in) -> engine/ (state machines, planner, checkpoints,
orchestrator) -> queue/ (broker, outbox) -> worker/ (claims and executes) -> store/ (SQL).
"""

__version__ = "0.1.0"
