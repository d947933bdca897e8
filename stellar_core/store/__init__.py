"""Storage: schema, engine, dialects, migrations."""
