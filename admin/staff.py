"""Staff accounts, for the shop's owner: add, edit, disable, enable, reset a password.

Every change is in the audit trail (same commit) and keeps the shop with an active owner:
an owner cannot disable, demote or delete their own account, and each change first locks
the shop's owner rows and checks that the one making it is still an active owner, so two
owners acting on each other at the same moment cannot both succeed. Disabling an account
or resetting its password ends all its sessions at once (admin/sessions.py).
"""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.model.template import EndpointLinkRowAction
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from admin.base import OwnerOnly, ShopModelView
from admin.fields import NewPasswordField
from admin.passwords import MAX_LENGTH, MIN_LENGTH, check_password_policy
from admin.sessions import end_sessions
from admin.settings import EMAIL
from admin.two_factor import reset_two_factor
from recovery import audit
from recovery.audit import AuditAction
from recovery.db import db
from recovery.models import StaffRole, StaffUser

# What the trail keeps of an account (never its password hash or two-factor secret).
AUDITED = ["email", "name", "role", "active"]

PASSWORD_HELP = (
    f"At least {MIN_LENGTH} characters; common passwords are refused. "
    "A few unrelated words make a good one."
)
NO_LONGER_OWNER = "Your account is no longer an active owner: nothing was changed."
LAST_OWNER = "The shop needs an active owner: nothing was changed."
# One answer for an email that has an account here, at another shop, or in other letter
# case: the form never says which, and never shows the database's own error.
EMAIL_TAKEN = "That email cannot be used for a new account. Please use another address."


