from jobs import tasks
from recovery.effects import DISPATCHER_EXTENSION


def run_sweep(app) -> None:
    """The periodic sweep job, as a worker runs it: it leaves the heartbeat /healthz reads."""
    with app.app_context():
        tasks.sweep()


def test_healthy(app, client, redis_conn):
    run_sweep(app)
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.get_json()
    assert report["status"] == "ok"
    assert report["database"] == {"ok": True, "backend": "postgresql"}
    assert report["queue"]["ok"] is True and report["queue"]["backend"] == "rq"
    assert report["sweep"]["ok"] is True and report["sweep"]["last"] is not None


def test_database_unreachable_is_named(app, make_app, redis_conn):
    run_sweep(app)  # by a worker that still reaches the database
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
    assert report["status"] == "failing: queue, sweep"  # nor can it tell if the sweep runs
    assert report["queue"]["ok"] is False
    assert report["database"]["ok"] is True


def test_embedded_mode_reports_in_process_jobs(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}", REDIS_URL=None)
    response = app.test_client().get("/healthz")  # the first request starts the job thread
    assert response.status_code == 200
    assert response.get_json()["queue"] == {"ok": True, "backend": "in-process"}
    # The thread holds the periodic schedule itself: while it runs, so does the sweep.
    assert response.get_json()["sweep"] == {"ok": True, "backend": "in-process"}


def test_embedded_mode_without_its_job_thread_is_failing(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}", REDIS_URL=None)
    assert app.test_client().get("/healthz").status_code == 200
    app.extensions[DISPATCHER_EXTENSION].stop()
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "failing: sweep"


def test_no_sweep_on_record_is_named(client, redis_conn):
    """Redis lost the heartbeat with everything else (a flush, a restart without
    persistence), or no sweep has run: nothing overdue is being repaired."""
    response = client.get("/healthz")
    assert response.status_code == 503
    report = response.get_json()
    assert report["status"] == "failing: sweep"
    assert report["sweep"]["ok"] is False and report["sweep"]["error"] == "missing"
    assert report["database"]["ok"] is True and report["queue"]["ok"] is True


def test_a_sweep_older_than_three_intervals_is_stale(app, client, redis_conn, clock):
    limit = 3 * app.config["SWEEP_INTERVAL_SECONDS"]
    swept_at = clock.now
    run_sweep(app)
    clock.advance(seconds=limit)
    assert client.get("/healthz").status_code == 200  # three intervals: still in time

    clock.advance(seconds=1)
    response = client.get("/healthz")
    assert response.status_code == 503
    report = response.get_json()
    assert report["status"] == "failing: sweep"
    assert report["sweep"] == {
        "ok": False,
        "error": "stale",
        "last": swept_at.isoformat(),
        "max_age_seconds": limit,
    }

    run_sweep(app)  # the sweep runs again: healthy again
    assert client.get("/healthz").status_code == 200
