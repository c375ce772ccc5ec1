"""Alembic environment: the database is DATABASE_URL (the plugin sets it for the migration)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

# postgresql://... -> the psycopg 3 driver SQLAlchemy knows as postgresql+psycopg.
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
