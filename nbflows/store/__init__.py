"""Persistence: SQLAlchemy tables, the database and its migrations."""
