#!/usr/bin/env python3
"""Creates what Fargate RunTask needs in moto and prints it as JSON.

A VPC with DNS hostnames, a subnet, a security group, an ECS cluster and a streamer pull task
definition (FARGATE, awsvpc, container `streamer`), and sets moto's `ecs::task` state
transition to manual (with 10^9 describes per step, tasks stay RUNNING until stopped).

Usage: ecs_setup.py CLUSTER FAMILY  (AWS_ENDPOINT_URL and credentials from the environment)
"""
import json
import os
import sys
import urllib.request

import boto3


def main():
    cluster, family = sys.argv[1], sys.argv[2]
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    ec2 = boto3.client("ec2", endpoint_url=endpoint)
    ecs = boto3.client("ecs", endpoint_url=endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/18")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName=f"{cluster}-pull", Description="pull tasks", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName=cluster)
    task_definition = ecs.register_task_definition(
        family=family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{
            "name": "streamer",
            "image": "streamstack/streamer:local",
            "command": ["pull"],
            "memoryReservation": 512,
            "essential": True,
        }],
    )["taskDefinition"]["taskDefinitionArn"]
    body = json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}).encode()
    request = urllib.request.Request(f"{endpoint}/moto-api/state-manager/set-transition", data=body, method="POST")
    urllib.request.urlopen(request).read()
    print(json.dumps({"subnet": subnet, "security_group": sg, "cluster": cluster, "task_definition": task_definition}))


if __name__ == "__main__":
    main()
