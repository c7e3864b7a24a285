// Devices: the reconciler, the streamer cluster, and the `streamer pull` task definition it
// runs (roles, log group, security group).
import { Aws, Fn } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { Params } from './params';
import { Network } from './network';
import { FunctionGlobals, SamFunction, awsManagedPolicy, deadLetterQueue, ecsTaskRoleTrust, ecsTasksTrust, named, policyDocument } from './sam';
import { Storage } from './storage';

/** Only records that can change the desired set invoke the reconciler (template.yaml explains). */
const DEVICE_CHANGE_FILTERS = [
  '{"dynamodb": {"OldImage": {"id": {"S": [{"exists": false}]}}}}',
  '{"dynamodb": {"NewImage": {"id": {"S": [{"exists": false}]}}}}',
  '{"dynamodb": {"OldImage": {"status": {"S": [{"anything-but": ["online"]}]}}}}',
  '{"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["online"]}]}}}}',
  '{"dynamodb": {"NewImage": {"enabled": {"BOOL": [false]}}}}',
];

export class Devices extends Construct {
  readonly cluster: ecs.CfnCluster;
  readonly pullTaskDefinition: ecs.CfnTaskDefinition;
  readonly pullTaskSecurityGroup: ec2.CfnSecurityGroup;
  readonly deadLetterQueue: sqs.CfnQueue;
  readonly reconciler: SamFunction;

