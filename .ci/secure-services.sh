# Sourced by .ci/run (service tier): servers that demand credentials and TLS, for
# tally/tests/distributed/secure_connections.rs. Needs openssl, Debian's clickhouse-server and
# the Postgres cluster .ci/run started. Exports TALLY_TEST_TLS_CA and the TALLY_TEST_*_TLS_*
# variables.
#
# - a private CA, and a server certificate for localhost / 127.0.0.1 it signed;
# - ClickHouse 18.16 with HTTPS only (no plain HTTP port at all) on 127.0.0.1:18443, a
#   password-protected user `tally` and a `default` user with a password nobody is told;
# - the Postgres cluster with ssl = on and a database `tally_tls` that refuses connections
#   without TLS (pg_hba.conf `hostnossl … reject`);
# - Kafka-protocol brokers (tansu, needs `tansu` on the PATH): one demanding SASL on
#   127.0.0.1:19193, one behind a TLS listener on localhost:19194, one demanding SASL behind a
#   TLS listener on localhost:19195. tansu 0.6 parses --cert but never serves TLS, so socat
#   terminates TLS in front of it, and the broker advertises the TLS address;
# - a SASL/PLAIN login that can succeed (.ci/kafka-sasl-gate.py: tansu has no PLAIN and no way
#   to create SCRAM users while it demands SASL): a gate checking user `tally` and a password
#   in front of tansu on 127.0.0.1:19198, and the same behind TLS on localhost:19200.

