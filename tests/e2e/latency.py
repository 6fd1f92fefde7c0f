"""Message delivery latency through a deployed relay, measured with the Delta Chat client.

    python3 latency.py DOMAIN HOST_ADDRESS [COUNT]

Two verified accounts; one sends COUNT messages 1.1 s apart (faster sending makes the client
hold messages back), the other notes when each arrives. Prints one JSON object with
min/p50/p95/max milliseconds and the number lost.
"""

import json
import os
import sys
import tempfile
import threading
import time
import urllib.parse

from deltachat_rpc_client import DeltaChat, EventType, Rpc

from chat import new_account_link


def main():
    domain, addr = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    creds_a, creds_b = new_account_link(addr), new_account_link(addr)
    server = os.path.join(os.path.dirname(sys.executable), "deltachat-rpc-server")
    with tempfile.TemporaryDirectory() as accounts_dir, Rpc(accounts_dir=accounts_dir, rpc_server_path=server) as rpc:
        dc = DeltaChat(rpc)
        alice, bob = dc.add_account(), dc.add_account()
        alice.add_transport_from_qr(creds_a["dclogin_url"])
        bob.add_transport_from_qr(creds_b["dclogin_url"])
        alice.bring_online()
        bob.bring_online()
        alice.secure_join(bob.get_qr_code())
        alice.wait_for_securejoin_joiner_success()
        chat = alice.create_chat(bob)
        bob.clear_all_events()

        sent, arrived = {}, {}
        done = threading.Event()

        def receive():
            while len(arrived) < count:
                event = bob.wait_for_event()
                if event.kind == EventType.INCOMING_MSG:
                    text = bob.get_message_by_id(event.msg_id).get_snapshot().text
                    if text.startswith("ping "):
                        arrived[int(text.split()[1])] = time.time()
            done.set()

        threading.Thread(target=receive, daemon=True).start()
        for i in range(count):
            sent[i] = time.time()
            chat.send_text(f"ping {i}")
            time.sleep(1.1)
        done.wait(timeout=60)
        ms = sorted((arrived[i] - sent[i]) * 1000 for i in arrived)
        pick = lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))]) if ms else None
        print(json.dumps({
            "count": count, "lost": count - len(ms),
            "min_ms": pick(0), "p50_ms": pick(0.5), "p95_ms": pick(0.95), "max_ms": pick(1.0) if not ms else round(ms[-1]),
        }))


if __name__ == "__main__":
    main()