  /** streamerImage: the image URI (StreamerImage, else the repository's :latest). */
  constructor(scope: Construct, id: string, params: Params, globals: FunctionGlobals, storage: Storage,
    network: Network, streamerImage: string) {
    super(scope, id);

    this.cluster = named(new ecs.CfnCluster(this, 'StreamerCluster', {
      clusterSettings: [{ name: 'containerInsights', value: params.ref('ContainerInsights') }],
    }), 'StreamerCluster');

    const logGroup = named(new logs.CfnLogGroup(this, 'PullTaskLogGroup', {
      retentionInDays: params.num('StreamerLogRetentionDays'),
    }), 'PullTaskLogGroup');

    // The streamer in a pull task: objects under devices/ and signed/devices/ only, its slot
    // and devices, their stream state (UpdateItem; no Put/Delete on the devices table).
    const taskRole = named(new iam.CfnRole(this, 'PullTaskRole', {
      assumeRolePolicyDocument: ecsTaskRoleTrust(),
      policies: [{
        policyName: 'devices',
        policyDocument: policyDocument([
          {
            Effect: 'Allow',
            Action: ['s3:PutObject', 's3:PutObjectTagging', 's3:GetObject', 's3:DeleteObject'],
            Resource: [Fn.sub('${MediaBucket.Arn}/devices/*'), Fn.sub('${MediaBucket.Arn}/signed/devices/*')],
          },
          // A missing playlist (a new device) reads as 404, not 403.
          {
            Effect: 'Allow',
            Action: 's3:ListBucket',
            Resource: storage.mediaBucket.attrArn,
            Condition: { StringLike: { 's3:prefix': ['devices/*', 'signed/devices/*'] } },
          },
          {
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:UpdateItem'],
            Resource: storage.devicesTable.attrArn,
          },
          { Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: storage.slotsTable.attrArn },
        ]),
      }],
    }), 'PullTaskRole');

    // Used by ECS to start a pull task: image, log stream, MEDIA_URL_KEY (this secret only).
    const executionRole = named(new iam.CfnRole(this, 'PullTaskExecutionRole', {
      assumeRolePolicyDocument: ecsTasksTrust(),
      managedPolicyArns: [awsManagedPolicy('service-role/AmazonECSTaskExecutionRolePolicy')],
      policies: [{
        policyName: 'media-url-key',
        policyDocument: policyDocument([
          { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: storage.mediaUrlKey.ref },
        ]),
      }],
    }), 'PullTaskExecutionRole');

    // `streamer pull` following one slot (PULL_ASSIGNMENT in a container override).
    this.pullTaskDefinition = named(new ecs.CfnTaskDefinition(this, 'PullTaskDefinition', {
      family: Fn.sub('${AWS::StackName}-streamer-pull'),
      requiresCompatibilities: ['FARGATE'],
      networkMode: 'awsvpc',
      cpu: params.ref('PullTaskCpu'),
      memory: params.ref('PullTaskMemory'),
      runtimePlatform: {
        operatingSystemFamily: 'LINUX',
        cpuArchitecture: Fn.conditionIf(params.isArm64.logicalId, 'ARM64', 'X86_64').toString(),
      },
      executionRoleArn: executionRole.attrArn,
      taskRoleArn: taskRole.attrArn,
      containerDefinitions: [{
        name: 'streamer',
        image: streamerImage,
        essential: true,
        command: ['pull'],
        // SIGTERM drains within STREAMER_DRAIN_SECS, below the SIGKILL StopTimeout (120 max on Fargate).
        stopTimeout: 120,
        environment: [
          { name: 'DEVICES_TABLE', value: storage.devicesTable.ref },
          { name: 'SLOTS_TABLE', value: storage.slotsTable.ref },
          { name: 'MEDIA_BUCKET', value: storage.mediaBucket.ref },
          { name: 'STREAMER_DRAIN_SECS', value: '90' },
          { name: 'RUST_LOG', value: 'info' },
        ],
        secrets: [{ name: 'MEDIA_URL_KEY', valueFrom: storage.mediaUrlKey.ref }],
        logConfiguration: {
          logDriver: 'awslogs',
          options: {
            'awslogs-group': logGroup.ref,
            'awslogs-region': Aws.REGION,
            'awslogs-stream-prefix': 'pull',
          },
        },
      }],
    }), 'PullTaskDefinition');

    // Outbound only; unicast udp:// sources and RTSP over UDP need PullUdpIngressCidr.
    this.pullTaskSecurityGroup = named(new ec2.CfnSecurityGroup(this, 'PullTaskSecurityGroup', {
      groupDescription: 'streamstack streamer pull tasks (outbound only)',
      vpcId: network.vpcId,
      securityGroupEgress: [{
        ipProtocol: '-1',
        cidrIp: '0.0.0.0/0',
        description: 'Cameras (RTSP, RTSPS, UDP) and AWS endpoints (ECR, S3, DynamoDB, Secrets Manager, Logs)',
      }],
    }), 'PullTaskSecurityGroup');
    const udpIngress = named(new ec2.CfnSecurityGroupIngress(this, 'PullTaskUdpIngress', {
      groupId: this.pullTaskSecurityGroup.attrGroupId,
      ipProtocol: 'udp',
      fromPort: 1024,
      toPort: 65535,
      cidrIp: params.ref('PullUdpIngressCidr'),
      description: 'Unicast udp:// sources and RTSP over UDP (PullUdpIngressCidr)',
    }), 'PullTaskUdpIngress');
    udpIngress.cfnOptions.condition = params.hasPullUdpIngress;

    this.deadLetterQueue = deadLetterQueue(this, 'ReconcilerDeadLetterQueue');

    const inCluster = { ArnEquals: { 'ecs:cluster': this.cluster.attrArn } };
    this.reconciler = new SamFunction(this, 'ReconcilerFunction', globals, {
      binary: 'reconciler',
      logGroup: 'ReconcilerLogGroup',
      description: 'Keeps streamer pull tasks matched to online devices (functions/devices)',
      timeout: 300,
      memorySize: 256,
      // A failed scheduled run is not retried: the next tick is the retry.
      eventInvokeConfig: { maximumRetryAttempts: 0, maximumEventAgeInSeconds: 60 },
      environment: {
        DEVICES_TABLE: storage.devicesTable.ref,
        SLOTS_TABLE: storage.slotsTable.ref,
        DEVICES_PER_TASK: params.ref('DevicesPerTask'),
        DEVICE_ONLINE_WINDOW_SECS: params.ref('DeviceOnlineWindowSeconds'),
        DEVICE_AGE_OUT_SECS: params.ref('DeviceAgeOutSeconds'),
        ECS_CLUSTER: this.cluster.ref,
        STREAMER_TASK_DEFINITION: this.pullTaskDefinition.ref,
        STREAMER_CONTAINER: 'streamer',
        TASK_SUBNETS: network.taskSubnetsCsv,
        TASK_SECURITY_GROUPS: this.pullTaskSecurityGroup.attrGroupId,
        TASK_ASSIGN_PUBLIC_IP: network.assignPublicIp,
        RECONCILER_DRY_RUN: params.ref('ReconcilerDryRun'),
        MAX_TASK_STARTS_PER_RUN: params.ref('MaxTaskStartsPerRun'),
      },
      policies: [{
        statements: [
          {
            Effect: 'Allow',
            Action: [
              'dynamodb:Scan', 'dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:PutItem',
              'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:ConditionCheckItem',
            ],
            Resource: [storage.devicesTable.attrArn, Fn.sub('${DevicesTable.Arn}/index/*'), storage.slotsTable.attrArn],
          },
          // The devices table's stream (ReconcilerFunctionDeviceChanges); ListStreams supports
          // no resource-level permission.
          {
            Effect: 'Allow',
            Action: ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator'],
            Resource: storage.devicesTable.attrStreamArn,
          },
          { Effect: 'Allow', Action: 'dynamodb:ListStreams', Resource: '*' },
          // Failed stream batches (the mapping's on-failure destination).
          { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: this.deadLetterQueue.attrArn },
          {
            Effect: 'Allow',
            Action: 'ecs:RunTask',
            Resource: Fn.sub('arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task-definition/${AWS::StackName}-streamer-pull:*'),
            Condition: inCluster,
          },
          {
            Effect: 'Allow',
            Action: 'ecs:TagResource',
            Resource: '*',
            Condition: { StringEquals: { 'ecs:CreateAction': 'RunTask' } },
          },
          { Effect: 'Allow', Action: 'ecs:ListTasks', Resource: '*', Condition: inCluster },
          {
            Effect: 'Allow',
            Action: ['ecs:DescribeTasks', 'ecs:StopTask'],
            Resource: Fn.sub('arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${StreamerCluster}/*'),
            Condition: inCluster,
          },
          {
            Effect: 'Allow',
            Action: 'iam:PassRole',
            Resource: [taskRole.attrArn, executionRole.attrArn],
            Condition: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
          },
        ],
      }],
    });
    this.reconciler.addSchedule('Schedule', params.ref('ReconcileSchedule'),
      'Periodic full reconcile of devices and streamer pull tasks');
    // Device changes invoke the reconciler at once: a plain mapping, not a SAM `DynamoDB`
    // event (which attaches AWSLambdaDynamoDBExecutionRole, every stream in the account); the
    // policy above reads this one stream. A batch still failing after bisecting and 3
    // retries goes to the queue; the next scheduled run repairs what it missed.
    named(new lambda.CfnEventSourceMapping(this, 'ReconcilerFunctionDeviceChanges', {
      functionName: this.reconciler.ref,
      eventSourceArn: storage.devicesTable.attrStreamArn,
      startingPosition: 'LATEST',
      batchSize: 100,
      maximumBatchingWindowInSeconds: 10,
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: 3,
      destinationConfig: { onFailure: { destination: this.deadLetterQueue.attrArn } },
      filterCriteria: { filters: DEVICE_CHANGE_FILTERS.map((pattern) => ({ pattern })) },
    }), 'ReconcilerFunctionDeviceChanges');
  }
}
