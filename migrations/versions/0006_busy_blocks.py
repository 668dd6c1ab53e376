"""busy blocks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 19:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('busy_blocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=True),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_busy_blocks_ends_after_start')),
    sa.CheckConstraint("source IN ('manual', 'google', 'ics')", name=op.f('ck_busy_blocks_source_valid')),
    sa.CheckConstraint("(source = 'manual') = (external_id IS NULL)", name=op.f('ck_busy_blocks_external_id_iff_synced')),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff_users.id'], name=op.f('fk_busy_blocks_created_by_id_staff_users')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_busy_blocks_resource_id_resources')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_busy_blocks_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_busy_blocks')),
    sa.UniqueConstraint('source', 'connection_id', 'external_id', name=op.f('uq_busy_blocks_source_connection_id_external_id'))
    )
    with op.batch_alter_table('busy_blocks', schema=None) as batch_op:
        batch_op.create_index('ix_busy_blocks_shop_range', ['shop_id', 'starts_at', 'ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_busy_blocks_resource_id'), ['resource_id'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Manual blocks on one resource (or two shop-wide ones) never overlap.
        op.execute(
            "ALTER TABLE busy_blocks ADD CONSTRAINT ex_busy_blocks_manual_no_overlap "
            "EXCLUDE USING gist (shop_id WITH =, coalesce(resource_id, 0) WITH =, "
            "tstzrange(starts_at, ends_at, '[)') WITH &&) WHERE (source = 'manual')"
        )


def downgrade():
    op.drop_table('busy_blocks')
