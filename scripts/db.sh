#!/bin/bash
# Private database servers for the account-backend tests, from Debian's
# packages, on loopback with throw-away data directories.
#
#   db.sh install                      apt-get what is missing (setup.sh calls it)
#   db.sh postgres start DIR PORT      a PostgreSQL cluster in DIR; database "mail",
#                                      user "tern" password "ternpw" (SCRAM); with
#                                      PG_LISTEN=ADDR also on ADDR, for its subnet
#   db.sh mariadb start DIR PORT       a MariaDB server in DIR; the same names
#   db.sh postgres|mariadb sql DIR PORT  run SQL read from stdin as the admin
#   db.sh postgres|mariadb stop DIR
#   db.sh ldap start DIR PORT [TLSPORT]  an OpenLDAP slapd for dc=example,dc=org (StartTLS
#                                      on PORT, ldaps:// on TLSPORT, CA in DIR/ca.crt); admin
#                                      cn=admin,dc=example,dc=org password "adminpw"
#   db.sh ldap add DIR PORT            ldapadd the LDIF read from stdin, as the admin
#   db.sh ldap load DIR PORT [TLSPORT]  many entries (LDIF on stdin) with slapadd
#   db.sh ldap restart DIR PORT [TLSPORT]  slapd again after a stop, same data
#   db.sh ldap stop DIR
#
# Nothing system-wide is started or configured; DIR is owned by the
# database's system user while it runs.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

die() { echo "db.sh: $*" >&2; exit 1; }

install() {
    local need=() p
    # slapd without Debian's own configuration: the tests write their own.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    for p in postgresql mariadb-server mariadb-client slapd ldap-utils; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
            apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null
            apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${need[@]}" >/dev/null
        }
    fi
}

pgbin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] || die "PostgreSQL is not installed (db.sh install)"
    echo "$d"
}

wait_port() {
    local i
    for i in $(seq 1 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# A CA of its own (DIR/ca.crt) and a server certificate for 127.0.0.1 signed
# by it (DIR/server.crt, DIR/server.key).
certs() {
    local d=$1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=test CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
        -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$d/ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
        -CAcreateserial -days 2 -extfile "$d/ext" -out "$d/server.crt" >/dev/null 2>&1
}

postgres() {
    local action=$1 dir=$2 port=${3:-} bin
    bin=$(pgbin)
    case $action in
        start)
            mkdir -p "$dir"
            chown postgres:postgres "$dir"
            chmod 700 "$dir"
            printf 'ternpw\n' > "$dir.pw"
            chown postgres "$dir.pw"
            runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U tern --pwfile="$dir.pw" \
                -A scram-sha-256 >/dev/null
            rm -f "$dir.pw"
            # TLS on, with a certificate signed by a CA of its own
            # (DIR/data/ca.crt, for a client's sslrootcert); cleartext
            # connections are still accepted.
            certs "$dir/data"
            chown postgres:postgres "$dir/data/server.key" "$dir/data/server.crt"
            chmod 600 "$dir/data/server.key"
            # PG_LISTEN=ADDR: listen there too and take password logins
            # from its subnet (another host of the multi-host test).
            local listen=127.0.0.1
            if [ -n "${PG_LISTEN:-}" ]; then
                listen="127.0.0.1,$PG_LISTEN"
                echo "host all all samenet scram-sha-256" >> "$dir/data/pg_hba.conf"
            fi
            runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o \
                "-p $port -k $dir -c listen_addresses=$listen -c ssl=on" start >/dev/null
            PGPASSWORD=ternpw "$bin/psql" -q -h 127.0.0.1 -p "$port" -U tern -d postgres \
                -c "CREATE DATABASE mail" >/dev/null
            ;;
        sql)
            PGPASSWORD=ternpw "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U tern -d mail
            ;;
        stop)
            [ -d "$dir/data" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
            ;;
        *) die "postgres start|sql|stop" ;;
    esac
}

