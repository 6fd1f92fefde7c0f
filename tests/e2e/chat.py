"""End-to-end check of a deployed relay with a real chatmail client (Delta Chat core).

    python3 chat.py DOMAIN HOST_ADDRESS [DOMAIN_B HOST_ADDRESS_B] [--push-token TOKEN]

Creates one account from the relay's /new link and one by first login with an address of
our choosing (on the second relay, if one is given), lets them verify each other (Secure-Join), exchanges encrypted messages both
ways, and checks that a cleartext message is refused. Prints one JSON object of results.
Exits non-zero on any failure. The relay's name must resolve (run it with the test DNS).
"""

import json
import os
import smtplib
import ssl
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from email.message import EmailMessage

from deltachat_rpc_client import DeltaChat, Rpc


def new_account_link(addr):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(f"https://{addr}/new", method="POST")
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return json.load(resp)


def set_device_token(addr, user, password, token):
    """What a phone's chat app does to get push notifications: IMAP SETMETADATA."""
    import imaplib

    # imaplib predates RFC 5464
    imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with imaplib.IMAP4_SSL(addr, 993, ssl_context=ctx) as imap:
        imap.login(user, password)
        typ, data = imap._simple_command("SETMETADATA", "INBOX", f'(/private/devicetoken "{token}")')
        assert typ == "OK", data


def main():
    push_token = None
    if "--push-token" in sys.argv:
        i = sys.argv.index("--push-token")
        push_token = sys.argv[i + 1]
        del sys.argv[i : i + 2]
    domain, addr = sys.argv[1], sys.argv[2]
    domain_b, addr_b = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (domain, addr)
    results = {}
    creds = new_account_link(addr)
    chosen = f"e2e{int(time.time()) % 1000000:06d}@{domain_b}"
    chosen_pw = "e2e-password-123"
    chosen_link = "dclogin:{}?p={}&v=1&ic=3".format(chosen, urllib.parse.quote(chosen_pw))

    server = os.path.join(os.path.dirname(sys.executable), "deltachat-rpc-server")
    with tempfile.TemporaryDirectory() as accounts_dir, Rpc(accounts_dir=accounts_dir, rpc_server_path=server) as rpc:
        dc = DeltaChat(rpc)
        alice, bob = dc.add_account(), dc.add_account()
        t = time.time()
        alice.add_transport_from_qr(creds["dclogin_url"])
        bob.add_transport_from_qr(chosen_link)
        results["configure_s"] = round(time.time() - t, 2)
        results["alice"], results["bob"] = creds["email"], chosen
        alice.bring_online()
        bob.bring_online()
        if push_token:
            set_device_token(addr_b, chosen, chosen_pw, push_token)

        t = time.time()
        alice.secure_join(bob.get_qr_code())
        alice.wait_for_securejoin_joiner_success()
        results["securejoin_s"] = round(time.time() - t, 2)

        chat_ab = alice.create_chat(bob)
        chat_ab.send_text("hello bob")
        msg = bob.wait_for_incoming_msg().get_snapshot()
        assert msg.text == "hello bob", msg.text
        assert msg.show_padlock, "message to bob was not encrypted"
        bob_chat = bob.get_chat_by_id(msg.chat_id)
        bob_chat.send_text("hello alice")
        reply = alice.wait_for_incoming_msg().get_snapshot()
        assert reply.text == "hello alice", reply.text
        assert reply.show_padlock, "reply was not encrypted"
        results["encrypted_both_ways"] = True

    # a cleartext message is refused by the relay's filter
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = chosen, results["alice"], "plain"
    mail.set_content("this is not encrypted")
    with smtplib.SMTP(addr_b, 587, timeout=30) as s:
        s.starttls(context=ctx)
        s.login(chosen, chosen_pw)
        try:
            s.send_message(mail)
            results["cleartext"] = "accepted"
        except smtplib.SMTPDataError as e:
            results["cleartext"] = f"refused {e.smtp_code}"
        except smtplib.SMTPSenderRefused as e:
            results["cleartext"] = f"refused {e.smtp_code}"
        except smtplib.SMTPRecipientsRefused as e:
            results["cleartext"] = f"refused {list(e.recipients.values())[0][0]}"
    print(json.dumps(results))
    if not results["cleartext"].startswith("refused 5"):
        sys.exit(1)


if __name__ == "__main__":
    main()
