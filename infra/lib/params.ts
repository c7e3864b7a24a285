// The stack's CloudFormation Parameters and Conditions: the same names, types, defaults,
// constraints and allowed values as ../template.yaml, so one set of parameter overrides works
// for `sam deploy` and `cdk deploy`.
import { CfnCondition, CfnParameter, CfnParameterProps, CfnRule, Fn, ICfnConditionExpression, Stack } from 'aws-cdk-lib';

const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
  2192, 2557, 2922, 3288, 3653];

/** Numeric AllowedValues as numbers, as template.yaml writes them (CfnParameterProps types them
 * string[]; cfn-lint wants a Number parameter's Default and AllowedValues of one type). */
function numbers(values: number[]): string[] {
  return values as unknown as string[];
}

/** Parameter name -> definition, in template.yaml's order. */
const DEFINITIONS = {
  IngestDomainName: {
    type: 'String', default: '', allowedPattern: '^$|^[A-Za-z0-9.-]+$',
    description: 'Host name that push URLs (rtmp://<name>:1935, rtmps://<name>:<RtmpsPort>, srt://<name>:9000) '
      + "point at: your own name, a CNAME of the IngestLoadBalancerDnsName output. Empty (default) = the load "
      + "balancer's DNS name. Required with RTMPS (the certificate must match it).",
  },
  LiveOutputRetentionDays: {
    type: 'Number', default: 1, minValue: 1,
    description: 'Days live-only HLS output (not recordings) is kept before S3 expires it.',
  },
  Architecture: {
    type: 'String', default: 'x86_64', allowedValues: ['x86_64', 'arm64'],
    description: 'Lambda architecture, and the CPU of the streamer pull tasks (StreamerImage must be built for it). '
      + 'In the CDK app it must equal the `architecture` context value the Lambda code was built for '
      + '(a template Rule checks it).',
  },
  PushUrlTtlSeconds: {
    type: 'Number', default: 86400, minValue: 60,
    description: 'Lifetime of signed RTMP push URLs, in seconds.',
  },
  VodPresets: {
    type: 'String', default: '',
    description: 'JSON document replacing the built-in encoding presets (functions/vod/presets.json: named ABR '
      + 'ladders, MP4 rendition, thumbnail size, audio). Empty = built-in.',
  },
  VodSegmentLength: {
    type: 'Number', default: 6, minValue: 1, maxValue: 30,
    description: 'Default HLS segment length of VOD outputs, in seconds.',
  },
  VodThumbnailInterval: {
    type: 'Number', default: 10, minValue: 1, maxValue: 3600,
    description: 'Default interval between VOD thumbnails, in seconds.',
  },
  VpcId: {
    type: 'String', default: '', allowedPattern: '^$|^vpc-[0-9a-f]+$',
    description: 'Existing VPC of the streamer tasks (ingest service and pull tasks) and the ingest load balancer. '
      + 'Empty (default) = the stack creates a minimal VPC: two public subnets in two zones with an internet '
      + 'gateway, S3 and DynamoDB gateway endpoints, tasks with public IPs (no NAT gateway to pay for).',
  },
  VpcCidr: {
    type: 'String', default: '10.80.0.0/16', allowedPattern: '^(\\d{1,3}\\.){3}\\d{1,3}/(1[6-9]|2[0-2])$',
    description: 'CIDR (/16 to /22) of the VPC the stack creates when VpcId is empty (its subnets are the first two '
      + '/24 in it). Unused with an existing VpcId.',
  },
  TaskSubnetIds: {
    type: 'CommaDelimitedList', default: '',
    description: 'Subnets of the streamer tasks (in VpcId; ignored when the stack creates the VPC). They need a '
      + 'route to the cameras and to ECR, S3, DynamoDB, Secrets Manager and CloudWatch Logs: a NAT gateway or VPC '
      + 'endpoints for private subnets, or TaskAssignPublicIp=ENABLED in public ones.',
  },
  IngestSubnetIds: {
    type: 'CommaDelimitedList', default: '',
    description: 'Public subnets of the internet-facing ingest load balancer (in VpcId, one per zone the tasks run '
      + 'in). Empty = TaskSubnetIds. Ignored when the stack creates the VPC.',
  },
  TaskAssignPublicIp: {
    type: 'String', default: 'DISABLED', allowedValues: ['DISABLED', 'ENABLED'],
    description: 'Whether streamer tasks in TaskSubnetIds get a public IP (only useful in public subnets). Always '
      + 'ENABLED in a VPC the stack creates.',
  },
  PullUdpIngressCidr: {
    type: 'String', default: '', allowedPattern: '^$|^(\\d{1,3}\\.){3}\\d{1,3}/\\d{1,2}$',
    description: 'Empty (default) = pull tasks accept no inbound traffic. An IPv4 CIDR opens UDP 1024-65535 from '
      + 'it, for `udp://` unicast sources (MPEG-TS sent to the task) and RTSP with RTSP_TRANSPORT=udp; RTSP over '
      + 'TCP (the default) needs none.',
  },
  StreamerImage: {
    type: 'String', default: '',
    description: "Image URI of the streamer (streamer/Dockerfile), e.g. the StreamerRepositoryUri output plus "
      + "`:<tag>`, built for the Architecture parameter's CPU. Empty (first deploy) = `<StreamerRepositoryUri>:latest`, "
      + 'and the ingest service runs no task until this is set: push the image, then deploy again with it. ECS '
      + 'resolves it when a task starts, not at deploy.',
  },
  PullTaskCpu: {
    type: 'Number', default: 512, allowedValues: numbers([256, 512, 1024, 2048, 4096, 8192, 16384]),
    description: 'Fargate CPU units of one pull task (1024 = 1 vCPU).',
  },
  PullTaskMemory: {
    type: 'Number', default: 1024, minValue: 512, maxValue: 122880,
    description: 'Memory of one pull task, MiB; must be a Fargate combination with PullTaskCpu (256: 512-2048, '
      + '512: 1024-4096, 1024: 2048-8192, ...).',
  },
  DevicesPerTask: {
    type: 'Number', default: 1, minValue: 1, maxValue: 100,
    description: 'Devices one pull task records (1 = one task per camera). With K > 1 tasks follow their slot in '
      + 'the slots table and cost per camera falls by about K; size PullTaskCpu/PullTaskMemory for K streams.',
  },
  ReconcileSchedule: {
    type: 'String', default: 'rate(1 minute)',
    description: 'EventBridge schedule expression of the periodic (full) reconcile.',
  },
  DeviceOnlineWindowSeconds: {
    type: 'Number', default: 1200, minValue: 60,
    description: 'A device is online while its last heartbeat is this recent (default 20 min: a 15-minute gateway '
      + 'period plus 5 minutes of slack).',
  },
  DeviceAgeOutSeconds: {
    type: 'Number', default: 604800, minValue: 3600,
    description: 'Devices not heard from for this long are deleted by the reconciler (7 days).',
  },
  MaxTaskStartsPerRun: {
    type: 'Number', default: 500, minValue: 1,
    description: 'RunTask calls one reconcile may make; the rest wait for the next run.',
  },
  ReconcilerDryRun: {
    type: 'String', default: 'false', allowedValues: ['false', 'true'],
    description: 'true = the reconciler logs its plan and changes nothing.',
  },
  RestartBackoffBaseSeconds: {
    type: 'Number', default: 10, minValue: 1,
    description: "Restart backoff after a device task's first failure; doubles with each further failure in the "
      + 'crash window, up to RestartBackoffMaxSeconds. Restarts happen on the next reconcile after the backoff '
      + '(ReconcileSchedule).',
  },
  RestartBackoffMaxSeconds: {
    type: 'Number', default: 600, minValue: 1,
    description: 'Cap of the restart backoff.',
  },
  CrashLoopRestarts: {
    type: 'Number', default: 5, minValue: 1,
    description: "Failures of a device's task within CrashLoopWindowSeconds that mark the device failed (no more "
      + 'restarts until its configuration changes) and publish an alarm.',
  },
  CrashLoopWindowSeconds: {
    type: 'Number', default: 1800, minValue: 60,
    description: 'The crash-loop window.',
  },
  HealthyRunSeconds: {
    type: 'Number', default: 600, minValue: 1,
    description: 'A task that ran this long before failing was healthy; the failure count restarts.',
  },
  GatewayTagValue: {
    type: 'String', default: 'media-gateway',
    description: 'Value of the `streamstack:role` tag that marks media-gateway EC2 instances (the IAM policy of '
      + 'GatewayHealthFunction is scoped to instances carrying it).',
  },
  GatewayCheckSchedule: {
    type: 'String', default: 'rate(5 minutes)',
    description: 'EventBridge schedule of the gateway check and image backups.',
  },
  GatewayHealthUrl: {
    type: 'String', default: '',
    description: "The gateway software's health URL, `{private_ip}` substituted (plain http inside the VPC, e.g. "
      + 'http://{private_ip}:8080/health); empty = EC2 status checks only. When set, the function runs in '
      + 'TaskSubnetIds, which then need a route to EC2, DynamoDB and SNS (NAT gateway or VPC endpoints): use it with '
      + 'an existing VpcId, not the created VPC.',
  },
  GatewayHealthFailures: {
    type: 'Number', default: 3, minValue: 1,
    description: 'Consecutive failed health-URL checks that make a gateway sick.',
  },
  GatewayRebootGraceSeconds: {
    type: 'Number', default: 900, minValue: 0,
    description: 'A rebooted gateway still sick after this long is replaced.',
  },
  GatewayRpoSeconds: {
    type: 'Number', default: 86400, minValue: 60,
    description: 'Recovery point objective - one backup image per gateway per interval.',
  },
  GatewayImageRetention: {
    type: 'Number', default: 7, minValue: 1,
    description: 'Backup images kept per gateway (the newest available one is never deleted).',
  },
  GatewayInstanceRoleArn: {
    type: 'String', default: '',
    description: "Role of the gateways' instance profile (replacements get the same profile; the function may pass "
      + 'only this role). Required when the gateways have an instance profile (else every recovery fails '
      + 'RunInstances and alarms); empty when they have none.',
  },
  GatewayDryRun: {
    type: 'String', default: 'false', allowedValues: ['false', 'true'],
    description: 'true = the gateway function reports its plan and changes nothing.',
  },
  ContainerInsights: {
    type: 'String', default: 'disabled', allowedValues: ['disabled', 'enabled', 'enhanced'],
    description: 'CloudWatch Container Insights on the streamer cluster (billed per metric).',
  },
  StreamerLogRetentionDays: {
    type: 'Number', default: 30, allowedValues: numbers(LOG_RETENTION_DAYS),
    description: "Days the pull tasks' CloudWatch logs are kept.",
  },

  // Live ingest: the streamer ECS service behind a Network Load Balancer.
  IngestCertificateArn: {
    type: 'String', default: '', allowedPattern: '^$|^arn:aws[a-z-]*:acm:.+$',
    description: 'ACM certificate (this region) for IngestDomainName, for RTMPS: the load balancer terminates TLS '
      + 'on RtmpsPort and forwards plain RTMP to the tasks. Empty = no RTMPS.',
  },
  RtmpsPort: {
    type: 'Number', default: 443, allowedValues: numbers([443, 1936, 8443]),
    description: 'Port of the RTMPS (TLS) listener; 443 passes most firewalls (OBS, ffmpeg rtmps://).',
  },
  EnableSrt: {
    type: 'String', default: 'true', allowedValues: ['true', 'false'],
    description: 'SRT push on UDP 9000 (a UDP listener on the load balancer and the tasks).',
  },
  IngestAllowedCidr: {
    type: 'String', default: '0.0.0.0/0', allowedPattern: '^(\\d{1,3}\\.){3}\\d{1,3}/\\d{1,2}$',
    description: 'Who may connect to RTMP/RTMPS/SRT (client addresses are preserved to the tasks).',
  },
  IngestTaskCpu: {
    type: 'Number', default: 1024, allowedValues: numbers([256, 512, 1024, 2048, 4096, 8192, 16384]),
    description: 'Fargate CPU units of one ingest task (1024 = 1 vCPU).',
  },
  IngestTaskMemory: {
    type: 'Number', default: 2048, minValue: 512, maxValue: 122880,
    description: 'Memory of one ingest task, MiB (a Fargate combination with IngestTaskCpu).',
  },
  IngestDesiredCount: {
    type: 'Number', default: 2, minValue: 0,
    description: 'Ingest tasks at deploy time (autoscaling moves it between IngestMinCount and IngestMaxCount). '
      + 'Publish leases make any number safe: a channel publishes to one task.',
  },
  IngestMinCount: {
    type: 'Number', default: 1, minValue: 0,
    description: 'Fewest ingest tasks autoscaling keeps.',
  },
  IngestMaxCount: {
    type: 'Number', default: 10, minValue: 1,
    description: 'Most ingest tasks autoscaling starts.',
  },
  IngestCpuTarget: {
    type: 'Number', default: 60, minValue: 10, maxValue: 90,
    description: 'Average CPU (percent) of the ingest service that autoscaling keeps.',
  },
  IngestDeregistrationDelaySeconds: {
    type: 'Number', default: 300, minValue: 0, maxValue: 3600,
    description: 'When a task leaves (scale-in, deployment), seconds its publishers may go on before ECS sends '
      + 'SIGTERM; then the streamer drains (STREAMER_DRAIN_SECS = 90, below the container\'s stopTimeout of 120) '
      + 'and publishers reconnect to another task.',
  },

  // Cloud-to-ground: `streamer egress` on ECS Anywhere (egress.ts).
  EgressSource: {
    type: 'String', default: '', allowedPattern: '^$|^(channel|device):\\S+$|^https://\\S+$',
    description: 'EGRESS_SOURCE of the egress task definition: channel:<id>, device:<id> or an https playlist URL. '
      + 'Empty (default) = name it per run (aws ecs run-task --overrides); EgressDesiredCount > 0 needs it.',
  },
  EgressTarget: {
    type: 'String', default: 'udp://239.1.1.1:5000?ttl=16', allowedPattern: '^udp://\\S+$',
    description: 'EGRESS_TARGET of the egress task definition: udp://<group>:<port>?ttl=N&localaddr=<IP of the '
      + "interface to send on> (MPEG-TS over UDP multicast on the plant's LAN).",
  },
  EgressLiveEdgeSegments: {
    type: 'Number', default: 3, minValue: 1, maxValue: 10,
    description: 'EGRESS_LIVE_EDGE_SEGMENTS - how many segments behind the live edge the egress starts.',
  },
  EgressDesiredCount: {
    type: 'Number', default: 0, minValue: 0,
    description: '0 (default) = no egress service: run the task with aws ecs run-task --launch-type EXTERNAL. '
      + 'N > 0 = an ECS service (launch type EXTERNAL, at most one task per registered on-premises host) keeps N '
      + 'egress tasks sending EgressSource to EgressTarget; needs EgressSource and StreamerImage, and N registered '
      + 'hosts in the StreamerClusterName cluster.',
  },

  // Storage, playback, logs.
  ArchiveTransitionDays: {
    type: 'Number', default: 7, minValue: 0,
    description: 'Days after which recordings (live/ and devices/ objects, and the same under signed/, without the '
      + 'live-only tag) move to ArchiveStorageClass. Playlists and objects under 128 KiB stay in Standard.',
  },
  ArchiveStorageClass: {
    type: 'String', default: 'GLACIER_IR', allowedValues: ['GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE'],
    description: 'Storage class of aged recordings. GLACIER_IR stays playable through CloudFront; GLACIER and '
      + 'DEEP_ARCHIVE need a restore before playback.',
  },
  InputsExpirationDays: {
    type: 'Number', default: 0, minValue: 0,
    description: 'Days after which uploads under inputs/ are deleted (0 = kept).',
  },
  LogRetentionDays: {
    type: 'Number', default: 30, allowedValues: numbers(LOG_RETENTION_DAYS),
    description: "Days the Lambda functions' and the API's access logs are kept.",
  },
  EnableTracing: {
    type: 'String', default: 'false', allowedValues: ['false', 'true'],
    description: 'AWS X-Ray active tracing of the Lambda functions.',
  },
  AlarmEmail: {
    type: 'String', default: '',
    description: 'An address subscribed to the alarm topic (confirm the mail AWS sends). Empty = none.',
  },

  // Playback authorization: CloudFront signed URLs and signed cookies.
  PlaybackDefault: {
    type: 'String', default: 'signed', allowedValues: ['signed', 'public'],
    description: 'Playback of new channels, devices and VOD assets whose create request does not say (`playback`), '
      + 'fixed when each is created. signed = stored under signed/ and served only with a signed URL or signed '
      + 'cookies the API issues (needs PlaybackPublicKey and PlaybackPrivateKeySecretArn); public = live/, devices/, '
      + 'outputs/, no signature.',
  },
  PlaybackPublicKey: {
    type: 'String', default: '',
    allowedPattern: '^$|^-----BEGIN PUBLIC KEY-----[\\s\\S]+-----END PUBLIC KEY-----\\s*$',
    description: 'PEM of the RSA 2048 public key (SPKI, -----BEGIN PUBLIC KEY-----...) CloudFront verifies signed '
      + 'URLs and cookies with; scripts/playback-keys.sh makes the pair. Empty = no signed playback (CloudFront serves '
      + 'nothing under signed/). CloudFront cannot change a public key in place: see README, Deploy, for rotation.',
  },
  PlaybackPrivateKeySecretArn: {
    type: 'String', default: '',
    allowedPattern: '^$|^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$',
    description: 'Full ARN of the Secrets Manager secret (with its 6-character suffix, as create-secret prints it: '
      + "the API's grant is on this exact ARN) whose SecretString is the PEM private key matching PlaybackPublicKey "
      + '(you create it, encrypted with the default aws/secretsmanager key: no kms:Decrypt is granted; the API may '
      + 'read this secret only). Set with PlaybackPublicKey, or leave both empty.',
  },
  PlaybackCredentialsTtlSecs: {
    type: 'Number', default: 3600, minValue: 60, maxValue: 604800,
    description: 'Lifetime of the signed URLs and signed cookies the API issues, in seconds.',
  },
  PlaybackAllowedOrigins: {
    type: 'CommaDelimitedList', default: '',
    description: 'Origins allowed to fetch playback cross-origin (CORS, with credentials, so signed cookies are '
      + 'sent), e.g. https://player.example.com. Empty = no cross-origin access.',
  },
  PlaybackDomainName: {
    type: 'String', default: '',
    allowedPattern: '^$|^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$',
    description: 'Alternate domain name of the playback distribution (e.g. media.example.com, lower case), a CNAME '
      + 'of the PlaybackDistributionDomain output. Signed cookies need it: the app on app.example.com sets them for '
      + '.example.com, which it can never do for the CloudFront domain (*.cloudfront.net is a public suffix). With '
      + 'it, PLAYBACK_BASE_URL and the playback outputs use https://<this name> (signed policies name this host). '
      + 'Set with PlaybackCertificateArn, or leave both empty.',
  },
  PlaybackCertificateArn: {
    type: 'String', default: '',
    allowedPattern: '^$|^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/[A-Za-z0-9-]+$',
    description: "ACM certificate in us-east-1 (CloudFront's region for certificates) covering PlaybackDomainName; "
      + 'served with SNI, TLS 1.2 (TLSv1.2_2021) or later. Set with PlaybackDomainName, or leave both empty.',
  },
} satisfies Record<string, CfnParameterProps>;