mariadb() {
    local action=$1 dir=$2 port=${3:-}
    case $action in
        start)
            mkdir -p "$dir"
            chown mysql:mysql "$dir"
            chmod 700 "$dir"
            mariadb-install-db --datadir="$dir/data" --user=mysql --auth-root-authentication-method=socket \
                --skip-test-db >/dev/null 2>&1 || die "mariadb-install-db failed"
            runuser -u mysql -- /usr/sbin/mariadbd --no-defaults --datadir="$dir/data" --port="$port" \
                --bind-address=127.0.0.1 --socket="$dir/sock" --pid-file="$dir/pid" \
                --log-error="$dir/log" --skip-log-bin >/dev/null 2>&1 &
            wait_port "$port" || die "MariaDB did not start: $(tail -5 "$dir/log" 2>/dev/null)"
            for _ in $(seq 1 100); do [ -S "$dir/sock" ] && break; sleep 0.1; done
            /usr/bin/mariadb --no-defaults -S "$dir/sock" -u root <<SQL
CREATE DATABASE mail;
CREATE USER 'tern'@'127.0.0.1' IDENTIFIED BY 'ternpw';
CREATE USER 'tern'@'localhost' IDENTIFIED BY 'ternpw';
GRANT ALL ON mail.* TO 'tern'@'127.0.0.1';
GRANT ALL ON mail.* TO 'tern'@'localhost';
SQL
            ;;
        sql)
            /usr/bin/mariadb --no-defaults -h 127.0.0.1 -P "$port" -u tern -pternpw mail
            ;;
        stop)
            if [ -s "$dir/pid" ]; then kill -9 "$(cat "$dir/pid")" 2>/dev/null || true; fi
            ;;
        *) die "mariadb start|sql|stop" ;;
    esac
}

ldap() {
    local action=$1 dir=$2 port=${3:-} tlsport=${4:-}
    case $action in
        start)
            mkdir -p "$dir/db"
            certs "$dir"
            cat > "$dir/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile $dir/slapd.pid
TLSCACertificateFile $dir/ca.crt
TLSCertificateFile $dir/server.crt
TLSCertificateKeyFile $dir/server.key
moduleload back_mdb
database mdb
maxsize 4294967296
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw adminpw
directory $dir/db
index objectClass eq
index uid eq
index mail eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
CONF
            local urls="ldap://127.0.0.1:$port/"
            [ -n "$tlsport" ] && urls="$urls ldaps://127.0.0.1:$tlsport/"
            /usr/sbin/slapd -f "$dir/slapd.conf" -h "$urls" || die "slapd did not start"
            wait_port "$port" || die "slapd does not listen on $port"
            ldapadd -x -H "ldap://127.0.0.1:$port" -D cn=admin,dc=example,dc=org -w adminpw >/dev/null <<LDIF
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people
LDIF
            ;;
        add)
            ldapadd -x -H "ldap://127.0.0.1:$port" -D cn=admin,dc=example,dc=org -w adminpw >/dev/null
            ;;
        load)
            # Many entries at once (LDIF on stdin): slapd stopped, slapadd
            # in quick mode, slapd again.
            if [ -s "$dir/slapd.pid" ]; then kill "$(cat "$dir/slapd.pid")" 2>/dev/null || true; fi
            for _ in $(seq 1 100); do [ -s "$dir/slapd.pid" ] && kill -0 "$(cat "$dir/slapd.pid")" 2>/dev/null || break; sleep 0.1; done
            /usr/sbin/slapadd -q -f "$dir/slapd.conf" || die "slapadd failed"
            local urls="ldap://127.0.0.1:$port/"
            [ -n "$tlsport" ] && urls="$urls ldaps://127.0.0.1:$tlsport/"
            /usr/sbin/slapd -f "$dir/slapd.conf" -h "$urls" || die "slapd did not start"
            wait_port "$port" || die "slapd does not listen on $port"
            ;;
        restart)
            # After a stop: the same server, data and ports again.
            local urls="ldap://127.0.0.1:$port/"
            [ -n "$tlsport" ] && urls="$urls ldaps://127.0.0.1:$tlsport/"
            /usr/sbin/slapd -f "$dir/slapd.conf" -h "$urls" || die "slapd did not start"
            wait_port "$port" || die "slapd does not listen on $port"
            ;;
        stop)
            if [ -s "$dir/slapd.pid" ]; then kill -9 "$(cat "$dir/slapd.pid")" 2>/dev/null || true; fi
            ;;
        *) die "ldap start|add|load|restart|stop" ;;
    esac
}

case ${1:-} in
    install) install ;;
    ldap) shift; ldap "$@" ;;
    postgres) shift; postgres "$@" ;;
    mariadb) shift; mariadb "$@" ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
esac
