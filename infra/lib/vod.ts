// The VOD pipeline: S3 inputs/ -> VodTriggerFunction -> MediaConvert -> EventBridge ->
// VodJobStateFunction -> AssetsTopic.
import { Aws, Fn } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { Params } from './params';
import { FunctionGlobals, SamFunction, deadLetterQueue, mediaBucketArn, named, policyDocument } from './sam';
import { Storage } from './storage';

const EVENT_RETRY = { maximumRetryAttempts: 185, maximumEventAgeInSeconds: 86400 };

export class Vod extends Construct {
  readonly assetsTopic: sns.CfnTopic;
  readonly deadLetterQueue: sqs.CfnQueue;
  readonly trigger: SamFunction;
  readonly jobState: SamFunction;
  readonly jobStateDeadLetterQueue: sqs.CfnQueue;
  /** The JobStateChange rule's dead-letter queue (events EventBridge could not deliver). */
  readonly jobStateRuleQueue: sqs.CfnQueue;

  constructor(scope: Construct, id: string, params: Params, globals: FunctionGlobals, storage: Storage) {
    super(scope, id);

    this.assetsTopic = named(new sns.CfnTopic(this, 'AssetsTopic', {
      displayName: 'streamstack assets',
      kmsMasterKeyId: 'alias/aws/sns',
    }), 'AssetsTopic');

    // Assumed by MediaConvert for each job: reads inputs/, writes outputs/ (signed/outputs/ for
    // assets with playback=signed), nothing else.
    const mediaConvertRole = named(new iam.CfnRole(this, 'MediaConvertRole', {
      assumeRolePolicyDocument: policyDocument([{
        Effect: 'Allow',
        Principal: { Service: 'mediaconvert.amazonaws.com' },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }]),
      policies: [{
        policyName: 'media-bucket',
        policyDocument: policyDocument([
          { Effect: 'Allow', Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: mediaBucketArn('/inputs/*') },
          {
            Effect: 'Allow',
            Action: 's3:PutObject',
            Resource: [mediaBucketArn('/outputs/*'), mediaBucketArn('/signed/outputs/*')],
          },
        ]),
      }],
    }), 'MediaConvertRole');

    this.deadLetterQueue = deadLetterQueue(this, 'VodTriggerDeadLetterQueue');

    this.trigger = new SamFunction(this, 'VodTriggerFunction', globals, {
      binary: 'vod-trigger',
      logGroup: 'VodTriggerLogGroup',
      description: 'S3 inputs/ upload -> MediaConvert job (functions/vod)',
      // Shorter than the asset claim lease (5 min), so a timed-out claim expires before a retry.
      timeout: 60,
      deadLetterQueueArn: this.deadLetterQueue.attrArn,
      eventInvokeConfig: { maximumRetryAttempts: 2 },
      environment: {
        ASSETS_TABLE: storage.assetsTable.ref,
        STACK_NAME: Aws.STACK_NAME,
        MEDIACONVERT_ROLE_ARN: mediaConvertRole.attrArn,
        ASSETS_TOPIC_ARN: this.assetsTopic.ref,
        VOD_PRESETS: params.ref('VodPresets'),
        VOD_SEGMENT_LENGTH: params.ref('VodSegmentLength'),
        VOD_THUMBNAIL_INTERVAL: params.ref('VodThumbnailInterval'),
        // playback of new assets (outputs/ or signed/outputs/) unless the sidecar says.
        PLAYBACK_DEFAULT: params.ref('PlaybackDefault'),
      },
      policies: [{
        statements: [
          {
            Effect: 'Allow',
            Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
            Resource: storage.assetsTable.attrArn,
          },
          { Effect: 'Allow', Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: mediaBucketArn('/inputs/*') },
          // Lets a missing sidecar answer 404 instead of 403.
          {
            Effect: 'Allow',
            Action: 's3:ListBucket',
            Resource: mediaBucketArn(),
            Condition: { StringLike: { 's3:prefix': 'inputs/*' } },
          },
          {
            Effect: 'Allow',
            Action: 'mediaconvert:CreateJob',
            Resource: Fn.sub('arn:${AWS::Partition}:mediaconvert:${AWS::Region}:${AWS::AccountId}:*'),
          },
          {
            Effect: 'Allow',
            Action: 'iam:PassRole',
            Resource: mediaConvertRole.attrArn,
            Condition: { StringEquals: { 'iam:PassedToService': 'mediaconvert.amazonaws.com' } },
          },
          { Effect: 'Allow', Action: 'sns:Publish', Resource: this.assetsTopic.ref },
        ],
      }],
    });

    const invokePermission = named(new lambda.CfnPermission(this, 'VodTriggerInvokePermission', {
      functionName: this.trigger.arn,
      action: 'lambda:InvokeFunction',
      principal: 's3.amazonaws.com',
      sourceAccount: Aws.ACCOUNT_ID,
      sourceArn: mediaBucketArn(),
    }), 'VodTriggerInvokePermission');
    storage.connectVodTrigger(this.trigger.arn, invokePermission);

    // Invocations that still failed after Lambda's two async retries (MediaConvert job events);
    // the rule's own dead-letter queue only holds events EventBridge could not deliver.
    this.jobStateDeadLetterQueue = deadLetterQueue(this, 'VodJobStateDeadLetterQueue');
    this.jobState = new SamFunction(this, 'VodJobStateFunction', globals, {
      binary: 'vod-job-state',
      logGroup: 'VodJobStateLogGroup',
      description: 'MediaConvert job state changes -> asset status + SNS (functions/vod)',
      timeout: 30,
      deadLetterQueueArn: this.jobStateDeadLetterQueue.attrArn,
      environment: {
        ASSETS_TABLE: storage.assetsTable.ref,
        STACK_NAME: Aws.STACK_NAME,
        ASSETS_TOPIC_ARN: this.assetsTopic.ref,
      },
      policies: [{
        statements: [
          { Effect: 'Allow', Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'], Resource: storage.assetsTable.attrArn },
          {
            Effect: 'Allow',
            Action: 's3:ListBucket',
            Resource: storage.mediaBucket.attrArn,
            Condition: { StringLike: { 's3:prefix': ['outputs/*', 'signed/outputs/*'] } },
          },
          { Effect: 'Allow', Action: 'sns:Publish', Resource: this.assetsTopic.ref },
        ],
      }],
    });
    this.jobStateRuleQueue = this.jobState.addEventBridgeRule('JobStateChange', {
      source: ['aws.mediaconvert'],
      'detail-type': ['MediaConvert Job State Change'],
      detail: { userMetadata: { 'streamstack-stack': [Aws.STACK_NAME] } },
    }, EVENT_RETRY);
  }
}

export { EVENT_RETRY };
