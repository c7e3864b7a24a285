// Health: ECS task stops of the streamer cluster (TaskHealthFunction) and the EC2 media
// gateways (GatewayHealthFunction, GatewaysTable lives in storage.ts).
import { Aws, Fn } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { Devices } from './devices';
import { Params } from './params';
import { Network } from './network';
import { FunctionGlobals, SamFunction, deadLetterQueue, named } from './sam';
import { Storage } from './storage';
import { EVENT_RETRY } from './vod';

/** `arn:<partition>:ec2:<region>:<account or empty>:<resource>`. */
function ec2Arn(resource: string, withAccount = true): string {
  return Fn.sub(`arn:\${AWS::Partition}:ec2:\${AWS::Region}:${withAccount ? '${AWS::AccountId}' : ''}:${resource}`);
}

export class Health extends Construct {
  readonly taskHealth: SamFunction;
  readonly gatewayHealth: SamFunction;
  readonly taskHealthDeadLetterQueue: sqs.CfnQueue;
  readonly gatewayHealthDeadLetterQueue: sqs.CfnQueue;
  readonly taskStoppedRuleQueue: sqs.CfnQueue;
  readonly stateChangeRuleQueue: sqs.CfnQueue;

  constructor(scope: Construct, id: string, params: Params, globals: FunctionGlobals, storage: Storage,
    devices: Devices, network: Network, alarmTopic: sns.CfnTopic, alarmTopicKey: kms.CfnKey) {
    super(scope, id);
    // The topic's key (SNS encrypts the message with it on the publisher's behalf).
    const alarmTopicKeyUse = {
      Effect: 'Allow',
      Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
      Resource: alarmTopicKey.attrArn,
    };

    // A device task stopped without the reconciler: restart backoff or, in a crash loop,
    // FAILED + alarm. A stopped ingest task: its channels' leases released, playlists ended.
    // Invocations that still failed after Lambda's two async retries (ECS task events); the
    // rule's own dead-letter queue only holds events EventBridge could not deliver.
    this.taskHealthDeadLetterQueue = deadLetterQueue(this, 'TaskHealthDeadLetterQueue');
    this.taskHealth = new SamFunction(this, 'TaskHealthFunction', globals, {
      binary: 'task-health',
      logGroup: 'TaskHealthLogGroup',
      deadLetterQueueArn: this.taskHealthDeadLetterQueue.attrArn,
      description: 'ECS task stops -> restart backoff, crash-loop alarm, lease release (functions/health)',
      timeout: 30,
      environment: {
        DEVICES_TABLE: storage.devicesTable.ref,
        SLOTS_TABLE: storage.slotsTable.ref,
        CHANNELS_TABLE: storage.channelsTable.ref,
        MEDIA_BUCKET: storage.mediaBucket.ref,
        ALARM_TOPIC_ARN: alarmTopic.ref,
        STREAMER_CLUSTER_ARN: devices.cluster.attrArn,
        INGEST_SERVICE_GROUP: Fn.sub('service:${AWS::StackName}-ingest'),
        DEVICE_ONLINE_WINDOW_SECS: params.ref('DeviceOnlineWindowSeconds'),
        RESTART_BACKOFF_BASE_SECS: params.ref('RestartBackoffBaseSeconds'),
        RESTART_BACKOFF_MAX_SECS: params.ref('RestartBackoffMaxSeconds'),
        CRASH_LOOP_RESTARTS: params.ref('CrashLoopRestarts'),
        CRASH_LOOP_WINDOW_SECS: params.ref('CrashLoopWindowSeconds'),
        HEALTHY_RUN_SECS: params.ref('HealthyRunSeconds'),
      },
      policies: [{
        statements: [
          {
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
            Resource: [storage.devicesTable.attrArn, storage.slotsTable.attrArn, storage.channelsTable.attrArn],
          },
          { Effect: 'Allow', Action: 'dynamodb:Query', Resource: Fn.sub('${ChannelsTable.Arn}/index/lease-owner-index') },
          // Ending live playlists: read and rewrite live/<channel>/index.m3u8 (or
          // signed/live/<channel>/index.m3u8) with its tag.
          {
            Effect: 'Allow',
            Action: ['s3:GetObject', 's3:GetObjectTagging', 's3:PutObject', 's3:PutObjectTagging'],
            Resource: [Fn.sub('${MediaBucket.Arn}/live/*'), Fn.sub('${MediaBucket.Arn}/signed/live/*')],
          },
          { Effect: 'Allow', Action: 'sns:Publish', Resource: alarmTopic.ref },
          alarmTopicKeyUse,
        ],
      }],
    });
    this.taskStoppedRuleQueue = this.taskHealth.addEventBridgeRule('TaskStopped', {
      source: ['aws.ecs'],
      'detail-type': ['ECS Task State Change'],
      detail: { clusterArn: [devices.cluster.attrArn], lastStatus: ['STOPPED'] },
    }, EVENT_RETRY);

    const sg = named(new ec2.CfnSecurityGroup(this, 'GatewayHealthSecurityGroup', {
      groupDescription: 'gateway-health function (outbound to gateway health URLs and AWS APIs)',
      vpcId: network.vpcId,
    }), 'GatewayHealthSecurityGroup');
    sg.cfnOptions.condition = params.hasGatewayHealthUrl;

    // Invocations that still failed after Lambda's two async retries (gateway checks, EC2 events).
    this.gatewayHealthDeadLetterQueue = deadLetterQueue(this, 'GatewayHealthDeadLetterQueue');
    const tagged = { StringEquals: { 'ec2:ResourceTag/streamstack:role': params.ref('GatewayTagValue') } };
    this.gatewayHealth = new SamFunction(this, 'GatewayHealthFunction', globals, {
      binary: 'gateway-health',
      logGroup: 'GatewayHealthLogGroup',
      deadLetterQueueArn: this.gatewayHealthDeadLetterQueue.attrArn,
      description: 'EC2 media gateways - check, reboot, recover with the Elastic IP, backups (functions/health)',
      timeout: 300,
      vpcConfig: Fn.conditionIf(params.hasGatewayHealthUrl.logicalId,
        { SubnetIds: Fn.split(',', network.taskSubnetsCsv), SecurityGroupIds: [sg.ref] },
        Aws.NO_VALUE),
      environment: {
        GATEWAYS_TABLE: storage.gatewaysTable.ref,
        ALARM_TOPIC_ARN: alarmTopic.ref,
        GATEWAY_TAG_KEY: 'streamstack:role',
        GATEWAY_TAG_VALUE: params.ref('GatewayTagValue'),
        GATEWAY_HEALTH_URL: params.ref('GatewayHealthUrl'),
        GATEWAY_HEALTH_FAILURES: params.ref('GatewayHealthFailures'),
        GATEWAY_REBOOT_GRACE_SECS: params.ref('GatewayRebootGraceSeconds'),
        GATEWAY_RPO_SECS: params.ref('GatewayRpoSeconds'),
        GATEWAY_IMAGE_RETENTION: params.ref('GatewayImageRetention'),
        // Longer than the function timeout: a lock outlives the invocation that took it.
        GATEWAY_LOCK_SECS: '600',
        GATEWAY_DRY_RUN: params.ref('GatewayDryRun'),
      },
      policies: [
        {
          statements: [
            {
              Effect: 'Allow',
              Action: ['ec2:DescribeInstances', 'ec2:DescribeInstanceStatus', 'ec2:DescribeAddresses', 'ec2:DescribeImages'],
              Resource: '*',
            },
            {
              Effect: 'Allow',
              Action: ['ec2:RebootInstances', 'ec2:TerminateInstances', 'ec2:CreateImage', 'ec2:AssociateAddress'],
              Resource: ec2Arn('instance/*'),
              Condition: tagged,
            },
            { Effect: 'Allow', Action: 'ec2:CreateImage', Resource: [ec2Arn('image/*', false), ec2Arn('snapshot/*', false)] },
            {
              Effect: 'Allow',
              Action: 'ec2:AssociateAddress',
              Resource: [ec2Arn('elastic-ip/*'), ec2Arn('network-interface/*')],
            },
            {
              Effect: 'Allow',
              Action: 'ec2:RunInstances',
              Resource: ec2Arn('instance/*'),
              Condition: { StringEquals: { 'aws:RequestTag/streamstack:role': params.ref('GatewayTagValue') } },
            },
            { Effect: 'Allow', Action: 'ec2:RunInstances', Resource: ec2Arn('image/*', false) },
            {
              Effect: 'Allow',
              Action: 'ec2:RunInstances',
              Resource: ['subnet/*', 'security-group/*', 'network-interface/*', 'volume/*', 'key-pair/*'].map((r) => ec2Arn(r)),
            },
            {
              Effect: 'Allow',
              Action: 'ec2:CreateTags',
              Resource: '*',
              Condition: { StringEquals: { 'ec2:CreateAction': ['RunInstances', 'CreateImage'] } },
            },
            {
              Effect: 'Allow',
              Action: 'ec2:DeregisterImage',
              Resource: ec2Arn('image/*', false),
              Condition: { StringEquals: { 'ec2:ResourceTag/streamstack:created-by': 'gateway-health' } },
            },
            // Pruning: only images this function created, and their snapshots (CreateImage tags both).
            {
              Effect: 'Allow',
              Action: 'ec2:DeleteSnapshot',
              Resource: ec2Arn('snapshot/*', false),
              Condition: { StringEquals: { 'ec2:ResourceTag/streamstack:created-by': 'gateway-health' } },
            },
            Fn.conditionIf(params.hasGatewayInstanceRole.logicalId, {
              Effect: 'Allow',
              Action: 'iam:PassRole',
              Resource: params.ref('GatewayInstanceRoleArn'),
              Condition: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } },
            }, Aws.NO_VALUE),
            {
              Effect: 'Allow',
              Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Scan'],
              Resource: storage.gatewaysTable.attrArn,
            },
            { Effect: 'Allow', Action: 'sns:Publish', Resource: alarmTopic.ref },
            alarmTopicKeyUse,
          ],
        },
      ],
    });
    // TaskSubnetIds defaults to empty (see ingest.ts): cfn-lint's W1033 on the VpcConfig Split.
    this.gatewayHealth.cfnFunction.addMetadata('cfn-lint', { config: { ignore_checks: ['W1033'] } });
    this.gatewayHealth.addSchedule('Check', params.ref('GatewayCheckSchedule'),
      'Gateway status checks, health URLs, reboot/recovery, image backups');
    // Instance state-change events carry no tags: the function ignores non-gateways.
    this.stateChangeRuleQueue = this.gatewayHealth.addEventBridgeRule('StateChange', {
      source: ['aws.ec2'],
      'detail-type': ['EC2 Instance State-change Notification'],
      detail: { state: ['stopped', 'terminated'] },
    }, EVENT_RETRY);
  }
}