def _policy(form, field) -> None:
    """The password rule, for the account the form is about."""
    email = form.email.data if hasattr(form, "email") else form.account_email
    message = check_password_policy(field.data or "", email)
    if message:
        raise ValidationError(message)


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[InputRequired(), Length(max=MAX_LENGTH), _policy],
        description=PASSWORD_HELP,
        render_kw={"autocomplete": "new-password"},
    )

    def __init__(self, account_email: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.account_email = account_email


def lock_active_owners(shop_id: int) -> set[int]:
    """Ids of the shop's active owners, their rows locked until commit.

    Always the same rows in the same (id) order, so staff changes in one shop queue behind
    each other instead of deadlocking. Reads the committed state (not this session's
    unflushed edits, which must not be flushed before the lock is held).
    """
    query = (
        select(StaffUser.id, StaffUser.active)
        .where(StaffUser.shop_id == shop_id, StaffUser.role == StaffRole.OWNER)
        .order_by(StaffUser.id)
        .with_for_update()
    )
    with db.session.no_autoflush:
        return {ident for ident, active in db.session.execute(query) if active}


def ensure_owner_stays(actor: StaffUser, target: StaffUser, loses_owner: bool) -> None:
    """Refuse (ValidationError) a change by ``actor`` that is no longer theirs to make, or
    that would leave the shop without an active owner once ``target`` ``loses_owner``."""
    owners = lock_active_owners(actor.shop_id)
    if actor.id not in owners:
        raise ValidationError(NO_LONGER_OWNER)
    if loses_owner and not owners - {target.id}:
        raise ValidationError(LAST_OWNER)


def _email_free(form, field) -> None:
    """Email is the sign-in name, unique across every shop (``uq_staff_users_email``).

    Replaces Flask-Admin's own unique check, which answers "Already exists." from an
    unscoped query; the unique index still decides a race, with the same message.
    """
    email = (field.data or "").strip().lower()
    query = select(StaffUser.id).where(func.lower(StaffUser.email) == email)
    account = getattr(form, "_obj", None)  # the account being edited, if any
    if account is not None and account.id is not None:
        query = query.where(StaffUser.id != account.id)
    if db.session.scalar(query.limit(1)) is not None:
        raise ValidationError(EMAIL_TAKEN)


def _actor() -> StaffUser:
    return current_user._get_current_object()


class StaffView(OwnerOnly, ShopModelView):
    column_list = ["email", "name", "role", "active", "totp_enabled_at", "created_at"]
    column_details_list = column_list
    column_default_sort = "email"
    # An owner who requires two-factor sign-in sees here who has not enrolled yet.
    column_labels = {
        "active": "Active",
        "totp_enabled_at": "Two-factor since",
        "created_at": "Added",
    }
    # Disabling and enabling are actions (they sign out at once and are audited as such);
    # a password is set when the account is added, then only reset from its own page.
    form_columns = ["email", "name", "role"]
    form_overrides = {"role": SelectField}
    form_args = {"role": {"choices": [SelectChoice(r.value) for r in StaffRole]}}
    # Declared here, not scaffolded, so the only uniqueness check is _email_free's.
    form_extra_fields = {
        "email": StringField(
            "Email", validators=[DataRequired(), EMAIL, Length(max=254), _email_free]
        )
    }
    column_extra_row_actions = [
        EndpointLinkRowAction("fa fa-key", ".password_view", title="Reset password")
    ]
    integrity_messages = {"uq_staff_users_email": EMAIL_TAKEN}
    in_use_message = "This account has made changes (e.g. refunds): disable it instead."

    def get_create_form(self):
        base = super().get_create_form()

        class CreateForm(base):
            password = NewPasswordField(
                "Password",
                validators=[
                    InputRequired(message="A new account needs a password."),
                    Length(max=MAX_LENGTH),
                    _policy,
                ],
                description=PASSWORD_HELP,
                render_kw={"autocomplete": "new-password"},
            )

        return CreateForm

    # ---------------------------------------------------------------- add and edit

    def on_model_change(self, form, model, is_created):
        super().on_model_change(form, model, is_created)
        actor = _actor()
        model.email = model.email.strip().lower()
        if is_created:
            ensure_owner_stays(actor, model, loses_owner=False)
            model.set_password(form.password.data)
            model.active = True
            db.session.flush()  # the new id, for the trail
            after = audit.snapshot(model, AUDITED)
            audit.record(db.session, actor, AuditAction.STAFF_ADDED, model, None, after)
            return
        if model.id == actor.id and not model.is_owner:
            # Otherwise the shop could lose its last way into these pages.
            raise ValidationError("You cannot demote or deactivate your own account.")
        before, after = audit.changes(model)
        if not after:
            return
        ensure_owner_stays(actor, model, loses_owner=not model.is_owner)
        audit.record(db.session, actor, AuditAction.STAFF_CHANGED, model, before, after)

    def on_model_delete(self, model):
        actor = _actor()
        if model.id == actor.id:
            raise ValidationError("You cannot delete your own account.")
        ensure_owner_stays(actor, model, loses_owner=model.is_owner)
        before = audit.snapshot(model, AUDITED)
        audit.record(db.session, actor, AuditAction.STAFF_DELETED, model, before, None)

    # ---------------------------------------------------------------- disable and enable

    def _set_active(self, ids, active: bool) -> None:
        actor = _actor()
        done = 0
        for user in self.scoped_rows(ids):
            if user.active == active:
                continue
            if user.id == actor.id:
                flash("You cannot disable your own account.", "error")
                continue
            try:
                ensure_owner_stays(actor, user, loses_owner=user.is_owner and not active)
            except ValidationError as exc:
                db.session.rollback()
                flash(str(exc), "error")
                return
            user.active = active
            before, after = audit.changes(user)
            if active:
                audit.record(db.session, actor, AuditAction.STAFF_ENABLED, user, before, after)
            else:
                # Out everywhere now, and re-enabling later does not bring old sessions back.
                end_sessions(user)
                audit.record(
                    db.session,
                    actor,
                    AuditAction.STAFF_DISABLED,
                    user,
                    before,
                    after,
                    note="Signed out everywhere.",
                )
            done += 1
        db.session.commit()
        if done:
            word = "enabled" if active else "disabled and signed out everywhere"
            noun = "account" if done == 1 else "accounts"
            flash(f"{done} {noun} {word}.", "success")

    @action("disable", "Disable", "Disable the selected accounts? They are signed out at once.")
    def action_disable(self, ids):
        self._set_active(ids, active=False)

    @action("enable", "Enable")
    def action_enable(self, ids):
        self._set_active(ids, active=True)

    # ---------------------------------------------------------------- two-factor reset

    @action(
        "reset_two_factor",
        "Reset two-factor sign-in",
        "Turn off two-factor sign-in of the selected accounts (a lost phone)? They are signed "
        "out, sign in with their password and set it up again.",
    )
    def action_reset_two_factor(self, ids):
        rows = self.scoped_rows(ids)
        try:
            ensure_owner_stays(_actor(), _actor(), loses_owner=False)
        except ValidationError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return
        reset_two_factor(_actor(), rows)  # audited there (admin/two_factor.py)

    # ---------------------------------------------------------------- password reset

    @action("reset_password", "Reset password")
    def action_reset_password(self, ids):
        rows = self.scoped_rows(ids)
        if len(rows) != 1:
            flash("Choose one account to reset its password.", "error")
            return redirect(url_for(".index_view"))
        return redirect(url_for(".password_view", id=rows[0].id))

    @expose("/password/", methods=("GET", "POST"))
    def password_view(self):
        """The owner sets a new password; every session of that account ends."""
        user = self.get_one(request.args.get("id"))
        form = ResetPasswordForm(account_email=user.email)
        if form.validate_on_submit():
            actor = _actor()
            try:
                ensure_owner_stays(actor, user, loses_owner=False)
            except ValidationError as exc:
                db.session.rollback()
                flash(str(exc), "error")
                return redirect(url_for(".index_view"))
            user.set_password(form.password.data)
            end_sessions(user)
            audit.record(
                db.session,
                actor,
                AuditAction.STAFF_PASSWORD_RESET,
                user,
                note="Signed out everywhere.",
            )
            db.session.commit()
            flash(f"Password of {user.email} reset; their sessions have ended.", "success")
            return redirect(url_for(".index_view"))
        status = 200 if request.method == "GET" else 400
        return self.render("admin/staff_password.html", account=user, form=form), status
