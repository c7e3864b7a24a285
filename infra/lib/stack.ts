// The streamstack stack: the same resources, parameters, conditions, rules and outputs as
// ../template.yaml after the SAM transform (see README.md for the few differences).
import { CfnCondition, CfnOutput, CfnRule, DefaultStackSynthesizer, Fn, Stack, StackProps } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { AlarmTopic, Alarms } from './alarms';
import { Api } from './api';
import { Devices } from './devices';
import { Egress } from './egress';
import { Health } from './health';
import { StreamerImage } from './image';
import { Ingest } from './ingest';
import { Network } from './network';
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
      description: 'streamstack - serverless live + VOD video platform: channel, asset and device API (Lambda '
        + 'behind an IAM-authorized HTTP API), tables (DynamoDB), media bucket (S3) served through CloudFront, '
        + 'live ingest (streamer ECS service behind a Network Load Balancer: RTMP, RTMPS, SRT), camera pulls '
        + '(Fargate tasks kept by the reconciler), VOD pipeline (S3 inputs/ -> MediaConvert -> EventBridge -> SNS), '
        + 'health handlers and CloudWatch alarms.',
      ...props,
    });

    const params = new Params(this, props.architecture);
    // The Lambda code is compiled at synth for one CPU, so the Architecture parameter may
    // only take that value (its default); the streamer tasks follow the same parameter.
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
      tracingMode: Fn.conditionIf(params.hasTracing.logicalId, 'Active', 'PassThrough').toString(),
      logRetentionDays: params.num('LogRetentionDays'),
    };

    const network = new Network(this, 'Network', params);
    const storage = new Storage(this, 'Storage', params);
    const image = new StreamerImage(this, 'Image', params);
    const alarmTopic = new AlarmTopic(this, 'AlarmTopic', params);
    const devices = new Devices(this, 'Devices', params, globals, storage, network, image.uri);
    const ingest = new Ingest(this, 'Ingest', params, storage, network, devices.cluster, image.uri);
    const api = new Api(this, 'Api', params, globals, storage, ingest.endpoints(params));
    const egress = new Egress(this, 'Egress', params, {
      cluster: devices.cluster,
      streamerImage: image.uri,
      httpApiId: api.httpApi.ref,
      apiUrl: api.url,
      executionRole: ingest.executionRole,
    });
    const vod = new Vod(this, 'Vod', params, globals, storage);
    const health = new Health(this, 'Health', params, globals, storage, devices, network, alarmTopic.topic,
      alarmTopic.key);
    new Alarms(this, 'Alarms', {
      topic: alarmTopic.topic,
      functions: {
        ChannelsApi: api.function,
        VodTrigger: vod.trigger,
        VodJobState: vod.jobState,
        Reconciler: devices.reconciler,
        TaskHealth: health.taskHealth,
        GatewayHealth: health.gatewayHealth,
      },
      deadLetterQueues: {
        VodTriggerDeadLettersDepthAlarm: [vod.deadLetterQueue, 'S3 events vod-trigger failed'],
        VodJobStateDeadLettersDepthAlarm: [vod.jobStateDeadLetterQueue, 'MediaConvert job events VodJobStateFunction failed'],
        TaskHealthDeadLettersDepthAlarm: [health.taskHealthDeadLetterQueue, 'ECS task events TaskHealthFunction failed'],
        GatewayHealthDeadLettersDepthAlarm: [health.gatewayHealthDeadLetterQueue,
          'gateway checks and EC2 instance events GatewayHealthFunction failed'],
        ReconcilerDeadLettersDepthAlarm: [devices.deadLetterQueue, 'device stream batches the reconciler failed'],
        VodJobStateJobStateQueueDepthAlarm: [vod.jobStateRuleQueue, 'MediaConvert job events vod-job-state failed'],
        TaskHealthTaskStoppedQueueDepthAlarm: [health.taskStoppedRuleQueue, 'ECS task events task-health failed'],
        GatewayHealthStateChangeQueueDepthAlarm: [health.stateChangeRuleQueue, 'EC2 instance events gateway-health failed'],
      },
      cluster: devices.cluster,
      ingestService: ingest.service,
      ingestLoadBalancer: ingest.loadBalancer,
      rtmpTargetGroup: ingest.rtmpTargetGroup,
      hasStreamerImage: params.hasStreamerImage,
      taskHealthLogGroup: health.taskHealth.logGroup.ref,
    });

    // Construct ids get a prefix (IngestHost and RtmpsPort are parameters too); logical IDs do not.
    const output = (name: string, description: string, value: string, condition?: CfnCondition) =>
      new CfnOutput(this, `Output${name}`, { description, value, condition }).overrideLogicalId(name);
    output('ApiUrl', 'Base URL of the channel and asset API (requests must be SigV4-signed, service execute-api).', api.url);
    output('ChannelsTableName', 'DynamoDB table of channels (CHANNELS_TABLE for the streamer).', storage.channelsTable.ref);
    output('MediaBucketName', 'S3 bucket receiving HLS output (MEDIA_BUCKET for the streamer).', storage.mediaBucket.ref);
    output('PlaybackBaseUrl', 'Base URL of HLS playback (https://<PlaybackDomainName> when set, else the CloudFront '
      + 'domain).', storage.playbackBaseUrl);
    output('AssetsTableName', 'DynamoDB table of VOD assets.', storage.assetsTable.ref);
    output('AssetsTopicArn', 'SNS topic announcing assets that reach COMPLETE or ERROR.', vod.assetsTopic.ref);
    output('VodInputsUri', 'Upload media here (a sidecar <name>.json beside it may choose settings).',
      Fn.sub('s3://${MediaBucket}/inputs/'));
    output('VodTriggerDeadLetterQueueUrl', 'S3 events the trigger could not handle after retries.', vod.deadLetterQueue.ref);
    output('DevicesTableName', 'DynamoDB table of devices (DEVICES_TABLE).', storage.devicesTable.ref);
    output('SlotsTableName', 'DynamoDB table of streamer task slots (SLOTS_TABLE).', storage.slotsTable.ref);
    output('StreamerClusterName', 'ECS cluster of the streamer tasks (ECS_CLUSTER): pull and ingest on Fargate; '
      + 'register on-premises hosts here for `streamer egress` (ECS Anywhere, launch type EXTERNAL).', devices.cluster.ref);
    output('PullTaskDefinitionArn', 'Task definition of `streamer pull` (STREAMER_TASK_DEFINITION).', devices.pullTaskDefinition.ref);
    output('EgressTaskDefinitionArn', 'Task definition of `streamer egress` for ECS Anywhere hosts (aws ecs run-task '
      + '--launch-type EXTERNAL --task-definition <this>).', egress.taskDefinition.ref);
    output('EgressServiceName', 'ECS service keeping EgressDesiredCount egress tasks on the registered hosts.',
      egress.service.attrName, params.hasEgressService);
    output('MediaUrlKeyArn', 'Secrets Manager secret holding MEDIA_URL_KEY (retained with the tables).', storage.mediaUrlKey.ref);
    output('ReconcilerDeadLetterQueueUrl', 'Device-stream batches the reconciler failed after bisecting and retries.',
      devices.deadLetterQueue.ref);
    output('AlarmTopicArn', 'SNS topic of operational alarms (device crash loops, gateway recoveries).', alarmTopic.topic.ref);
    output('GatewaysTableName', 'Gateway health state (phase, recovery lock) per gateway.', storage.gatewaysTable.ref);
    output('IngestHost', 'Host name of the ingest (rtmp://<this>:1935/live; GET /channels/{id}/endpoints gives signed '
      + 'URLs).', ingest.hostName(params));
    output('IngestLoadBalancerDnsName', "DNS name of the ingest load balancer (point your ingest hostname's CNAME here).",
      ingest.loadBalancer.attrDnsName);
    output('RtmpsPort', 'RTMPS port on the load balancer (TLS with IngestCertificateArn).', params.ref('RtmpsPort'),
      params.hasRtmps);
    output('SrtIngestAddress', 'SRT caller target (srt://<this>?streamid=<signed stream key>).',
      Fn.sub('${Host}:9000', { Host: ingest.hostName(params) }), params.hasSrt);
    output('PlaybackDomain', 'Domain of HLS playback (live/, outputs/, devices/; signed/ with a signed URL or cookies): '
      + 'PlaybackDomainName when set, else the CloudFront domain.', storage.playbackDomain);
    output('PlaybackDistributionDomain', "CloudFront domain of the playback distribution (the target of "
      + "PlaybackDomainName's CNAME).", storage.distribution.attrDomainName);
    output('PlaybackKeyPairId', 'CloudFront public key id of signed playback (Key-Pair-Id of signed URLs and cookies, '
      + 'PLAYBACK_KEY_PAIR_ID).', storage.playback.publicKey.attrId, params.hasPlaybackKey);
    output('StreamerRepositoryUri', "ECR repository of the streamer image (push streamer/Dockerfile's image here).",
      image.repository.attrRepositoryUri);
    output('IngestServiceName', 'ECS service running `streamer serve`.', ingest.service.attrName);
    output('VpcIdUsed', 'VPC of the streamer tasks (created or given).', network.vpcId);
  }
}
