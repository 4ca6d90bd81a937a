"""The forking emulator (`infra/emulator.py --forks`, how `make test` runs
the tests): each connection gets its own emulator, which shares nothing with
the others and exits when its connection closes; the command's exit status
is the server's; KMS keys, whose key pairs are made on first use, still
encrypt and sign. Run by `make test`."""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

EMULATOR = Path(__file__).resolve().parents[1] / "emulator.py"
socket.setdefaulttimeout(10)


def run_forks(*command):
    return subprocess.run([sys.executable, str(EMULATOR), "--forks", *command], timeout=120).returncode


def fork():
    """A new emulator's connection and port."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(os.environ["MEDREC_EMULATOR_FORKS"])
    line = connection.makefile().readline()
    return connection, int(line.split()[1])


def call(port, service, target, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/",
        data=json.dumps(body).encode(),
        headers={
            "X-Amz-Target": target,
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=k/20261207/us-east-1/{service}/aws4_request, "
            "SignedHeaders=host, Signature=0",
        },
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def tables(port):
    return call(port, "dynamodb", "DynamoDB_20120810.ListTables", {})["TableNames"]


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


def inside():
    failures = []

    def expect(what, ok):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    (a, port_a), (b, port_b) = fork(), fork()
    expect("two connections get two emulators", port_a != port_b)
    first = [call(port, "kms", "TrentService.CreateKey", {})["KeyMetadata"]["KeyId"] for port in (port_a, port_b)]
    expect("each emulator draws its own ids", first[0] != first[1])
    call(
        port_a,
        "dynamodb",
        "DynamoDB_20120810.CreateTable",
        {
            "TableName": "only-in-a",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    expect("a table made in one emulator is there", tables(port_a) == ["only-in-a"])
    expect("and not in the other", tables(port_b) == [])

    secret = base64.b64encode(b"phi").decode()
    key = call(port_b, "kms", "TrentService.CreateKey", {})["KeyMetadata"]["KeyId"]
    sealed = call(port_b, "kms", "TrentService.Encrypt", {"KeyId": key, "Plaintext": secret})["CiphertextBlob"]
    opened = call(port_b, "kms", "TrentService.Decrypt", {"CiphertextBlob": sealed})["Plaintext"]
    expect("a symmetric key encrypts and decrypts", opened == secret)
    signer = call(port_b, "kms", "TrentService.CreateKey", {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"})
    signer = signer["KeyMetadata"]["KeyId"]
    signed = {"KeyId": signer, "Message": secret, "SigningAlgorithm": "ECDSA_SHA_256"}
    signature = call(port_b, "kms", "TrentService.Sign", signed)["Signature"]
    verified = call(port_b, "kms", "TrentService.Verify", {**signed, "Signature": signature})
    expect("a signing key signs and verifies", verified["SignatureValid"] is True)

    a.close()
    deadline = time.monotonic() + 5
    while not refused(port_a) and time.monotonic() < deadline:
        time.sleep(0.1)
    expect("an emulator exits when its connection closes", refused(port_a))
    expect("the other still serves", tables(port_b) == [])
    b.close()
    return 1 if failures else 0


if __name__ == "__main__":
    if "MEDREC_EMULATOR_FORKS" in os.environ:
        sys.exit(inside())
    failures = []
    for command, status in ((["true"], 0), (["sh", "-c", "exit 3"], 3)):
        got = run_forks(*command)
        print(("ok   " if got == status else "FAIL ") + f"the server exits as {command} does: {got}")
        if got != status:
            failures.append(command)
    if run_forks(sys.executable, __file__) != 0:
        failures.append("forks")
    if failures:
        sys.exit(f"emulator forks: {len(failures)} failure(s)")
    print("emulator forks: all checks pass")
