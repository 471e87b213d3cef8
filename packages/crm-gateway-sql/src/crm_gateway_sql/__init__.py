"""SQLite and PostgreSQL DatabaseGateway for the Avatar Imaging CRM (SQLAlchemy Core, Alembic)."""
