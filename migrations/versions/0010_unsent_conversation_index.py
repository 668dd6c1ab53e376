"""texts wait for the earlier unsent ones of their conversation: an index to find them

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

UNSENT = sa.text("status IN ('queued', 'sending')")


def upgrade():
    op.create_index(
        "ix_messages_unsent_conversation",
        "messages",
        ["to_number", "from_number", "id"],
        postgresql_where=UNSENT,
        sqlite_where=UNSENT,
    )


def downgrade():
    op.drop_index("ix_messages_unsent_conversation", table_name="messages")
