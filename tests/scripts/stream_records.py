#!/usr/bin/env python3
"""Prints every record of a DynamoDB table's stream (all shards, from TRIM_HORIZON) as a
Lambda DynamoDB event, `{"Records": [...]}`, in shard order.

Usage: stream_records.py TABLE  (AWS_ENDPOINT_URL and credentials from the environment)
"""
import json
import os
import sys

import boto3


def main():
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    ddb = boto3.client("dynamodb", endpoint_url=endpoint)
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint)
    arn = ddb.describe_table(TableName=sys.argv[1])["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(1000):
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(page["Records"])
            iterator = page.get("NextShardIterator")
            if not page["Records"] or not iterator:
                break
    for record in records:
        record["eventSourceARN"] = arn
    print(json.dumps({"Records": records}, default=str))


if __name__ == "__main__":
    main()
