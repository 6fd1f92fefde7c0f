#!/usr/bin/python3
"""How long after a mail lands does Dovecot tell an IMAP client in IDLE?

Usage: idle-latency.py NSEXEC HOST ADDR USER PASSWORD MAILDIR COUNT

Logs in to ADDR:143 (plain, the check host's throw-away config), SELECTs INBOX, enters
IDLE, then COUNT times moves a message into MAILDIR/new inside HOST (through the test-host
script NSEXEC, which notes the time right before the rename) and waits for the untagged
EXISTS. The host shares this machine's clock (a container), so the two times compare.
Prints one latency per line in ms; exits non-zero if a notification does not come in 5 s.
"""

import socket
import subprocess
import sys
import time


def main():
    nsexec, host, addr, user, password, maildir, count = sys.argv[1:8]
    sock = socket.create_connection((addr, 143), timeout=10)
    reader = sock.makefile("rb")

    def send(line):
        sock.sendall(line.encode() + b"\r\n")

    def until(prefix):
        while True:
            line = reader.readline()
            if not line:
                sys.exit("connection closed")
            if line.startswith(prefix.encode()):
                return line

    until("* OK")
    send(f"a LOGIN {user} {password}")
    until("a OK")
    send("b SELECT INBOX")
    until("b OK")
    send("c IDLE")
    until("+")
    sock.settimeout(5)
    for i in range(int(count)):
        name = f"check-{time.time_ns()}-{i}"
        msg = f"Subject: latency {i}\\r\\n\\r\\nbody\\r\\n"
        script = (
            f"printf '{msg}' >{maildir}/tmp/{name} && date +%s.%N && "
            f"mv {maildir}/tmp/{name} {maildir}/new/{name}"
        )
        out = subprocess.run(
            ["bash", nsexec, host, "sh", "-c", script],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        landed = float(out.split()[0])
        try:
            # "* N EXISTS"; a "* N RECENT" left from the last message is skipped here
            while b"EXISTS" not in until("* "):
                pass
        except socket.timeout:
            sys.exit(f"message {i}: no IDLE notification within 5 s")
        seen = time.time()
        print(f"{(seen - landed) * 1000:.1f}", flush=True)
        time.sleep(1.0)
    send("DONE")


if __name__ == "__main__":
    main()
