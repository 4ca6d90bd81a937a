"""Known-answer vectors for medrec's wire and storage formats, computed from
the formats as written down (the table in
docs/decisions/0001-envelope-encryption.md) with Python's standard library
and `cryptography`, never with medrec's own code. core/tests/known_answers.rs checks medrec against the
output, core/tests/known_answers.json (regenerate only when a format
changes on purpose, with a new version label):

    python3 infra/kat/known_answers.py > core/tests/known_answers.json
"""

import base64
import hashlib
import hmac
import json
import struct
import unicodedata

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


# Key schedule: every service key is HMAC-SHA256(root secret, label).
ROOT = bytes(range(32))
LABELS = ["medrec/blind-index/v1", "medrec/cursor/v1", "medrec/audit-chain/v1"]
derived = {label: mac(ROOT, label.encode()).hex() for label in LABELS}
blind_key = bytes.fromhex(derived["medrec/blind-index/v1"])
cursor_key = bytes.fromhex(derived["medrec/cursor/v1"])
chain_key = bytes.fromhex(derived["medrec/audit-chain/v1"])


def normalise(value: str) -> str:
    """NFKD, combining marks dropped, lowercased, whitespace runs collapsed."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c)).lower()
    return " ".join(folded.split())


# Blind index: hex(HMAC-SHA256(key, "Type|param|normalised"))[:32].
blind = [
    {"type": t, "param": p, "value": v, "token": mac(blind_key, f"{t}|{p}|{normalise(v)}".encode())[:16].hex()}
    for t, p, v in [
        ("Patient", "family", "  Zoë   MÜLLER "),
        ("Patient", "given", "Ａｎｎａ"),  # fullwidth: NFKD folds it
        ("Patient", "birthdate", "1987-04-02"),
    ]
]

# Audit chain: hex(HMAC-SHA256(key, "medrec-audit-v1\n" shard "\n" seq "\n" prev "\n" body)).
GENESIS = "0" * 64
chain = []
prev = GENESIS
for seq, body in enumerate(['{"resourceType":"AuditEvent","id":"a1"}', '{"resourceType":"AuditEvent","id":"a2"}'], 1):
    link = mac(chain_key, f"medrec-audit-v1\n3\n{seq}\n{prev}\n{body}".encode()).hex()
    chain.append({"shard": 3, "seq": seq, "prev": prev, "body": body, "link": link})
    prev = link

# Registry request signing: hex(HMAC-SHA256(key, method "\n" path "\n" ts "\n" nonce "\n" hex(SHA-256(body)))).
REGISTRY_KEY = b"registry-shared-secret"
body = b"MSH|^~\\&|MEDREC|MEDREC|IIS|IIS|20261206031500||VXU^V04^VXU_V04|1|P|2.5.1\r"
registry = {
    "key": REGISTRY_KEY.decode(),
    "method": "POST",
    "path": "/iis/hl7",
    "timestamp": "1796534100",
    "nonce": "6f1c2b7e",
    "body": body.decode(),
    "signature": mac(
        REGISTRY_KEY,
        f"POST\n/iis/hl7\n1796534100\n6f1c2b7e\n{hashlib.sha256(body).hexdigest()}".encode(),
    ).hex(),
}

# Record envelope: 0x01 || 12-byte nonce || AES-256-GCM(ciphertext || tag),
# AAD "medrec:v1|patient={patient}|{type}/{id}/_history/{version}".
DATA_KEY = bytes([0x42] * 32)
nonce = bytes.fromhex("000102030405060708090a0b")
plaintext = b'{"resourceType":"Observation","id":"o1","status":"final"}'
aad = b"medrec:v1|patient=p1|Observation/o1/_history/3"
envelope = {
    "key": DATA_KEY.hex(),
    "patient": "p1",
    "type": "Observation",
    "id": "o1",
    "version": 3,
    "aad": aad.decode(),
    "plaintext": plaintext.decode(),
    "sealed": (b"\x01" + nonce + AESGCM(DATA_KEY).encrypt(nonce, plaintext, aad)).hex(),
}

# Paging cursor: base64url (no padding) of the envelope under the cursor key,
# AAD "medrec:cursor:v1|{route}|{subject}", plaintext the cursor's JSON.
cursor_json = b'{"q":[["family","smith"]],"after":"PAT#p9","exp":4102444800}'
cursor_aad = b"medrec:cursor:v1|search-type:Patient|dr-1"
cursor_nonce = bytes.fromhex("0c0d0e0f1011121314151617")
cursor = {
    "route": "search-type:Patient",
    "subject": "dr-1",
    "json": cursor_json.decode(),
    "token": base64.urlsafe_b64encode(
        b"\x01" + cursor_nonce + AESGCM(cursor_key).encrypt(cursor_nonce, cursor_json, cursor_aad)
    ).rstrip(b"=").decode(),
}

# Document envelope: key HMAC-SHA256(patient key, "medrec/document/v1|{object}");
# header "MRD1" || frame size (u32 BE) || length (u64 BE); frames of
# nonce || AES-256-GCM(frame) with AAD object || header || index (u64 BE) || last (1 byte).
OBJECT = "p1/b7"
FRAME = 1024
doc_key = mac(DATA_KEY, f"medrec/document/v1|{OBJECT}".encode())
document_plain = bytes((i * 7 + 3) % 251 for i in range(2500))
header = b"MRD1" + struct.pack(">I", FRAME) + struct.pack(">Q", len(document_plain))
frames = max(1, -(-len(document_plain) // FRAME))
sealed = bytearray(header)
for i in range(frames):
    chunk = document_plain[i * FRAME:(i + 1) * FRAME]
    frame_nonce = bytes([i]) * 12
    frame_aad = OBJECT.encode() + header + struct.pack(">Q", i) + bytes([1 if i + 1 == frames else 0])
    sealed += frame_nonce + AESGCM(doc_key).encrypt(frame_nonce, chunk, frame_aad)
document = {
    "patientKey": DATA_KEY.hex(),
    "object": OBJECT,
    "documentKey": doc_key.hex(),
    "plaintext": document_plain.hex(),
    "sealed": bytes(sealed).hex(),
}

print(json.dumps({
    "root": ROOT.hex(),
    "derived": derived,
    "blindIndex": blind,
    "auditChain": chain,
    "registrySignature": registry,
    "recordEnvelope": envelope,
    "cursor": cursor,
    "document": document,
}, indent=1, ensure_ascii=False))
