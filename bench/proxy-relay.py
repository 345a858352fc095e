#!/usr/bin/env python3
"""Login latency and relayed bytes through IMAP login proxies, for
bench/proxy-throughput.sh (which starts the servers).

    python3 bench/proxy-relay.py login ADDR USER PASSWORD [N]
        N sessions one after another (default 500): connect, greeting,
        LOGIN, its tagged OK, LOGOUT. Prints the median and p99 of the time
        from connect to the LOGIN's OK, in ms.
    python3 bench/proxy-relay.py fetch ADDR USER PASSWORD [REPS]
        One session: SELECT INBOX, then REPS times (default 3) FETCH 1:*
        (BODY.PEEK[]). Prints the bytes received, in MB.

Each run's client work is the same for every address it is pointed at, so
differences between addresses are the servers' (the proxy's added work
when one address is a proxy in front of the other).
"""
import socket
import sys
import time


def read_until(sock, buf, tag):
    """Reads until a line starting with `tag ` has arrived; the whole text."""
    end = tag + b" "
    while True:
        i = buf.rfind(b"\r\n" + end)
        if i >= 0 and buf.find(b"\r\n", i + 2) >= 0:
            return buf
        if buf.startswith(end) and buf.find(b"\r\n") >= 0:
            return buf
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise SystemExit(f"closed before {tag!r}: {buf[-200:]!r}")
        buf += chunk


def session(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    greeting = b""
    while b"\r\n" not in greeting:
        greeting += s.recv(4096)
    assert greeting.startswith(b"* OK"), greeting
    return s


def login(addr, user, pw, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        s = session(addr)
        s.sendall(f"a LOGIN {user} {pw}\r\n".encode())
        r = read_until(s, b"", b"a")
        times.append((time.perf_counter() - t) * 1000)
        assert b"\r\na OK" in b"\r\n" + r, r[-200:]
        s.sendall(b"b LOGOUT\r\n")
        read_until(s, b"", b"b")
        s.close()
    times.sort()
    print(f"login p50 {times[len(times) // 2]:.3f} ms p99 {times[len(times) * 99 // 100]:.3f} ms")


def fetch(addr, user, pw, reps):
    s = session(addr)
    s.sendall(f"a LOGIN {user} {pw}\r\nb SELECT INBOX\r\n".encode())
    read_until(s, b"", b"b")
    total = 0
    for i in range(reps):
        tag = f"f{i}".encode()
        s.sendall(tag + b" FETCH 1:* (BODY.PEEK[])\r\n")
        # Count as it arrives; only the last bytes are kept to find the tag.
        tail = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise SystemExit("closed during FETCH")
            total += len(chunk)
            tail = (tail + chunk)[-4096:]
            j = tail.rfind(b"\r\n" + tag + b" ")
            if j >= 0 and tail.find(b"\r\n", j + 2) >= 0:
                break
    s.sendall(b"z LOGOUT\r\n")
    s.close()
    print(f"fetched {total / 1e6:.1f} MB")


def main():
    mode, addr, user, pw = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    if mode == "login":
        login(addr, user, pw, n or 500)
    elif mode == "fetch":
        fetch(addr, user, pw, n or 3)
    else:
        raise SystemExit(__doc__)


main()
