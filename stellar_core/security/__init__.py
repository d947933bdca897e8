"""Security: access control per namespace, API keys, encryption at rest, the audit log."""
