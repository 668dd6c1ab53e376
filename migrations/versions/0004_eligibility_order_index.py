"""eligibility order index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 17:36:44.588889

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


# SQLite (the embedded demo) has no NULLS LAST in indexes; its shops are small.
def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade():
    if _postgres():
        op.create_index(
            'ix_customers_shop_eligibility_order',
            'customers',
            ['shop_id', sa.literal_column('last_settled_at DESC NULLS LAST'), 'id'],
        )


def downgrade():
    if _postgres():
        op.drop_index('ix_customers_shop_eligibility_order', table_name='customers')

