"""Side effects leave the process only after the transaction that asked for them commits."""

import logging

from sqlalchemy import func, select

from recovery import effects
from recovery.effects import Effect, EffectKind
from recovery.models import Shop
from tests import factories as f


def test_dispatched_after_commit(session, recorder):
    shop = f.shop(session)
    effects.request(session, EffectKind.OFFER_NEXT, shop.id)
    assert recorder.effects == []  # flushed, not committed: nothing left the process
    session.commit()
    assert recorder.effects == [Effect(EffectKind.OFFER_NEXT, (shop.id,))]


def test_dropped_on_rollback(session, recorder):
    effects.request(session, EffectKind.SEND_MESSAGE, 1)
    session.rollback()
    session.commit()
    assert recorder.effects == []


def test_the_same_effect_twice_in_one_transaction_is_dispatched_once(session, recorder):
    effects.request(session, EffectKind.SEND_MESSAGE, 7)
    effects.request(session, EffectKind.SEND_MESSAGE, 7)
    effects.request(session, EffectKind.SEND_MESSAGE, 8)
    session.commit()
    assert [e.args for e in recorder.effects] == [(7,), (8,)]


class Exploding:
    def dispatch(self, effects):
        raise ConnectionError("queue down")


def test_a_failing_dispatcher_does_not_undo_the_commit(app, session, caplog):
    from recovery.effects import DISPATCHER_EXTENSION

    original = app.extensions[DISPATCHER_EXTENSION]
    app.extensions[DISPATCHER_EXTENSION] = Exploding()
    try:
        f.shop(session, name="Kept")
        effects.request(session, EffectKind.OFFER_NEXT, 1)
        with caplog.at_level(logging.ERROR):
            session.commit()
    finally:
        app.extensions[DISPATCHER_EXTENSION] = original
    assert session.scalar(select(func.count()).select_from(Shop).where(Shop.name == "Kept")) == 1
    assert "the sweep will repair" in caplog.text


def test_effects_wait_for_the_real_commit_not_a_savepoint(session, recorder):
    """Releasing a savepoint (as ``try_insert`` does) is not the commit jobs can see."""
    effects.request(session, EffectKind.SWEEP)
    with session.begin_nested():
        pass
    assert recorder.effects == []
    session.commit()
    assert [e.kind for e in recorder.effects] == [EffectKind.SWEEP]
