"""``flask staff ...``: manage staff accounts from the shell."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from admin.passwords import check_password_policy
from recovery.db import db
from recovery.models import Shop, StaffRole, StaffUser

staff_cli = click.Group("staff", help="Manage staff accounts.")


@staff_cli.command("create")
@click.option("--email", required=True)
@click.option("--shop-id", type=int, help="Shop to join (default: the only shop).")
@click.option("--role", type=click.Choice([r.value for r in StaffRole]), default="owner")
@click.option("--name", default="")
@click.password_option()
@with_appcontext
def create_staff(email: str, shop_id: int | None, role: str, name: str, password: str) -> None:
    """Create a staff account (the first one is usually the shop's owner)."""
    refused = check_password_policy(password, email)
    if refused:
        raise click.BadParameter(refused, param_hint="password")
    if shop_id is None:
        shops = db.session.scalars(select(Shop).limit(2)).all()
        if len(shops) != 1:
            raise click.UsageError("There is not exactly one shop: pass --shop-id.")
        shop_id = shops[0].id
    elif db.session.get(Shop, shop_id) is None:
        raise click.UsageError(f"No shop with id {shop_id}.")
    if db.session.scalar(select(StaffUser).where(StaffUser.email == email.lower())):
        raise click.UsageError(f"A staff account for {email} already exists.")
    user = StaffUser(shop_id=shop_id, email=email.lower(), name=name, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    click.echo(f"Created {role} {user.email} for shop {shop_id}.")