export type ParamName = keyof typeof DEFINITIONS;

/** The parameters (as CfnParameter) and the template's conditions. */
export class Params {
  private readonly params: Record<string, CfnParameter> = {};
  readonly isArm64: CfnCondition;
  readonly createVpc: CfnCondition;
  readonly hasIngestSubnets: CfnCondition;
  readonly hasIngestDomain: CfnCondition;
  readonly hasRtmps: CfnCondition;
  readonly hasSrt: CfnCondition;
  readonly hasStreamerImage: CfnCondition;
  readonly hasInputsExpiration: CfnCondition;
  readonly hasTracing: CfnCondition;
  readonly hasAlarmEmail: CfnCondition;
  readonly hasPullUdpIngress: CfnCondition;
  readonly hasGatewayHealthUrl: CfnCondition;
  readonly hasGatewayInstanceRole: CfnCondition;
  /** PlaybackPublicKey set: the signing key, its key group, the cookie function, signed/*. */
  readonly hasPlaybackKey: CfnCondition;
  /** PlaybackAllowedOrigins set: the CORS response headers policy. */
  readonly hasAllowedOrigins: CfnCondition;
  /** PlaybackDomainName (and its certificate) set: the distribution's alias, PLAYBACK_BASE_URL. */
  readonly hasPlaybackDomain: CfnCondition;
  /** EgressDesiredCount > 0: the egress service on ECS Anywhere hosts. */
  readonly hasEgressService: CfnCondition;

