"""The Procfile's processes, started for real: rq-scheduler + rq worker, and honcho."""

from __future__ import annotations

import signal
import urllib.request
from datetime import UTC, datetime, timedelta

from rq import Queue, Worker
from rq_scheduler import Scheduler

from jobs.schedule import PREFIX, SCHEDULE
from recovery.redis_client import HEARTBEAT_KEY
from tests.conftest import REDIS_URL
from tests.processes import BIN, free_port, process_env, running, wait_until, worker_cmd

WORKER = worker_cmd(REDIS_URL)
RQSCHEDULER = [str(BIN / "rqscheduler"), "--url", REDIS_URL, "--interval", "1"]
# The Procfile's scheduler: rq-scheduler's loop, keeping the periodic jobs registered.
SCHEDULER = [str(BIN / "flask"), "--app", "app", "jobs", "scheduler", "--interval", "1"]


def periodic_ids(redis_conn) -> list[str]:
    jobs = Scheduler(connection=redis_conn).get_jobs()
    return sorted(job.id for job in jobs if job.id.startswith(PREFIX))


def test_rqscheduler_and_rq_worker_run_a_job_at_its_time(app, database_url, redis_conn):
    """rq-scheduler 0.14 works with the pinned RQ: a job scheduled for T runs at T."""
    env = process_env(database_url, REDIS_URL)
    due = datetime.now(UTC) + timedelta(seconds=2)
    Scheduler(connection=redis_conn).enqueue_at(due, "jobs.tasks.sweep")
    with running(RQSCHEDULER, env) as scheduler, running(WORKER, env) as worker:
        stamp = wait_until(lambda: redis_conn.get(HEARTBEAT_KEY), 30, "the scheduled job", worker)
        ran_at = datetime.fromisoformat(stamp.decode())
        # rq-scheduler keeps times in whole seconds (utils.to_unix drops the fraction).
        assert due.replace(microsecond=0) <= ran_at < due + timedelta(seconds=5), scheduler.output()


def test_registering_the_schedule_again_never_duplicates(app, database_url, redis_conn):
    env = process_env(database_url, REDIS_URL)
    register = [str(BIN / "flask"), "--app", "app", "jobs", "register"]
    wanted = sorted(p.job_id for p in SCHEDULE)
    for _ in range(3):  # three releases and scheduler starts, each registering the schedule
        with running(register, env) as reg:
            reg.popen.wait(60)
            assert reg.popen.returncode == 0, reg.output()
        with running(SCHEDULER, env) as scheduler:
            # The scheduler moves each due periodic job to the queue and re-schedules it.
            wait_until(
                lambda: redis_conn.llen("rq:queue:default") >= len(wanted),
                20,
                "periodic jobs to be queued",
                scheduler,
            )
        assert periodic_ids(redis_conn) == wanted


def test_a_removed_periodic_job_is_cancelled(app, redis_conn):
    from jobs.schedule import Periodic, register

    scheduler = Scheduler(connection=redis_conn)
    old = Periodic("old", "jobs.tasks.sweep", interval_seconds=60, timeout_seconds=5)
    register(scheduler, (*SCHEDULE, old))
    assert PREFIX + "old" in periodic_ids(redis_conn)
    register(scheduler)
    assert periodic_ids(redis_conn) == sorted(p.job_id for p in SCHEDULE)


def test_each_pass_of_the_scheduler_puts_back_only_what_redis_lost(app, redis_conn):
    from rq.job import Job

    from jobs.schedule import PeriodicScheduler, register, restore_missing

    scheduler = PeriodicScheduler(SCHEDULE, connection=redis_conn)
    register(scheduler, SCHEDULE)
    scheduled = redis_conn.zrange(scheduler.scheduled_jobs_key, 0, -1, withscores=True)
    assert restore_missing(scheduler, SCHEDULE) == []  # nothing lost: nothing moved
    assert redis_conn.zrange(scheduler.scheduled_jobs_key, 0, -1, withscores=True) == scheduled

    redis_conn.delete(Job.key_for(PREFIX + "sweep"))  # one job's hash evicted
    assert restore_missing(scheduler, SCHEDULE) == [PREFIX + "sweep"]

    redis_conn.flushdb()  # everything lost: the next pass registers and queues them all
    scheduler.enqueue_jobs()
    assert periodic_ids(redis_conn) == sorted(p.job_id for p in SCHEDULE)
    queued = redis_conn.lrange("rq:queue:default", 0, -1)
    assert sorted(q.decode() for q in queued) == sorted(p.job_id for p in SCHEDULE)


def test_honcho_runs_all_four_processes(app, database_url, redis_conn):
    base = free_port()
    web_port = base + 100  # honcho gives each Procfile entry PORT = base + 100 * index
    env = process_env(database_url, REDIS_URL, WEB_CONCURRENCY="1")
    cmd = [str(BIN / "honcho"), "start", "--no-colour", "-p", str(base)]
    with running(cmd, env) as honcho:

        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, 60, "web /healthz", honcho)
        wait_until(lambda: Worker.all(connection=redis_conn), 30, "an rq worker", honcho)
        wait_until(lambda: periodic_ids(redis_conn), 30, "the scheduler's registration", honcho)
        wait_until(lambda: "idling so honcho keeps" in honcho.output(), 30, "release", honcho)
        wait_until(lambda: redis_conn.get(HEARTBEAT_KEY), 30, "a periodic job to run", honcho)
        honcho.stop(signal.SIGINT)
        output = honcho.output()
    for name in ("release.1", "web.1", "worker.1", "scheduler.1"):
        assert f"{name} started" in output, output


def test_a_real_worker_retries_a_provider_failure_and_sends_once(
    app, database_url, redis_conn, committed, fake_twilio
):
    """RQ's retry with backoff, in a real `rq worker --with-scheduler`, against the fake."""
    from jobs.dispatch import RQDispatcher
    from recovery.effects import Effect, EffectKind
    from recovery.messaging.outbox import Purpose, queue_sms
    from recovery.models import Message
    from tests import factories as f

    shop = f.shop(committed)
    customer = f.customer(committed, shop)
    message = queue_sms(committed, shop, customer, "A slot opened today.", Purpose.OFFER)
    committed.commit()
    fake_twilio.fail_next(1, status=503)
    RQDispatcher(app).dispatch([Effect(EffectKind.SEND_MESSAGE, (message.id,))])
    env = process_env(
        database_url,
        REDIS_URL,
        TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
        TWILIO_AUTH_TOKEN=fake_twilio.auth_token,
        TWILIO_FROM_NUMBER="+447700900000",
        TWILIO_API_BASE_URL=fake_twilio.base_url,
    )
    with running(worker_cmd(REDIS_URL, with_scheduler=True), env) as worker:
        sent = wait_until(lambda: fake_twilio.messages, 30, "the retried send", worker)
    assert fake_twilio.create_attempts == 2  # one 503, then the retry
    assert [m["to"] for m in sent] == [customer.phone]
    committed.expire_all()
    assert committed.get(Message, message.id).status == "sent"


def test_the_worker_logs_each_job_once(app, database_url, redis_conn):
    """The app's logging and rq's own handler both printed every line of the worker."""
    Queue("default", connection=redis_conn).enqueue("jobs.tasks.sweep", job_id="log-once")
    with running(WORKER, process_env(database_url, REDIS_URL)) as worker:
        wait_until(lambda: redis_conn.get(HEARTBEAT_KEY), 30, "the sweep job", worker)
        wait_until(lambda: "Job OK (log-once)" in worker.output(), 10, "its log line", worker)
        output = worker.output()
    assert output.count("Job OK (log-once)") == 1, output
