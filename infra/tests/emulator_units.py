"""Known answers for the emulator's DynamoDB request-unit counter (the cost
column of `cargo bench -p medrec-e2e --bench aws_calls`): each call's units
worked out by hand from the DynamoDB developer guide's rules, checked
against what the emulator counts. Run by `make test`."""
import json
import sys
import urllib.request

import boto3
from botocore.exceptions import ClientError

import emulator_process

url = f"http://127.0.0.1:{emulator_process.start()}"
db = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
failures = []


def units():
    counted = json.loads(urllib.request.urlopen(url + "/_medrec/units").read())
    urllib.request.urlopen(urllib.request.Request(url + "/_medrec/units", method="DELETE"))
    return counted


def expect(what, read, write):
    counted = units()
    if (counted["read"], counted["write"], counted["unpriced"]) != (read, write, 0):
        failures.append(f"{what}: expected read {read} write {write}, counted {counted}")


def key(pk, sk):
    return {"pk": {"S": pk}, "sk": {"S": sk}}


db.create_table(
    TableName="t",
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    BillingMode="PAY_PER_REQUEST",
)
units()
# 1,500 bytes of value plus names and keys: two 1 KB write units.
db.put_item(TableName="t", Item=key("p", "a") | {"v": {"S": "x" * 1500}})
expect("a put of 1.5 KB", 0, 2)
db.get_item(TableName="t", Key=key("p", "a"), ConsistentRead=True)
expect("a strongly consistent read of 1.5 KB", 1, 0)
# A projection reads the whole item all the same; eventually consistent is half.
db.get_item(TableName="t", Key=key("p", "a"), ProjectionExpression="pk")
expect("an eventually consistent, projected read", 0.5, 0)
for sk in "bc":
    db.put_item(TableName="t", Item=key("p", sk) | {"v": {"S": "y" * 2000}, "n": {"N": "12345"}, "b": {"B": b"\0" * 10}})
expect("two puts of 2 KB", 0, 4)
# A Query adds up the items it read (about 5.5 KB) and rounds once.
db.query(
    TableName="t",
    KeyConditionExpression="pk = :p",
    ExpressionAttributeValues={":p": {"S": "p"}},
    ConsistentRead=True,
    ProjectionExpression="pk, sk",
)
expect("a Query of three items", 2, 0)
# A batch read rounds each item.
db.batch_get_item(RequestItems={"t": {"Keys": [key("p", "a"), key("p", "b")], "ConsistentRead": True}})
expect("a batch read of two items", 2, 0)
db.batch_get_item(RequestItems={"t": {"Keys": [key("p", "a"), key("p", "zz")], "ProjectionExpression": "v"}})
expect("a projected, eventually consistent batch read of one item found and one not", 0.5, 0)
db.transact_write_items(
    TransactItems=[{"Put": {"TableName": "t", "Item": key("q", "1")}}, {"Put": {"TableName": "t", "Item": key("q", "2")}}]
)
expect("a transaction of two small puts (twice the units)", 0, 4)
db.update_item(
    TableName="t",
    Key=key("q", "1"),
    UpdateExpression="SET v = :v",
    ExpressionAttributeValues={":v": {"S": "z" * 3000}},
)
expect("an update to 3 KB (the larger of before and after)", 0, 3)
db.delete_item(TableName="t", Key=key("q", "1"))
expect("a delete of 3 KB", 0, 3)
try:
    db.put_item(TableName="t", Item=key("p", "a"), ConditionExpression="attribute_not_exists(pk)")
    failures.append("the conditional put succeeded")
except ClientError:
    pass
expect("a refused conditional put (not counted)", 0, 0)
try:
    db.get_item(TableName="missing", Key=key("p", "a"))
    failures.append("a read of a missing table succeeded")
except ClientError as e:
    if e.response["Error"]["Code"] != "ResourceNotFoundException":
        failures.append(f"a missing table answered {e.response['Error']['Code']}")
expect("a read of a missing table", 0, 0)

if failures:
    sys.exit("\n".join(failures))
print("emulator request units: 12 known answers")
