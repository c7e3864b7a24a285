// Operational alarms: the SNS topic the health functions publish to (with an optional e-mail
// subscription), and the CloudWatch alarms that notify it: Lambda errors, dead-letter queue
// depth, ingest CPU, device crash loops.
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Aws, CfnCondition, Fn } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { Params } from './params';
import { SamFunction, named } from './sam';

export class AlarmTopic extends Construct {
  readonly topic: sns.CfnTopic;
  /** The topic's key (logical ID AlarmTopicKey): publishers need kms:GenerateDataKey/Decrypt on it. */
  readonly key: kms.CfnKey;

  constructor(scope: Construct, id: string, params: Params) {
    super(scope, id);
    // CloudWatch alarms publish as cloudwatch.amazonaws.com, which the AWS managed aws/sns key
    // never admits: the alarm topic has its own key that does.
    this.key = named(new kms.CfnKey(this, 'AlarmTopicKey', {
      description: Fn.sub('${AWS::StackName} alarm topic encryption (CloudWatch alarms may use it)'),
      enableKeyRotation: true,
      keyPolicy: {
        Version: '2012-10-17',
        Statement: [
          // The account administers and uses the key through IAM policies.
          {
            Sid: 'AccountAdministers',
            Effect: 'Allow',
            Principal: { AWS: Fn.sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:root') },
            Action: [
              'kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:PutKeyPolicy', 'kms:GetKeyRotationStatus',
              'kms:EnableKeyRotation', 'kms:DisableKeyRotation', 'kms:ListResourceTags', 'kms:TagResource',
              'kms:UntagResource', 'kms:EnableKey', 'kms:DisableKey', 'kms:ScheduleKeyDeletion',
              'kms:CancelKeyDeletion', 'kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey',
            ],
            Resource: '*',
          },
          {
            Sid: 'CloudWatchAlarmsPublish',
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
            Resource: '*',
            Condition: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
          },
        ],
      },
    }), 'AlarmTopicKey');
    this.topic = named(new sns.CfnTopic(this, 'AlarmTopic', {
      displayName: 'streamstack alarms',
      kmsMasterKeyId: this.key.ref,
    }), 'AlarmTopic');
    const subscription = named(new sns.CfnSubscription(this, 'AlarmEmailSubscription', {
      topicArn: this.topic.ref,
      protocol: 'email',
      endpoint: params.ref('AlarmEmail'),
    }), 'AlarmEmailSubscription');
    subscription.cfnOptions.condition = params.hasAlarmEmail;
  }
}

export interface AlarmsProps {
  readonly topic: sns.CfnTopic;
  /** Alarm logical-ID prefix -> function (`<prefix>ErrorsAlarm`). */
  readonly functions: Record<string, SamFunction>;
  /** Alarm logical ID -> [queue, what its messages are]. */
  readonly deadLetterQueues: Record<string, [sqs.CfnQueue, string]>;
  readonly cluster: ecs.CfnCluster;
  readonly ingestService: ecs.CfnService;
  readonly ingestLoadBalancer: elbv2.CfnLoadBalancer;
  /** The RTMP target group (logical ID RtmpTargetGroup). */
  readonly rtmpTargetGroup: elbv2.CfnTargetGroup;
  /** Condition HasStreamerImage (the ingest service runs tasks only with an image). */
  readonly hasStreamerImage: CfnCondition;
  /** TaskHealthFunction's log group (logical ID TaskHealthLogGroup). */
  readonly taskHealthLogGroup: string;
}

export class Alarms extends Construct {
  constructor(scope: Construct, id: string, props: AlarmsProps) {
    super(scope, id);
    const alarm = (logicalId: string, p: Omit<cloudwatch.CfnAlarmProps, 'alarmActions'>) =>
      named(new cloudwatch.CfnAlarm(this, logicalId, {
        ...p,
        treatMissingData: p.treatMissingData ?? 'notBreaching',
        alarmActions: [props.topic.ref],
      }), logicalId);
    const atLeastOne = { threshold: 1, comparisonOperator: 'GreaterThanOrEqualToThreshold', evaluationPeriods: 1, period: 300 };

    for (const [prefix, fn] of Object.entries(props.functions)) {
      alarm(`${prefix}ErrorsAlarm`, {
        alarmDescription: Fn.sub(`\${${fn.logicalId}} returned errors (see its log group)`),
        namespace: 'AWS/Lambda',
        metricName: 'Errors',
        dimensions: [{ name: 'FunctionName', value: fn.ref }],
        statistic: 'Sum',
        ...atLeastOne,
      });
    }

    for (const [logicalId, [queue, what]] of Object.entries(props.deadLetterQueues)) {
      alarm(logicalId, {
        alarmDescription: `Messages in a dead-letter queue (${what}); redrive after fixing the cause`,
        namespace: 'AWS/SQS',
        metricName: 'ApproximateNumberOfMessagesVisible',
        dimensions: [{ name: 'QueueName', value: queue.attrQueueName }],
        statistic: 'Maximum',
        ...atLeastOne,
      });
    }

    alarm('IngestCpuAlarm', {
      alarmDescription: 'Ingest service CPU above 85 % for 15 minutes (at IngestMaxCount, or scaling too slowly)',
      namespace: 'AWS/ECS',
      metricName: 'CPUUtilization',
      dimensions: [
        { name: 'ClusterName', value: props.cluster.ref },
        { name: 'ServiceName', value: props.ingestService.attrName },
      ],
      statistic: 'Average',
      period: 300,
      evaluationPeriods: 3,
      threshold: 85,
      comparisonOperator: 'GreaterThanThreshold',
    });

    // The ingest service itself: no healthy task behind the RTMP listener (crash loop, failed
    // health checks, capacity) - publishers cannot connect.
    const healthyHosts = alarm('IngestHealthyHostsAlarm', {
      alarmDescription: 'No healthy ingest task behind the load balancer for 10 minutes (RTMP publishes fail)',
      namespace: 'AWS/NetworkELB',
      metricName: 'HealthyHostCount',
      dimensions: [
        { name: 'LoadBalancer', value: props.ingestLoadBalancer.attrLoadBalancerFullName },
        { name: 'TargetGroup', value: props.rtmpTargetGroup.attrTargetGroupFullName },
      ],
      statistic: 'Minimum',
      period: 300,
      evaluationPeriods: 2,
      threshold: 1,
      comparisonOperator: 'LessThanThreshold',
      treatMissingData: 'breaching',
    });
    healthyHosts.cfnOptions.condition = props.hasStreamerImage;

    // task-health logs each device it marks failed (a crash loop): counted into a metric.
    const metricName = Fn.sub('${AWS::StackName}-crash-loops');
    named(new logs.CfnMetricFilter(this, 'CrashLoopMetricFilter', {
      logGroupName: props.taskHealthLogGroup,
      filterPattern: '{ $.fields.message = "device task stopped" && $.fields.action = "failed" }',
      metricTransformations: [{ metricNamespace: 'streamstack', metricName, metricValue: '1', defaultValue: 0 }],
    }), 'CrashLoopMetricFilter');
    alarm('CrashLoopAlarm', {
      alarmDescription: "A device's pull task crash-looped and the device was marked failed (PUT/PATCH the device to retry)",
      namespace: 'streamstack',
      metricName,
      statistic: 'Sum',
      ...atLeastOne,
    });
  }
}
