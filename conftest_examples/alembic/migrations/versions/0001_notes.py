"""notes and tags: plain SQL, no SQLAlchemy models."""

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE notes (
            id bigserial PRIMARY KEY,
            title text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE tags (
            note_id bigint NOT NULL REFERENCES notes(id) ON DELETE CASCADE,
            tag text NOT NULL,
            PRIMARY KEY (note_id, tag)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE tags; DROP TABLE notes;")