secure_services() {
  local dir ch_password pg_conf
  dir=$(mktemp -d /tmp/tally-ci-tls.XXXXXX)
  chmod 755 "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=Tally CI CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/ext.cnf"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 7 -extfile "$dir/ext.cnf" -out "$dir/server.crt" 2>/dev/null
  export TALLY_TEST_TLS_CA="$dir/ca.pem"

  # ClickHouse: its own config (HTTPS only), users with SHA-256 passwords.
  ch_password=$(openssl rand -hex 16)
  mkdir -p "$dir/clickhouse"
  cat > "$dir/clickhouse/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>10000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password_sha256_hex>$(openssl rand -hex 16 | tr -d '\n' | sha256sum | cut -d' ' -f1)</password_sha256_hex>
      <networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota>
    </default>
    <tally>
      <password_sha256_hex>$(printf '%s' "$ch_password" | sha256sum | cut -d' ' -f1)</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota>
    </tally>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
EOF
  cat > "$dir/clickhouse/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>$dir/clickhouse/server.log</log><errorlog>$dir/clickhouse/error.log</errorlog></logger>
  <https_port>18443</https_port>
  <tcp_port>19443</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <openSSL><server>
    <certificateFile>$dir/server.crt</certificateFile>
    <privateKeyFile>$dir/server.key</privateKeyFile>
    <verificationMode>none</verificationMode>
    <loadDefaultCAFile>false</loadDefaultCAFile>
    <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
    <preferServerCiphers>true</preferServerCiphers>
  </server></openSSL>
  <path>$dir/clickhouse/data/</path>
  <tmp_path>$dir/clickhouse/tmp/</tmp_path>
  <users_config>$dir/clickhouse/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
</yandex>
EOF
  clickhouse-server --config-file="$dir/clickhouse/config.xml" >"$dir/clickhouse/stdout" 2>&1 &
  STARTED_PIDS+=($!)
  for _ in $(seq 1 60); do
    curl -sf --cacert "$dir/ca.pem" -H "X-ClickHouse-User: tally" -H "X-ClickHouse-Key: $ch_password" \
      'https://localhost:18443/?query=SELECT%201' >/dev/null 2>&1 && break
    sleep 1
  done
  echo "clickhouse (https only, password) $(curl -sf --cacert "$dir/ca.pem" \
    -H "X-ClickHouse-User: tally" -H "X-ClickHouse-Key: $ch_password" \
    'https://localhost:18443/?query=SELECT%20version()')"
  export TALLY_TEST_CLICKHOUSE_TLS_URL=https://localhost:18443
  export TALLY_TEST_CLICKHOUSE_TLS_USER=tally
  export TALLY_TEST_CLICKHOUSE_TLS_PASSWORD="$ch_password"

  # Postgres: TLS on for the cluster, required for database tally_tls.
  mkdir -p "$dir/postgres"
  cp "$dir/server.crt" "$dir/server.key" "$dir/postgres/"
  chown -R postgres "$dir/postgres"
  chmod 600 "$dir/postgres/server.key"
  su postgres -c "psql -qc \"ALTER SYSTEM SET ssl_cert_file = '$dir/postgres/server.crt'\""
  su postgres -c "psql -qc \"ALTER SYSTEM SET ssl_key_file = '$dir/postgres/server.key'\""
  su postgres -c "psql -qc 'ALTER SYSTEM SET ssl = on'"
  pg_conf=$(su postgres -c "psql -qAtc 'SHOW hba_file'")
  if ! grep -q '^hostnossl tally_tls' "$pg_conf"; then
    sed -i '1i hostnossl tally_tls all 127.0.0.1/32 reject\nhostnossl tally_tls all ::1/128 reject' "$pg_conf"
  fi
  su postgres -c "psql -qc 'SELECT pg_reload_conf()'" >/dev/null
  sleep 1
  su postgres -c "psql -qtc \"SELECT 1 FROM pg_database WHERE datname = 'tally_tls'\" | grep -q 1 || psql -qc 'CREATE DATABASE tally_tls OWNER tally'"
  echo "postgres ssl = $(su postgres -c "psql -qAtc 'SHOW ssl'"); tally_tls refuses plaintext"
  export TALLY_TEST_POSTGRES_TLS_URL=postgres://tally:tally@localhost:5432/tally_tls

  # Kafka: SASL, TLS, both.
  cat "$dir/server.crt" "$dir/server.key" > "$dir/kafka-tls.pem"
  tansu broker --listener-url tcp://127.0.0.1:19193 --advertised-listener-url tcp://127.0.0.1:19193 \
    --storage-engine memory://tansu/ --authentication >"$dir/tansu-sasl.log" 2>&1 &
  STARTED_PIDS+=($!)
  tansu broker --listener-url tcp://127.0.0.1:19196 --advertised-listener-url tcp://localhost:19194 \
    --storage-engine memory://tansu/ >"$dir/tansu-tls.log" 2>&1 &
  STARTED_PIDS+=($!)
  tansu broker --listener-url tcp://127.0.0.1:19197 --advertised-listener-url tcp://localhost:19195 \
    --storage-engine memory://tansu/ --authentication >"$dir/tansu-sasl-tls.log" 2>&1 &
  STARTED_PIDS+=($!)
  socat "openssl-listen:19194,bind=127.0.0.1,reuseaddr,fork,cert=$dir/kafka-tls.pem,verify=0" \
    tcp:127.0.0.1:19196 >"$dir/socat-tls.log" 2>&1 &
  STARTED_PIDS+=($!)
  socat "openssl-listen:19195,bind=127.0.0.1,reuseaddr,fork,cert=$dir/kafka-tls.pem,verify=0" \
    tcp:127.0.0.1:19197 >"$dir/socat-sasl-tls.log" 2>&1 &
  STARTED_PIDS+=($!)
  kafka_password=$(openssl rand -hex 12)
  tansu broker --listener-url tcp://127.0.0.1:19199 --advertised-listener-url tcp://127.0.0.1:19198 \
    --storage-engine memory://tansu/ >"$dir/tansu-plain-gate.log" 2>&1 &
  STARTED_PIDS+=($!)
  python3 .ci/kafka-sasl-gate.py 19198 19199 tally "$kafka_password" >"$dir/gate.log" 2>&1 &
  STARTED_PIDS+=($!)
  tansu broker --listener-url tcp://127.0.0.1:19202 --advertised-listener-url tcp://localhost:19200 \
    --storage-engine memory://tansu/ >"$dir/tansu-tls-gate.log" 2>&1 &
  STARTED_PIDS+=($!)
  python3 .ci/kafka-sasl-gate.py 19201 19202 tally "$kafka_password" >"$dir/gate-tls.log" 2>&1 &
  STARTED_PIDS+=($!)
  socat "openssl-listen:19200,bind=127.0.0.1,reuseaddr,fork,cert=$dir/kafka-tls.pem,verify=0" \
    tcp:127.0.0.1:19201 >"$dir/socat-gate.log" 2>&1 &
  STARTED_PIDS+=($!)
  for port in 19193 19194 19195 19198 19200; do
    for _ in $(seq 1 30); do
      (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
      sleep 1
    done
  done
  echo "kafka: SASL on 127.0.0.1:19193, TLS on localhost:19194, SASL+TLS on localhost:19195 (tansu; socat for TLS); PLAIN logins on 127.0.0.1:19198 and (TLS) localhost:19200"
  export TALLY_TEST_KAFKA_PLAIN_BROKERS=127.0.0.1:19198
  export TALLY_TEST_KAFKA_PLAIN_TLS_BROKERS=localhost:19200
  export TALLY_TEST_KAFKA_PLAIN_PASSWORD="$kafka_password"
  export TALLY_TEST_KAFKA_SASL_BROKERS=127.0.0.1:19193
  export TALLY_TEST_KAFKA_TLS_BROKERS=localhost:19194
  export TALLY_TEST_KAFKA_SASL_TLS_BROKERS=localhost:19195
}