  constructor(stack: Stack, architectureDefault: string) {
    for (const [name, props] of Object.entries(DEFINITIONS)) {
      const p: CfnParameterProps = name === 'Architecture' ? { ...props, default: architectureDefault } : props;
      this.params[name] = new CfnParameter(stack, name, p);
    }
    const notEmpty = (name: ParamName) => Fn.conditionNot(Fn.conditionEquals(this.ref(name), ''));
    this.isArm64 = new CfnCondition(stack, 'IsArm64', { expression: Fn.conditionEquals(this.ref('Architecture'), 'arm64') });
    const cond = (id: string, expression: ICfnConditionExpression) => new CfnCondition(stack, id, { expression });
    this.createVpc = cond('CreateVpc', Fn.conditionEquals(this.ref('VpcId'), ''));
    this.hasIngestSubnets = cond('HasIngestSubnets',
      Fn.conditionNot(Fn.conditionEquals(Fn.join('', this.list('IngestSubnetIds')), '')));
    this.hasIngestDomain = cond('HasIngestDomain', notEmpty('IngestDomainName'));
    this.hasRtmps = cond('HasRtmps', notEmpty('IngestCertificateArn'));
    this.hasSrt = cond('HasSrt', Fn.conditionEquals(this.ref('EnableSrt'), 'true'));
    this.hasStreamerImage = cond('HasStreamerImage', notEmpty('StreamerImage'));
    this.hasInputsExpiration = cond('HasInputsExpiration',
      Fn.conditionNot(Fn.conditionEquals(this.ref('InputsExpirationDays'), '0')));
    this.hasTracing = cond('HasTracing', Fn.conditionEquals(this.ref('EnableTracing'), 'true'));
    this.hasAlarmEmail = cond('HasAlarmEmail', notEmpty('AlarmEmail'));
    this.hasPullUdpIngress = new CfnCondition(stack, 'HasPullUdpIngress', { expression: notEmpty('PullUdpIngressCidr') });
    this.hasGatewayHealthUrl = new CfnCondition(stack, 'HasGatewayHealthUrl', { expression: notEmpty('GatewayHealthUrl') });
    this.hasGatewayInstanceRole = new CfnCondition(stack, 'HasGatewayInstanceRole', {
      expression: notEmpty('GatewayInstanceRoleArn'),
    });
    // The public key is set (the PlaybackKeyPair rule makes the secret ARN go with it; naming
    // both here also tells cfn-lint the ARN is not empty where the policy uses it).
    this.hasPlaybackKey = cond('HasPlaybackKey',
      Fn.conditionAnd(notEmpty('PlaybackPublicKey'), notEmpty('PlaybackPrivateKeySecretArn')));
    this.hasAllowedOrigins = cond('HasAllowedOrigins',
      Fn.conditionNot(Fn.conditionEquals(Fn.join('', this.list('PlaybackAllowedOrigins')), '')));
    // An alternate domain for playback (the PlaybackDomainAndCertificate rule makes the
    // certificate go with it).
    this.hasPlaybackDomain = cond('HasPlaybackDomain',
      Fn.conditionAnd(notEmpty('PlaybackDomainName'), notEmpty('PlaybackCertificateArn')));
    this.hasEgressService = cond('HasEgressService',
      Fn.conditionNot(Fn.conditionEquals(this.ref('EgressDesiredCount'), '0')));

    new CfnRule(stack, 'RtmpsNeedsDomainName', {
      ruleCondition: Fn.conditionNot(Fn.conditionEquals(this.ref('IngestCertificateArn'), '')),
      assertions: [{
        assert: Fn.conditionNot(Fn.conditionEquals(this.ref('IngestDomainName'), '')),
        assertDescription: 'RTMPS (IngestCertificateArn) needs IngestDomainName, the name its certificate is for.',
      }],
    });
    new CfnRule(stack, 'ExistingVpcNeedsSubnets', {
      ruleCondition: Fn.conditionNot(Fn.conditionEquals(this.ref('VpcId'), '')),
      assertions: [{
        // Rules allow no Fn::Join: the empty default is the list [""].
        assert: Fn.conditionNot(Fn.conditionContains(this.list('TaskSubnetIds'), '')),
        assertDescription: 'TaskSubnetIds must name the subnets of VpcId.',
      }],
    });
    const empty = (name: ParamName) => Fn.conditionEquals(this.ref(name), '');
    new CfnRule(stack, 'PlaybackKeyPair', {
      assertions: [{
        assert: Fn.conditionOr(
          Fn.conditionAnd(empty('PlaybackPublicKey'), empty('PlaybackPrivateKeySecretArn')),
          Fn.conditionAnd(notEmpty('PlaybackPublicKey'), notEmpty('PlaybackPrivateKeySecretArn')),
        ),
        assertDescription: 'PlaybackPublicKey and PlaybackPrivateKeySecretArn go together (both set, or both empty).',
      }],
    });
    new CfnRule(stack, 'PlaybackDomainAndCertificate', {
      assertions: [{
        assert: Fn.conditionOr(
          Fn.conditionAnd(empty('PlaybackDomainName'), empty('PlaybackCertificateArn')),
          Fn.conditionAnd(notEmpty('PlaybackDomainName'), notEmpty('PlaybackCertificateArn')),
        ),
        assertDescription: 'PlaybackDomainName and PlaybackCertificateArn go together (both set, or both empty).',
      }],
    });
    new CfnRule(stack, 'SignedPlaybackNeedsKey', {
      ruleCondition: Fn.conditionEquals(this.ref('PlaybackDefault'), 'signed'),
      assertions: [{
        assert: notEmpty('PlaybackPublicKey'),
        assertDescription: 'PlaybackDefault=signed needs PlaybackPublicKey and PlaybackPrivateKeySecretArn '
          + '(scripts/playback-keys.sh makes them), or deploy with PlaybackDefault=public.',
      }],
    });
    new CfnRule(stack, 'EgressServiceNeedsSource', {
      ruleCondition: Fn.conditionNot(Fn.conditionEquals(this.ref('EgressDesiredCount'), '0')),
      assertions: [
        {
          assert: notEmpty('EgressSource'),
          assertDescription: 'EgressDesiredCount > 0 needs EgressSource (channel:<id>, device:<id> or an https '
            + 'playlist URL).',
        },
        {
          assert: notEmpty('StreamerImage'),
          assertDescription: 'EgressDesiredCount > 0 needs StreamerImage (the image the egress tasks run).',
        },
      ],
    });
  }

  /** `{ Ref: name }` as a string token. */
  ref(name: ParamName): string {
    return this.params[name].valueAsString;
  }

  /** `{ Ref: name }` of a List<> parameter. */
  list(name: ParamName): string[] {
    return this.params[name].valueAsList;
  }

  /** `{ Ref: name }` as a number token. */
  num(name: ParamName): number {
    return this.params[name].valueAsNumber;
  }
}
