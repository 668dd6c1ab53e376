"""the customer's path: booking holds, manage links, reminders, quiet hours, offers per sender

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 19:50:00

"""
import secrets
from datetime import time

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _backfill_manage_tokens():
    conn = op.get_bind()
    ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM appointments"))]
    for ident in ids:
        conn.execute(
            sa.text("UPDATE appointments SET manage_token = :token WHERE id = :id"),
            {"token": secrets.token_urlsafe(16), "id": ident},
        )


def upgrade():
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('booking_hold_hours', sa.Integer(), nullable=False, server_default='24'))
        batch_op.add_column(sa.Column('self_cancel_cutoff_hours', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('reminder_hours', sa.Integer(), nullable=False, server_default='24'))
        batch_op.add_column(sa.Column('send_confirmations', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('send_reminders', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('send_offers', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('quiet_hours_start', sa.Time(), nullable=False, server_default='21:00:00'))
        batch_op.add_column(sa.Column('quiet_hours_end', sa.Time(), nullable=False, server_default='08:00:00'))
        batch_op.create_check_constraint(op.f('ck_shops_booking_hold_positive'), 'booking_hold_hours > 0')
        batch_op.create_check_constraint(op.f('ck_shops_self_cancel_not_negative'), 'self_cancel_cutoff_hours >= 0')
        batch_op.create_check_constraint(op.f('ck_shops_reminder_hours_not_negative'), 'reminder_hours >= 0')
    # The model supplies these values; the server defaults only filled existing rows.
    with op.batch_alter_table('shops', schema=None) as batch_op:
        for column in ('booking_hold_hours', 'self_cancel_cutoff_hours', 'reminder_hours',
                       'send_confirmations', 'send_reminders', 'send_offers',
                       'quiet_hours_start', 'quiet_hours_end'):
            batch_op.alter_column(column, server_default=None)

    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('manage_token', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('deposit_waived_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deposit_waived_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('deposit_waived_reason', sa.String(length=200), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_appointments_deposit_waived_by_id_staff_users'), 'staff_users', ['deposit_waived_by_id'], ['id'])
    _backfill_manage_tokens()
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.alter_column('manage_token', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_appointments_manage_token'), ['manage_token'])

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recorded_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('note', sa.String(length=200), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_payments_recorded_by_id_staff_users'), 'staff_users', ['recorded_by_id'], ['id'])

    with op.batch_alter_table('slot_offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('sender_number', sa.String(length=32), nullable=True))
    # Existing offers: the customer's phone, and the number their offer text came from.
    op.execute(
        "UPDATE slot_offers SET phone = (SELECT phone FROM customers WHERE customers.id = slot_offers.customer_id)"
    )
    op.execute(
        "UPDATE slot_offers SET sender_number = COALESCE("
        "(SELECT MIN(from_number) FROM messages WHERE messages.slot_offer_id = slot_offers.id), "
        "(SELECT sms_from_number FROM shops JOIN slot_openings ON slot_openings.shop_id = shops.id "
        " WHERE slot_openings.id = slot_offers.slot_opening_id), '')"
    )
    with op.batch_alter_table('slot_offers', schema=None) as batch_op:
        batch_op.alter_column('phone', existing_type=sa.String(length=20), nullable=False)
        batch_op.alter_column('sender_number', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_index('uq_slot_offers_live_per_phone_sender', ['phone', 'sender_number'], unique=True, postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('appointment_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_appointment_id'), ['appointment_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_messages_appointment_id_appointments'), 'appointments', ['appointment_id'], ['id'])

    op.create_table('reminders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('appointment_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_reminders_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_reminders_message_id_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reminders')),
    sa.UniqueConstraint('appointment_id', 'starts_at', name=op.f('uq_reminders_appointment_id_starts_at'))
    )


def downgrade():
    op.drop_table('reminders')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_messages_appointment_id_appointments'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_messages_appointment_id'))
        batch_op.drop_column('appointment_id')
    with op.batch_alter_table('slot_offers', schema=None) as batch_op:
        batch_op.drop_index('uq_slot_offers_live_per_phone_sender', postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))
        batch_op.drop_column('sender_number')
        batch_op.drop_column('phone')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_payments_recorded_by_id_staff_users'), type_='foreignkey')
        batch_op.drop_column('note')
        batch_op.drop_column('recorded_by_id')
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_appointments_manage_token'), type_='unique')
        batch_op.drop_constraint(batch_op.f('fk_appointments_deposit_waived_by_id_staff_users'), type_='foreignkey')
        batch_op.drop_column('deposit_waived_reason')
        batch_op.drop_column('deposit_waived_by_id')
        batch_op.drop_column('deposit_waived_at')
        batch_op.drop_column('manage_token')
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_shops_reminder_hours_not_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_shops_self_cancel_not_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_shops_booking_hold_positive'), type_='check')
        for column in ('quiet_hours_end', 'quiet_hours_start', 'send_offers', 'send_reminders',
                       'send_confirmations', 'reminder_hours', 'self_cancel_cutoff_hours',
                       'booking_hold_hours'):
            batch_op.drop_column(column)
