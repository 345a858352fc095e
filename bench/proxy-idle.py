#!/usr/bin/env python3
"""Memory of idle proxied IMAP sessions: a tern backend and a tern proxy on
loopback (the proxy's passwd-file gives alice the backend as mailhost);
2,000 sessions log in through the proxy, SELECT INBOX and idle; the proxy's
RSS growth per session is printed.

    python3 bench/proxy-idle.py target/release/tern [N] [--tls]

With --tls the client leg is implicit TLS (the proxy's imaps port).
"""
import subprocess, socket, ssl, time, os, re, sys, tempfile
BIN=sys.argv[1]
N=int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 2000
TLS="--tls" in sys.argv
W=tempfile.mkdtemp(prefix="tern-proxy-idle.")
def start(d, conf):
    os.makedirs(d, exist_ok=True)
    open(f"{d}/tern.toml","w").write(conf)
    p=subprocess.Popen([BIN,"serve","--config",f"{d}/tern.toml"],stdout=subprocess.PIPE,stderr=open(f"{d}/stderr", "w"),text=True)
    ports={}
    while True:
        l=p.stdout.readline()
        m=re.match(r"tern: listening (\S+) 127.0.0.1:(\d+)",l)
        if m: ports[m.group(1)]=int(m.group(2))
        if "listening pop3" in l: break
    return p,ports
common='[mail]\nmaildir = "mail/{user}/Maildir"\nallow_root = true\n[log]\nlevel = "warn"\n[limits]\nmax_connections_per_ip = 100000\nmax_connections_per_user_ip = 100000\nmax_connections_per_user = 100000\nmax_connections = 100000\n'
open(f"{W}/busers","w").write("alice:{PLAIN}secret::::::\n")
b,bp=start(f"{W}/b", '[imap]\nlisten = ["127.0.0.1:0"]\n[pop3]\nlisten = ["127.0.0.1:0"]\n[auth]\n' + f'passwd_file = "{W}/busers"\n' + common)
open(f"{W}/pusers","w").write(f"alice:{{PLAIN}}secret::::::mailhost=127.0.0.1:{bp['imap']}\n")
subprocess.run([BIN, "cert", "--out", W, "--name", "localhost"], check=True, stdout=subprocess.DEVNULL)
p,pp=start(f"{W}/p", '[imap]\nlisten = ["127.0.0.1:0"]\ntls_listen = ["127.0.0.1:0"]\n[pop3]\nlisten = ["127.0.0.1:0"]\n[auth]\n' + f'passwd_file = "{W}/pusers"\n[tls]\ncert = "{W}/cert.pem"\nkey = "{W}/key.pem"\n' + '[proxy]\nsend_id = false\n' + common)
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
CTX=ssl.create_default_context(); CTX.check_hostname=False; CTX.verify_mode=ssl.CERT_NONE
def session(port):
    s=socket.create_connection(("127.0.0.1",port))
    if TLS: s=CTX.wrap_socket(s)
    f=s.makefile("rb")
    f.readline(); s.sendall(b"a LOGIN alice secret\r\n")
    while True:
        l=f.readline()
        if l.startswith(b"a "): break
    assert l.startswith(b"a OK"), l
    s.sendall(b"b SELECT INBOX\r\n")
    while True:
        l=f.readline()
        if l.startswith(b"b "): break
    return s,f
PORT=pp["imaps"] if TLS else pp["imap"]
warm=[session(PORT) for _ in range(50)]
time.sleep(0.5)
before=rss(p.pid)
ss=[session(PORT) for _ in range(N)]
time.sleep(1)
after=rss(p.pid)
print(f"proxy RSS {before} -> {after} KiB: {(after-before)/N:.1f} KiB per idle proxied session (N={N}, client leg {'TLS' if TLS else 'cleartext'})")
for s,f in ss: s.close()
p.terminate(); b.terminate()
subprocess.run(["rm", "-rf", W]) if "KEEP" not in os.environ else print(W)
