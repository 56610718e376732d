"""gRPC C-core's proxyless xDS client (Python grpcio), driven by the meshbridge
end-to-end tests over JSON lines, the same protocol as test/harness/grpc-go:
one command per stdin line, one answer per stdout line, matched by "id", and
{"id": 0} once ready.

It exists to run an old C-core (1.51, what Debian 12 ships) against
meshbridge: that release knows only the first form of gRPC's header matchers.
The Echo messages are encoded by hand, so no generated code or protoc is
needed. The bootstrap comes from GRPC_XDS_BOOTSTRAP, as for any gRPC program.
"""

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

# Bounds, so a runaway test cannot make the client unbounded.
MAX_LINE_BYTES = 1 << 20
MAX_CALLS_PER_COMMAND = 10_000
MAX_PARALLEL = 64
MAX_DEADLINE_MS = 5 * 60 * 1000
DEFAULT_DEADLINE_MS = 5_000
ECHO_METHOD = "/meshbridge.example.Echo/Echo"

_write_lock = threading.Lock()


def answer(message):
    line = json.dumps(message)
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def echo_request(message):
    """EchoRequest{message = 1}."""
    data = message.encode()
    return b"\x0a" + varint(len(data)) + data


def read_varint(data, offset):
    value, shift = 0, 0
    while True:
        if offset >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, offset


def reply_backend(data):
    """EchoReply.backend (field 2); other fields skipped."""
    offset = 0
    while offset < len(data):
        tag, offset = read_varint(data, offset)
        field, wire = tag >> 3, tag & 7
        if wire == 2:
            length, offset = read_varint(data, offset)
            value = data[offset : offset + length]
            offset += length
            if field == 2:
                return value.decode()
        elif wire == 0:
            _, offset = read_varint(data, offset)
        elif wire == 1:
            offset += 8
        elif wire == 5:
            offset += 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return ""


class Client:
    def __init__(self):
        self.channels = {}
        self.pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL)

    def channel(self, target):
        if target not in self.channels:
            self.channels[target] = grpc.insecure_channel(target)
        return self.channels[target]

    def one_call(self, target, method, deadline_ms, metadata):
        # No serializers: the request is already bytes, and the reply stays bytes.
        callable_ = self.channel(target).unary_unary(method)
        started = time.monotonic()
        try:
            reply, call = callable_.with_call(echo_request("hi"), timeout=deadline_ms / 1000, metadata=metadata)
            result = {"code": "OK", "backend": reply_backend(reply)}
        except grpc.RpcError as error:
            result = {"code": error.code().name, "message": error.details() or ""}
        result["elapsedMs"] = int((time.monotonic() - started) * 1000)
        return result

    def call(self, command):
        count = min(max(int(command.get("count") or 1), 1), MAX_CALLS_PER_COMMAND)
        parallel = min(max(int(command.get("parallel") or 1), 1), MAX_PARALLEL)
        deadline_ms = min(int(command.get("deadlineMs") or DEFAULT_DEADLINE_MS), MAX_DEADLINE_MS)
        metadata = tuple((str(k).lower(), str(v)) for k, v in (command.get("metadata") or {}).items())
        method = command.get("method") or ECHO_METHOD
        target = command["target"]
        results = []
        for start in range(0, count, parallel):
            batch = [
                self.pool.submit(self.one_call, target, method, deadline_ms, metadata)
                for _ in range(min(parallel, count - start))
            ]
            results.extend(future.result() for future in batch)
        return results

    def close(self):
        for channel in self.channels.values():
            channel.close()
        self.pool.shutdown(wait=False)


def main():
    client = Client()
    answer({"id": 0, "version": grpc.__version__})
    for line in sys.stdin:
        if len(line) > MAX_LINE_BYTES:
            answer({"id": -1, "error": "command line too long"})
            continue
        try:
            command = json.loads(line)
        except ValueError as error:
            answer({"id": -1, "error": f"unparsable command: {error}"})
            continue
        identifier = command.get("id", -1)
        try:
            if command.get("op") != "call":
                raise ValueError(f"unknown op {command.get('op')!r}")
            answer({"id": identifier, "calls": client.call(command)})
        except Exception as error:  # the test sees the reason instead of a hang
            answer({"id": identifier, "error": f"{type(error).__name__}: {error}"})
    client.close()


if __name__ == "__main__":
    main()
