"""outbound texts never twice: the 'sending' and 'cancelled' message states, send attempts;
one shop per own sender number

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('queued', 'sent', 'delivered', 'failed', 'suppressed', 'received')"
NEW_STATUSES = (
    "status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'suppressed', "
    "'cancelled', 'received')"
)
OWN_NUMBER = sa.text("sms_from_number IS NOT NULL")
SENDING = sa.text("status = 'sending'")


def _refuse_shared_own_numbers():
    """Inbound texts are routed by the number written to, so two shops with one own number
    cannot both be right: the owner must choose, not the migration."""
    rows = op.get_bind().execute(sa.text(
        "SELECT sms_from_number, id FROM shops WHERE sms_from_number IN ("
        "SELECT sms_from_number FROM shops WHERE sms_from_number IS NOT NULL "
        "GROUP BY sms_from_number HAVING count(*) > 1) ORDER BY sms_from_number, id"
    )).all()
    if rows:
        shops: dict[str, list[str]] = {}
        for number, ident in rows:
            shops.setdefault(number, []).append(str(ident))
        clashes = "; ".join(f"{n}: shops {', '.join(ids)}" for n, ids in shops.items())
        raise RuntimeError(
            "Several shops have the same own SMS sender number (" + clashes + "). "
            "Give each its own number, or clear it to use the deployment's, then migrate again."
        )


def upgrade():
    _refuse_shared_own_numbers()
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.create_index('uq_shops_sms_from_number', ['sms_from_number'], unique=True, postgresql_where=OWN_NUMBER, sqlite_where=OWN_NUMBER)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('sending_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(op.f('ck_messages_status_valid'), type_='check')
        batch_op.create_check_constraint(op.f('ck_messages_status_valid'), NEW_STATUSES)
        batch_op.create_check_constraint(op.f('ck_messages_send_attempts_not_negative'), 'send_attempts >= 0')
        batch_op.create_index('ix_messages_sending', ['sending_at'], unique=False, postgresql_where=SENDING, sqlite_where=SENDING)
    # The model supplies the value; the server default only filled existing rows.
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.alter_column('send_attempts', server_default=None)


def downgrade():
    # The old states cannot say 'sending' or 'cancelled': a text in flight waits in the
    # outbox again, one not sent stays unsent.
    op.execute("UPDATE messages SET status = 'queued' WHERE status = 'sending'")
    op.execute("UPDATE messages SET status = 'suppressed' WHERE status = 'cancelled'")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_sending', postgresql_where=SENDING, sqlite_where=SENDING)
        batch_op.drop_constraint(op.f('ck_messages_send_attempts_not_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_messages_status_valid'), type_='check')
        batch_op.create_check_constraint(op.f('ck_messages_status_valid'), OLD_STATUSES)
        batch_op.drop_column('sending_at')
        batch_op.drop_column('send_attempts')

    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_index('uq_shops_sms_from_number', postgresql_where=OWN_NUMBER, sqlite_where=OWN_NUMBER)
