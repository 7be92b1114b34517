"""Step pointers between components: RabbitMQ or the PostgreSQL queue, and the outbox relay."""
