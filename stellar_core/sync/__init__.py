"""Change events between agents: clocks and the outbox."""
