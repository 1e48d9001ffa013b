#!/usr/bin/python3
"""A gRPC client on gRPC's C core (Debian's python3-grpcio), not grpc-js: the driver's own server
(src/csi/grpc-server.ts) is held to a second, independent HTTP/2 + gRPC implementation, the
family the kubelet's and the CSI sidecars' clients belong to. Messages cross as raw bytes (no
serializers), so the test encodes and decodes them with protobufjs.

stdin: {"target": "unix:/path", "calls": [{"method": "/csi.v1.Identity/Probe", "hex": "", "repeat": 1}]}
stdout: one JSON list; per call, a list of {"code", "details"?, "hex"?} (one per repeat, run at once).
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc


def one(channel, method, payload, timeout):
    try:
        reply = channel.unary_unary(method)(payload, timeout=timeout)
        return {"code": "OK", "hex": reply.hex()}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}


def main():
    spec = json.load(sys.stdin)
    out = []
    with grpc.insecure_channel(spec["target"]) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        with ThreadPoolExecutor(max_workers=64) as pool:
            for call in spec["calls"]:
                payload = bytes.fromhex(call.get("hex", ""))
                n = call.get("repeat", 1)
                futures = [pool.submit(one, channel, call["method"], payload, call.get("timeout", 20)) for _ in range(n)]
                out.append([f.result() for f in futures])
    json.dump(out, sys.stdout)


main()
