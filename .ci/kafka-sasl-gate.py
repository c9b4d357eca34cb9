#!/usr/bin/env python3
"""A SASL/PLAIN gate in front of a Kafka-protocol broker, for the service tier.

No broker that installs here can complete a SASL login: tansu 0.6 is built without PLAIN and
creates SCRAM users only over an already authenticated connection; librdkafka's mock cluster
speaks no SASL. This gate answers SaslHandshake (PLAIN only) and SaslAuthenticate itself,
checking the user and password against the ones given, and refuses every other request until
the connection has authenticated (as a broker with a SASL_PLAINTEXT listener does); after that
it passes the connection through, bytes unchanged, to the broker behind it, which must
advertise the gate's address.

    kafka-sasl-gate.py LISTEN_PORT UPSTREAM_PORT USER PASSWORD

Kafka framing: a request is int32 size, int16 api_key, int16 api_version, int32
correlation_id, ...; a response int32 size, int32 correlation_id, body.
"""
import asyncio
import struct
import sys

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
NONE, ILLEGAL_SASL_STATE, UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 0, 34, 33, 58


def string(s):
    data = s.encode()
    return struct.pack(">h", len(data)) + data


async def read_frame(reader):
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


def reply(writer, correlation_id, body):
    payload = struct.pack(">i", correlation_id) + body
    writer.write(struct.pack(">i", len(payload)) + payload)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(client_reader, client_writer, upstream_port, user, password):
    upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    mechanism_ok = False
    try:
        while True:
            frame = await read_frame(client_reader)
            api_key, api_version, correlation_id = struct.unpack(">hhi", frame[:8])
            if api_key == API_VERSIONS:
                # The broker's own answer (it lists SaslHandshake and SaslAuthenticate).
                upstream_writer.write(struct.pack(">i", len(frame)) + frame)
                await upstream_writer.drain()
                answer = await read_frame(upstream_reader)
                client_writer.write(struct.pack(">i", len(answer)) + answer)
            elif api_key == SASL_HANDSHAKE:
                client_id_len = struct.unpack(">h", frame[8:10])[0]
                at = 10 + max(client_id_len, 0)
                length = struct.unpack(">h", frame[at:at + 2])[0]
                mechanism = frame[at + 2:at + 2 + length].decode()
                mechanism_ok = mechanism == "PLAIN"
                code = NONE if mechanism_ok else UNSUPPORTED_SASL_MECHANISM
                reply(client_writer, correlation_id,
                      struct.pack(">h", code) + struct.pack(">i", 1) + string("PLAIN"))
            elif api_key == SASL_AUTHENTICATE and api_version <= 1:
                client_id_len = struct.unpack(">h", frame[8:10])[0]
                at = 10 + max(client_id_len, 0)
                length = struct.unpack(">i", frame[at:at + 4])[0]
                token = frame[at + 4:at + 4 + length].split(b"\0")
                granted = mechanism_ok and len(token) == 3 and token[1].decode() == user \
                    and token[2].decode() == password
                body = struct.pack(">h", NONE if granted else SASL_AUTHENTICATION_FAILED)
                body += struct.pack(">h", -1) if granted else string("Invalid username or password")
                body += struct.pack(">i", 0)
                if api_version >= 1:
                    body += struct.pack(">q", 0)
                reply(client_writer, correlation_id, body)
                await client_writer.drain()
                if not granted:
                    break
                # Authenticated: from here on the connection is the broker's.
                await asyncio.gather(pipe(client_reader, upstream_writer),
                                     pipe(upstream_reader, client_writer))
                return
            else:
                # Anything else before authenticating: a SASL listener drops the connection.
                break
            await client_writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    client_writer.close()
    upstream_writer.close()


async def main():
    listen_port, upstream_port, user, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, upstream_port, user, password), "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
