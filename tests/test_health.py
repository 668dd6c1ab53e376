def test_healthy(client, redis_conn):
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.get_json()
    assert report["status"] == "ok"
    assert report["database"] == {"ok": True, "backend": "postgresql"}
    assert report["queue"]["ok"] is True and report["queue"]["backend"] == "rq"


def test_database_unreachable_is_named(make_app):
    closed = "postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2"
    app = make_app(SQLALCHEMY_DATABASE_URI=closed)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    report = response.get_json()
    assert report["status"] == "failing: database"
    assert report["database"]["ok"] is False
    assert report["queue"]["ok"] is True


def test_redis_unreachable_is_named(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    report = response.get_json()
    assert report["status"] == "failing: queue"
    assert report["queue"]["ok"] is False
    assert report["database"]["ok"] is True


def test_embedded_mode_reports_in_process_jobs(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}", REDIS_URL=None)
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["queue"] == {"ok": True, "backend": "in-process"}
