"""The emulator keeps a connection open between requests (infra/emulator.py,
KeepAliveRequestHandler) only where HTTP says it may: checked on raw
sockets, so nothing a client library does hides a wrong answer. Run by
`make test`."""
import socket
import sys
import time

import emulator_process

port = emulator_process.start()
# A rule broken may mean an answer that never comes: fail, don't hang.
socket.setdefaulttimeout(10)
failures = []


def call(sock, headers=b"", body=b"{}", length=None, pause=False):
    """One ListTables on `sock` (its last bytes after a pause when `pause`);
    the answer's head and body, or ("closed", b"") if the server hung up."""
    length = str(len(body)).encode() if length is None else length
    request = (
        b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
        b"Content-Type: application/x-amz-json-1.0\r\nAuthorization: AWS4-HMAC-SHA256 "
        b"Credential=k/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0\r\n"
        + headers
        + b"Content-Length: "
        + length
        + b"\r\n\r\n"
        + body
    )
    try:
        if pause:
            sock.sendall(request[:-4])
            time.sleep(0.2)
            request = request[-4:]
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            if not piece:
                return "closed", b""
            answer += piece
    except OSError:
        return "closed", b""
    head, _, rest = answer.partition(b"\r\n\r\n")
    size = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
    while len(rest) < size:
        piece = sock.recv(65536)
        if not piece:
            return "closed", b""
        rest += piece
    return head.decode(), rest


def closed(sock):
    sock.settimeout(5)
    return sock.recv(1) == b""


def expect(what, ok):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


with socket.create_connection(("127.0.0.1", port)) as s:
    answers = [call(s) for _ in range(3)]
    expect("three requests answered on one connection", all(h.startswith("HTTP/1.1 200") for h, _ in answers))
    expect("no answer says it closes", not any("connection: close" in h.lower() for h, _ in answers))
    head, body = call(s, body=b'{"Limit": 5}', pause=True)
    expect("a body that arrives late is read whole", head.startswith("HTTP/1.1 200") and b"TableNames" in body)
    head, _ = call(s)
    expect("and the request after it is answered", head.startswith("HTTP/1.1 200"))
with socket.create_connection(("127.0.0.1", port)) as s:
    head, _ = call(s, headers=b"Connection: close\r\n")
    expect("a client's Connection: close is answered so, and kept", "connection: close" in head.lower())
    expect("then the connection is closed", closed(s))
with socket.create_connection(("127.0.0.1", port)) as s:
    head, _ = call(s, body=b"", length=b"abc")
    expect("a length that is not a number closes the connection, and says so", "connection: close" in head.lower())
    expect("then the connection is closed", closed(s))

if failures:
    sys.exit(f"{len(failures)} connection rule(s) broken")
print("emulator connections: every rule holds")
