"""whole domain schema

PostgreSQL gets the exclusion constraint that refuses overlapping active appointments
(it needs btree_gist for the ``resource_id WITH =`` part); SQLite, used only by the
embedded demo, relies on the check in ``recovery.availability.overlap``.

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 16:50:28.940468

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('provider_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_events')),
    sa.UniqueConstraint('provider', 'event_id', name=op.f('uq_provider_events_provider_event_id'))
    )
    op.create_table('shops',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('sms_from_number', sa.String(length=20), nullable=True),
    sa.Column('contact_phone', sa.String(length=20), nullable=True),
    sa.Column('offer_ttl_minutes', sa.Integer(), nullable=False),
    sa.Column('cooldown_hours', sa.Integer(), nullable=False),
    sa.Column('min_lead_minutes', sa.Integer(), nullable=False),
    sa.Column('payment_hold_minutes', sa.Integer(), nullable=False),
    sa.Column('require_prior_settled_booking', sa.Boolean(), nullable=False),
    sa.Column('full_refund_hours', sa.Integer(), nullable=False),
    sa.Column('late_refund_percent', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('cooldown_hours >= 0', name=op.f('ck_shops_cooldown_not_negative')),
    sa.CheckConstraint('full_refund_hours >= 0', name=op.f('ck_shops_full_refund_hours_not_negative')),
    sa.CheckConstraint('late_refund_percent BETWEEN 0 AND 100', name=op.f('ck_shops_late_refund_percent_range')),
    sa.CheckConstraint('min_lead_minutes >= 0', name=op.f('ck_shops_lead_not_negative')),
    sa.CheckConstraint('offer_ttl_minutes > 0', name=op.f('ck_shops_offer_ttl_positive')),
    sa.CheckConstraint('payment_hold_minutes > 0', name=op.f('ck_shops_hold_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shops'))
    )
    op.create_table('customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('sms_opt_in', sa.Boolean(), nullable=False),
    sa.Column('opted_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_customers_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('shop_id', 'phone', name=op.f('uq_customers_shop_id_phone'))
    )
    op.create_table('resources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_resources_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resources')),
    sa.UniqueConstraint('shop_id', 'name', name=op.f('uq_resources_shop_id_name'))
    )
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resources_shop_id'), ['shop_id'], unique=False)

    op.create_table('services',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('price_minor', sa.Integer(), nullable=False),
    sa.Column('deposit_kind', sa.String(length=20), nullable=False),
    sa.Column('deposit_value', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("deposit_kind <> 'percent' OR deposit_value BETWEEN 0 AND 100", name=op.f('ck_services_deposit_percent_range')),
    sa.CheckConstraint("deposit_kind IN ('none', 'fixed', 'percent', 'full')", name=op.f('ck_services_deposit_kind_valid')),
    sa.CheckConstraint('deposit_value >= 0', name=op.f('ck_services_deposit_value_not_negative')),
    sa.CheckConstraint('duration_minutes > 0', name=op.f('ck_services_duration_positive')),
    sa.CheckConstraint('price_minor >= 0', name=op.f('ck_services_price_not_negative')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_services_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_services')),
    sa.UniqueConstraint('shop_id', 'name', name=op.f('uq_services_shop_id_name'))
    )
    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_services_shop_id'), ['shop_id'], unique=False)

    op.create_table('staff_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('owner', 'staff')", name=op.f('ck_staff_users_role_valid')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_staff_users_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_users')),
    sa.UniqueConstraint('email', name=op.f('uq_staff_users_email'))
    )
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_users_shop_id'), ['shop_id'], unique=False)

    op.create_table('appointments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('source_slot_opening_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancellation_reason', sa.String(length=200), nullable=True),
    sa.Column('recovery_note', sa.String(length=200), nullable=True),
    sa.CheckConstraint("status IN ('pending_payment', 'booked', 'cancelled', 'completed')", name=op.f('ck_appointments_status_valid')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_appointments_ends_after_start')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_appointments_customer_id_customers')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_appointments_resource_id_resources')),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_appointments_service_id_services')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_appointments_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointments'))
    )
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.create_index('ix_appointments_customer_starts', ['customer_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_appointments_shop_starts', ['shop_id', 'starts_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_appointments_source_slot_opening_id'), ['source_slot_opening_id'], unique=False)

    op.create_table('payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('appointment_id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('provider_ref', sa.String(length=255), nullable=False),
    sa.Column('amount_minor', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('refunded_minor', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'canceled')", name=op.f('ck_payments_status_valid')),
    sa.CheckConstraint('amount_minor >= 0', name=op.f('ck_payments_amount_not_negative')),
    sa.CheckConstraint('refunded_minor >= 0 AND refunded_minor <= amount_minor', name=op.f('ck_payments_refund_within_amount')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_payments_appointment_id_appointments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('provider', 'provider_ref', name=op.f('uq_payments_provider_provider_ref'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_appointment_id'), ['appointment_id'], unique=False)

    op.create_table('slot_openings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('source_appointment_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('outcome_note', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('filled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('open', 'filled', 'expired')", name=op.f('ck_slot_openings_status_valid')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_slot_openings_resource_id_resources')),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_slot_openings_service_id_services')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_slot_openings_shop_id_shops')),
    sa.ForeignKeyConstraint(['source_appointment_id'], ['appointments.id'], name=op.f('fk_slot_openings_source_appointment_id_appointments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slot_openings')),
    sa.UniqueConstraint('source_appointment_id', name=op.f('uq_slot_openings_source_appointment_id'))
    )
    with op.batch_alter_table('slot_openings', schema=None) as batch_op:
        batch_op.create_index('ix_slot_openings_shop_status', ['shop_id', 'status'], unique=False)
        batch_op.create_index('uq_slot_openings_live_resource_start', ['resource_id', 'starts_at'], unique=True, postgresql_where=sa.text("status IN ('open', 'filled')"), sqlite_where=sa.text("status IN ('open', 'filled')"))

    op.create_table('slot_offers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slot_opening_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('responded_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("channel IN ('sms')", name=op.f('ck_slot_offers_channel_valid')),
    sa.CheckConstraint("status IN ('sent', 'accepted', 'declined', 'expired')", name=op.f('ck_slot_offers_status_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_slot_offers_customer_id_customers')),
    sa.ForeignKeyConstraint(['slot_opening_id'], ['slot_openings.id'], name=op.f('fk_slot_offers_slot_opening_id_slot_openings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slot_offers')),
    sa.UniqueConstraint('slot_opening_id', 'customer_id', name=op.f('uq_slot_offers_slot_opening_id_customer_id'))
    )
    with op.batch_alter_table('slot_offers', schema=None) as batch_op:
        batch_op.create_index('ix_slot_offers_customer_sent', ['customer_id', 'sent_at'], unique=False)
        batch_op.create_index('ix_slot_offers_due', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))
        batch_op.create_index('uq_slot_offers_live_per_customer', ['customer_id'], unique=True, postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))
        batch_op.create_index('uq_slot_offers_live_per_opening', ['slot_opening_id'], unique=True, postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))

    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=True),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('slot_offer_id', sa.Integer(), nullable=True),
    sa.Column('direction', sa.String(length=10), nullable=False),
    sa.Column('from_number', sa.String(length=32), nullable=False),
    sa.Column('to_number', sa.String(length=32), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('purpose', sa.String(length=30), nullable=False),
    sa.Column('provider_sid', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.String(length=255), nullable=True),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('cost_estimate_minor', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f('ck_messages_direction_valid')),
    sa.CheckConstraint("status IN ('queued', 'sent', 'delivered', 'failed', 'suppressed', 'received')", name=op.f('ck_messages_status_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_messages_customer_id_customers')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_messages_shop_id_shops')),
    sa.ForeignKeyConstraint(['slot_offer_id'], ['slot_offers.id'], name=op.f('fk_messages_slot_offer_id_slot_offers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('provider_sid', name=op.f('uq_messages_provider_sid'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_messages_queued', ['created_at'], unique=False, postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))
        batch_op.create_index('ix_messages_shop_created', ['shop_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_slot_offer_id'), ['slot_offer_id'], unique=False)


    # appointments <-> slot_openings refer to each other: this FK comes last.
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f('fk_appointments_source_slot_opening_id_slot_openings'),
            'slot_openings', ['source_slot_opening_id'], ['id'],
        )

    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS btree_gist')
        op.execute(
            "ALTER TABLE appointments ADD CONSTRAINT ex_appointments_no_overlap "
            "EXCLUDE USING gist (resource_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&) "
            "WHERE (status IN ('pending_payment', 'booked'))"
        )


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('ex_appointments_no_overlap', 'appointments')
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_appointments_source_slot_opening_id_slot_openings'), type_='foreignkey'
        )

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_slot_offer_id'))
        batch_op.drop_index('ix_messages_shop_created')
        batch_op.drop_index('ix_messages_queued', postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))
        batch_op.drop_index(batch_op.f('ix_messages_customer_id'))

    op.drop_table('messages')
    with op.batch_alter_table('slot_offers', schema=None) as batch_op:
        batch_op.drop_index('uq_slot_offers_live_per_opening', postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))
        batch_op.drop_index('uq_slot_offers_live_per_customer', postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))
        batch_op.drop_index('ix_slot_offers_due', postgresql_where=sa.text("status = 'sent'"), sqlite_where=sa.text("status = 'sent'"))
        batch_op.drop_index('ix_slot_offers_customer_sent')

    op.drop_table('slot_offers')
    with op.batch_alter_table('slot_openings', schema=None) as batch_op:
        batch_op.drop_index('uq_slot_openings_live_resource_start', postgresql_where=sa.text("status IN ('open', 'filled')"), sqlite_where=sa.text("status IN ('open', 'filled')"))
        batch_op.drop_index('ix_slot_openings_shop_status')

    op.drop_table('slot_openings')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_appointment_id'))

    op.drop_table('payments')
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_appointments_source_slot_opening_id'))
        batch_op.drop_index('ix_appointments_shop_starts')
        batch_op.drop_index('ix_appointments_customer_starts')

    op.drop_table('appointments')
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_users_shop_id'))

    op.drop_table('staff_users')
    with op.batch_alter_table('services', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_services_shop_id'))

    op.drop_table('services')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resources_shop_id'))

    op.drop_table('resources')
    op.drop_table('customers')
    op.drop_table('shops')
    op.drop_table('provider_events')
