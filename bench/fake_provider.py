"""The fake Twilio REST API as its own process, logging when it accepted each SMS.

``python -m bench.fake_provider --port P --out FILE`` appends ``sid<TAB>to<TAB>unix time``
per accepted message to FILE, so the benchmark can time "SMS accepted by the provider"
without sharing a process (or a GIL) with the load it measures.
"""

from __future__ import annotations

import argparse
import signal
import threading

from tests.fake_twilio import FakeTwilio, SentMessage

ACCOUNT_SID = "ACbench0000000000000000000000000"
AUTH_TOKEN = "bench-auth-token"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    lock = threading.Lock()
    with open(args.out, "a", buffering=1) as out:

        def accepted(message: SentMessage, at: float) -> None:
            with lock:
                out.write(f"{message['sid']}\t{message['to']}\t{at:.6f}\n")

        fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, on_accept=accepted, port=args.port)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        with fake:
            stop.wait()


if __name__ == "__main__":
    main()
