// The streamstack stack: the same resources, parameters, conditions and outputs as
// ../template.yaml after the SAM transform (see README.md for the few differences).
import { CfnOutput, CfnRule, DefaultStackSynthesizer, Fn, Stack, StackProps } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { Alarms } from './alarms';
import { Api } from './api';
import { Devices } from './devices';
import { Health } from './health';
import { Params } from './params';
import { FunctionGlobals } from './sam';
import { Storage } from './storage';
import { Vod } from './vod';

export interface StreamstackStackProps extends StackProps {
  /** The CPU the Lambda code is built for: x86_64 or arm64 (CDK context `architecture`). */
  readonly architecture: 'x86_64' | 'arm64';
}

export class StreamstackStack extends Stack {
  constructor(scope: Construct, id: string, props: StreamstackStackProps) {
    super(scope, id, {
      // No BootstrapVersion parameter or rule: the Parameters stay exactly template.yaml's.
      synthesizer: new DefaultStackSynthesizer({ generateBootstrapVersionRule: false }),
      description: 'streamstack - serverless live + VOD video platform: channel and asset API (Lambda behind '
        + 'an IAM-authorized HTTP API), channel and asset tables (DynamoDB), media bucket (S3) served through '
        + 'CloudFront, VOD pipeline (S3 inputs/ -> MediaConvert -> EventBridge -> SNS).',
      ...props,
    });

    const params = new Params(this, props.architecture);
    // The Lambda code is compiled at synth for one CPU, so the Architecture parameter may
    // only take that value (its default); the pull tasks follow the same parameter.
    new CfnRule(this, 'ArchitectureMatchesLambdaBuild', {
      assertions: [{
        assert: Fn.conditionEquals(params.ref('Architecture'), props.architecture),
        assertDescription: `The Lambda code in this synthesized template is built for ${props.architecture}: `
          + `deploy with Architecture=${props.architecture}, or synthesize again with -c architecture=<arch>.`,
      }],
    });
    const globals: FunctionGlobals = {
      architectureRef: params.ref('Architecture'),
      buildArchitecture: props.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
    };

    const storage = new Storage(this, 'Storage', params);
    const alarms = new Alarms(this, 'Alarms');
    const api = new Api(this, 'Api', params, globals, storage);
    const vod = new Vod(this, 'Vod', params, globals, storage);
    const devices = new Devices(this, 'Devices', params, globals, storage);
    new Health(this, 'Health', params, globals, storage, devices, alarms.topic);

    const output = (name: string, description: string, value: string) =>
      new CfnOutput(this, name, { description, value });
    output('ApiUrl', 'Base URL of the channel and asset API (requests must be SigV4-signed, service execute-api).', api.url);
    output('ChannelsTableName', 'DynamoDB table of channels (CHANNELS_TABLE for the streamer).', storage.channelsTable.ref);
    output('MediaBucketName', 'S3 bucket receiving HLS output (MEDIA_BUCKET for the streamer).', storage.mediaBucket.ref);
    output('PlaybackBaseUrl', 'CloudFront base URL of HLS playback.', storage.playbackBaseUrl);
    output('AssetsTableName', 'DynamoDB table of VOD assets.', storage.assetsTable.ref);
    output('AssetsTopicArn', 'SNS topic announcing assets that reach COMPLETE or ERROR.', vod.assetsTopic.ref);
    output('VodInputsUri', 'Upload media here (a sidecar <name>.json beside it may choose settings).',
      Fn.sub('s3://${MediaBucket}/inputs/'));
    output('VodTriggerDeadLetterQueueUrl', 'S3 events the trigger could not handle after retries.', vod.deadLetterQueue.ref);
    output('DevicesTableName', 'DynamoDB table of devices (DEVICES_TABLE).', storage.devicesTable.ref);
    output('SlotsTableName', 'DynamoDB table of streamer task slots (SLOTS_TABLE).', storage.slotsTable.ref);
    output('StreamerClusterName', 'ECS cluster running the streamer pull tasks (ECS_CLUSTER).', devices.cluster.ref);
    output('PullTaskDefinitionArn', 'Task definition of `streamer pull` (STREAMER_TASK_DEFINITION).', devices.pullTaskDefinition.ref);
    output('MediaUrlKeyArn', 'Secrets Manager secret holding MEDIA_URL_KEY (retained with the tables).', storage.mediaUrlKey.ref);
    output('ReconcilerDeadLetterQueueUrl', 'Device-stream batches the reconciler failed after bisecting and retries.',
      devices.deadLetterQueue.ref);
    output('AlarmTopicArn', 'SNS topic of operational alarms (device crash loops, gateway recoveries).', alarms.topic.ref);
    output('GatewaysTableName', 'Gateway health state (phase, recovery lock) per gateway.', storage.gatewaysTable.ref);
  }
}
