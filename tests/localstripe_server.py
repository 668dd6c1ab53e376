"""Run ``localstripe`` (a Stripe API fake) on 127.0.0.1 with its data file in a given folder.

localstripe itself listens on every interface and keeps its data in
``/tmp/localstripe.pickle``; the tests want loopback only and a private temp dir, so
this launcher points its store there and binds 127.0.0.1. It also adds the one behaviour
of real Stripe the tests need and localstripe lacks (see ``_allow_retry_after_decline``).

    python -m tests.localstripe_server PORT DATA_DIR
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from aiohttp import web
from localstripe import resources, server


def _use_data_file(path: Path) -> None:
    def load(store) -> None:
        if path.exists():
            store.clear()
            store.update(pickle.loads(path.read_bytes()))  # noqa: S301 (its own file)

    def dump(store) -> None:
        path.write_bytes(pickle.dumps(store, protocol=pickle.HIGHEST_PROTOCOL))

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump


def _allow_retry_after_decline() -> None:
    """Real Stripe lets a customer retry an intent with another card after a decline;
    localstripe keeps the failed charge and refuses. Forget it when a new card arrives."""
    original = resources.PaymentIntent._api_update.__func__

    def update(cls, id, **data):
        intent = cls._api_retrieve(id)
        charge = intent.latest_charge
        if "payment_method" in data and charge is not None and charge.status == "failed":
            intent.latest_charge = None
        return original(cls, id, **data)

    resources.PaymentIntent._api_update = classmethod(update)


def main() -> None:
    port, data_dir = int(sys.argv[1]), Path(sys.argv[2])
    _use_data_file(data_dir / "localstripe.pickle")
    _allow_retry_after_decline()
    web.run_app(server.app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
