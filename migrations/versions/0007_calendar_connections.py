"""calendar connections

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('calendar_connections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('secret', sa.LargeBinary(), nullable=False),
    sa.Column('calendar_id', sa.String(length=255), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('sync_token', sa.Text(), nullable=True),
    sa.Column('window_ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('block_count', sa.Integer(), nullable=False),
    sa.Column('connected_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("provider IN ('google', 'ics')", name=op.f('ck_calendar_connections_provider_valid')),
    sa.CheckConstraint("status IN ('connected', 'error')", name=op.f('ck_calendar_connections_status_valid')),
    sa.CheckConstraint('block_count >= 0', name=op.f('ck_calendar_connections_block_count_not_negative')),
    sa.ForeignKeyConstraint(['connected_by_id'], ['staff_users.id'], name=op.f('fk_calendar_connections_connected_by_id_staff_users')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_calendar_connections_resource_id_resources')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_calendar_connections_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_connections')),
    sa.UniqueConstraint('resource_id', name=op.f('uq_calendar_connections_resource_id'))
    )
    with op.batch_alter_table('calendar_connections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calendar_connections_shop_id'), ['shop_id'], unique=False)

    # Synced blocks belong to a connection; disconnecting deletes them first.
    with op.batch_alter_table('busy_blocks', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_busy_blocks_connection_id_calendar_connections'), 'calendar_connections', ['connection_id'], ['id'])


def downgrade():
    with op.batch_alter_table('busy_blocks', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_busy_blocks_connection_id_calendar_connections'), type_='foreignkey')

    with op.batch_alter_table('calendar_connections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calendar_connections_shop_id'))

    op.drop_table('calendar_connections')
