#!/usr/bin/env python3
"""Delivery latency, direct and relayed: a tern backend and a tern front on
loopback (the front's passwd-file gives alice the backend as mailhost, so
its LMTP relays her mail to the backend's). alice idles on the backend;
each delivery goes alternately straight to the backend's LMTP and through
the front's, and the time from the end of the data to the IDLE session's
EXISTS, and to the LMTP answer, is taken.

    python3 bench/lmtp-relay.py target/release/tern [N]

Prints p50/p95 of both paths and their ratio (relayed / direct).
TERN_LMTP_KEEP=SECS sets the front's proxy.lmtp_keep_secs (0: a new relay
connection per message, as before 2026-12-03).
"""
import subprocess, socket, time, os, re, sys, tempfile, statistics
BIN=sys.argv[1]
N=int(sys.argv[2]) if len(sys.argv) > 2 else 300
W=tempfile.mkdtemp(prefix="tern-lmtp-relay.")
def start(d, conf):
    os.makedirs(d, exist_ok=True)
    open(f"{d}/tern.toml","w").write(conf)
    p=subprocess.Popen([BIN,"serve","--config",f"{d}/tern.toml"],stdout=subprocess.PIPE,stderr=open(f"{d}/stderr", "w"),text=True)
    ports={}
    while True:
        l=p.stdout.readline()
        if not l: raise SystemExit(open(f"{d}/stderr").read())
        m=re.match(r"tern: listening (\S+) 127.0.0.1:(\d+)",l)
        if m: ports[m.group(1)]=int(m.group(2))
        if "listening lmtp" in l: break
    return p,ports
common='[mail]\nmaildir = "mail/{user}/Maildir"\nallow_root = true\n[log]\nlevel = "warn"\n[imap]\nlisten = ["127.0.0.1:0"]\n[pop3]\nlisten = ["127.0.0.1:0"]\n[lmtp]\nlisten = ["127.0.0.1:0"]\n'
open(f"{W}/busers","w").write("alice:{PLAIN}secret::::::\n")
b,bp=start(f"{W}/b", common + f'[auth]\npasswd_file = "{W}/busers"\nlogin_trusted_networks = ["127.0.0.0/8"]\n')
open(f"{W}/fusers","w").write(f"alice:{{PLAIN}}secret::::::mailhost=127.0.0.1:{bp['imap']}\n")
f,fp=start(f"{W}/f", common + f'[auth]\npasswd_file = "{W}/fusers"\n[proxy]\nlmtp_port = {bp["lmtp"]}\nlmtp_keep_secs = {os.environ.get("TERN_LMTP_KEEP", "5")}\n')

def lines_until(fh, pred):
    while True:
        l=fh.readline()
        if not l: raise SystemExit("connection closed")
        if pred(l): return l

imap=socket.create_connection(("127.0.0.1",bp["imap"])); ih=imap.makefile("rb")
ih.readline(); imap.sendall(b"a LOGIN alice secret\r\n"); lines_until(ih, lambda l: l.startswith(b"a "))
imap.sendall(b"b SELECT INBOX\r\n"); lines_until(ih, lambda l: l.startswith(b"b "))
imap.sendall(b"c IDLE\r\n"); lines_until(ih, lambda l: l.startswith(b"+"))

def lmtp(port):
    s=socket.create_connection(("127.0.0.1",port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    h=s.makefile("rb"); h.readline()
    s.sendall(b"LHLO bench\r\n"); lines_until(h, lambda l: l[3:4]==b" ")
    return s,h
body=b"Subject: bench\r\nFrom: a@example.net\r\n\r\n" + b"x"*2000 + b"\r\n"
conns={"direct":lmtp(bp["lmtp"]),"relayed":lmtp(fp["lmtp"])}
took={"direct":([],[]),"relayed":([],[])}
for i in range(2*N):
    path="direct" if i%2==0 else "relayed"
    s,h=conns[path]
    s.sendall(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<alice>\r\nDATA\r\n")
    for _ in range(3): h.readline()
    t0=time.perf_counter()
    s.sendall(body + b".\r\n")
    ans=h.readline(); t_ans=time.perf_counter()
    assert ans.startswith(b"250"), ans
    lines_until(ih, lambda l: b"EXISTS" in l); t_ex=time.perf_counter()
    if i >= 20:
        took[path][0].append((t_ex-t0)*1000); took[path][1].append((t_ans-t0)*1000)
def pct(xs, q): xs=sorted(xs); return xs[min(len(xs)-1,int(q*len(xs)))]
res={}
for path,(ex,ans) in took.items():
    res[path]=(pct(ex,.5),pct(ex,.95),pct(ans,.5))
    print(f"{path:8} EXISTS after data p50 {pct(ex,.5):.2f} ms p95 {pct(ex,.95):.2f} ms; LMTP answer p50 {pct(ans,.5):.2f} ms (n={len(ex)})")
print(f"relayed/direct: EXISTS p50 {res['relayed'][0]/res['direct'][0]:.2f}x, p95 {res['relayed'][1]/res['direct'][1]:.2f}x; answer p50 {res['relayed'][2]/res['direct'][2]:.2f}x")
f.terminate(); b.terminate()
subprocess.run(["rm", "-rf", W]) if "KEEP" not in os.environ else print(W)
