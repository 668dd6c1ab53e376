"""Staff login: every admin page behind it; CSRF on the form."""

import re

from tests import factories as f


def csrf(client) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def test_logged_out_visit_goes_to_login(client, session):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/login?next=" in response.location


def test_login_shows_the_shop(client, session):
    shop = f.shop(session, name="Fade Street")
    f.staff(session, shop, email="sam@fade.example", password="pw-123456")
    session.commit()
    response = client.post(
        "/login",
        data={"csrf_token": csrf(client), "email": "Sam@Fade.example", "password": "pw-123456"},
    )
    # Staff land on the calendar; the dashboard stays at /admin/.
    assert response.status_code == 302 and response.location.endswith("/admin/calendar/")
    assert "Fade Street" in client.get(response.location).get_data(as_text=True)
    assert "Fade Street" in client.get("/admin/").get_data(as_text=True)


def test_wrong_password_is_refused(client, session):
    shop = f.shop(session)
    f.staff(session, shop, email="sam@fade.example", password="pw-123456")
    session.commit()
    response = client.post(
        "/login", data={"csrf_token": csrf(client), "email": "sam@fade.example", "password": "nope"}
    )
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_login_without_csrf_token_is_refused(client, session):
    shop = f.shop(session)
    f.staff(session, shop, email="sam@fade.example", password="pw-123456")
    session.commit()
    response = client.post("/login", data={"email": "sam@fade.example", "password": "pw-123456"})
    assert response.status_code in (400, 401)
    assert client.get("/admin/").status_code == 302


def test_next_never_leaves_the_site(client, session):
    shop = f.shop(session)
    f.staff(session, shop, email="sam@fade.example", password="pw-123456")
    session.commit()
    response = client.post(
        "/login?next=https://evil.example/",
        data={"csrf_token": csrf(client), "email": "sam@fade.example", "password": "pw-123456"},
    )
    assert response.location.endswith("/admin/calendar/")
