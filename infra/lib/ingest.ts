// Live ingest: `streamer serve` as an ECS Fargate service behind an internet-facing Network
// Load Balancer: RTMP 1935/tcp, RTMPS (TLS ends at the load balancer, condition HasRtmps),
// SRT 9000/udp (condition HasSrt), health checks on 8080 /healthz, client IPs preserved, CPU
// target-tracking autoscaling.
import { Aws, Fn } from 'aws-cdk-lib';
import * as cloudformation from 'aws-cdk-lib/aws-cloudformation';
import * as applicationautoscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { Network } from './network';
import { Params } from './params';
import { awsManagedPolicy, ecsTaskRoleTrust, ecsTasksTrust, named, policyDocument } from './sam';
import { Storage } from './storage';

export interface IngestEndpoints {
  readonly rtmp: string;
  readonly rtmps: string;
  readonly srt: string;
}

export class Ingest extends Construct {
  readonly loadBalancer: elbv2.CfnLoadBalancer;
  readonly service: ecs.CfnService;
  /** The RTMP target group (logical ID RtmpTargetGroup). */
  readonly rtmpTargetGroup: elbv2.CfnTargetGroup;
  /** ECR pull and awslogs only (AmazonECSTaskExecutionRolePolicy); the egress task uses it too. */
  readonly executionRole: iam.CfnRole;

  constructor(scope: Construct, id: string, params: Params, storage: Storage, network: Network,
    cluster: ecs.CfnCluster, streamerImage: string) {
    super(scope, id);
    const ifCond = (cond: { logicalId: string }, a: unknown, b: unknown) => Fn.conditionIf(cond.logicalId, a, b);

    const logGroup = named(new logs.CfnLogGroup(this, 'IngestLogGroup', {
      retentionInDays: params.num('StreamerLogRetentionDays'),
    }), 'IngestLogGroup');

    // What `streamer serve` may do: objects under live/ and signed/live/ (GetObject to continue
    // a playlist after a restart), read channels and write their lease and stream state.
    const taskRole = named(new iam.CfnRole(this, 'IngestTaskRole', {
      assumeRolePolicyDocument: ecsTaskRoleTrust(),
      policies: [{
        policyName: 'ingest',
        policyDocument: policyDocument([
          {
            Effect: 'Allow',
            Action: ['s3:PutObject', 's3:PutObjectTagging', 's3:GetObject'],
            Resource: [Fn.sub('${MediaBucket.Arn}/live/*'), Fn.sub('${MediaBucket.Arn}/signed/live/*')],
          },
          // A missing playlist (first publish) reads as 404, not 403.
          {
            Effect: 'Allow',
            Action: 's3:ListBucket',
            Resource: storage.mediaBucket.attrArn,
            Condition: { StringLike: { 's3:prefix': ['live/*', 'signed/live/*'] } },
          },
          { Effect: 'Allow', Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'], Resource: storage.channelsTable.attrArn },
        ]),
      }],
    }), 'IngestTaskRole');
    this.executionRole = named(new iam.CfnRole(this, 'IngestTaskExecutionRole', {
      assumeRolePolicyDocument: ecsTasksTrust(),
      managedPolicyArns: [awsManagedPolicy('service-role/AmazonECSTaskExecutionRolePolicy')],
    }), 'IngestTaskExecutionRole');
    const executionRole = this.executionRole;

    const taskDefinition = named(new ecs.CfnTaskDefinition(this, 'IngestTaskDefinition', {
      family: Fn.sub('${AWS::StackName}-streamer-ingest'),
      requiresCompatibilities: ['FARGATE'],
      networkMode: 'awsvpc',
      cpu: params.ref('IngestTaskCpu'),
      memory: params.ref('IngestTaskMemory'),
      runtimePlatform: {
        operatingSystemFamily: 'LINUX',
        cpuArchitecture: ifCond(params.isArm64, 'ARM64', 'X86_64').toString(),
      },
      executionRoleArn: executionRole.attrArn,
      taskRoleArn: taskRole.attrArn,
      containerDefinitions: [{
        name: 'streamer',
        image: streamerImage,
        essential: true,
        // SRT is on unless `--no-srt` (EnableSrt=false).
        command: ifCond(params.hasSrt, ['serve'], ['serve', '--no-srt']) as unknown as string[],
        portMappings: [
          { containerPort: 1935, protocol: 'tcp' },
          { containerPort: 9000, protocol: 'udp' },
          { containerPort: 8080, protocol: 'tcp' },
        ],
        // SIGTERM ends publishes and playlists within STREAMER_DRAIN_SECS, below StopTimeout.
        stopTimeout: 120,
        healthCheck: {
          command: ['CMD', '/usr/local/bin/streamer', 'healthcheck'],
          interval: 15,
          timeout: 5,
          retries: 3,
          startPeriod: 15,
        },
        environment: [
          { name: 'CHANNELS_TABLE', value: storage.channelsTable.ref },
          { name: 'MEDIA_BUCKET', value: storage.mediaBucket.ref },
          { name: 'STREAMER_DRAIN_SECS', value: '90' },
          { name: 'HEALTH_LISTEN', value: '0.0.0.0:8080' },
          { name: 'RUST_LOG', value: 'info' },
        ],
        logConfiguration: {
          logDriver: 'awslogs',
          options: {
            'awslogs-group': logGroup.ref,
            'awslogs-region': Aws.REGION,
            'awslogs-stream-prefix': 'ingest',
          },
        },
      }],
    }), 'IngestTaskDefinition');

    // Publishers reach the load balancer on its listener ports; its health checks reach the
    // tasks' 8080 (the tasks' group admits this group there). Entries in an Fn::If are written
    // verbatim (PascalCase keys).
    const lbSecurityGroup = named(new ec2.CfnSecurityGroup(this, 'IngestLoadBalancerSecurityGroup', {
      groupDescription: 'streamstack ingest load balancer (RTMP, RTMPS, SRT)',
      vpcId: network.vpcId,
      securityGroupIngress: [
        {
          ipProtocol: 'tcp',
          fromPort: 1935,
          toPort: 1935,
          cidrIp: params.ref('IngestAllowedCidr'),
          description: 'RTMP publishers',
        },
        Fn.conditionIf(params.hasRtmps.logicalId, {
          IpProtocol: 'tcp',
          FromPort: params.ref('RtmpsPort'),
          ToPort: params.ref('RtmpsPort'),
          CidrIp: params.ref('IngestAllowedCidr'),
          Description: 'RTMPS publishers',
        }, Aws.NO_VALUE),
        Fn.conditionIf(params.hasSrt.logicalId, {
          IpProtocol: 'udp',
          FromPort: 9000,
          ToPort: 9000,
          CidrIp: params.ref('IngestAllowedCidr'),
          Description: 'SRT callers',
        }, Aws.NO_VALUE),
      ],
      securityGroupEgress: [{
        ipProtocol: '-1',
        cidrIp: '0.0.0.0/0',
        description: 'Forwarded publishes and health checks to the tasks (in the VPC)',
      }],
    }), 'IngestLoadBalancerSecurityGroup');

    // Client addresses are preserved through the load balancer, so ingress names the clients.
    const securityGroup = named(new ec2.CfnSecurityGroup(this, 'IngestSecurityGroup', {
      groupDescription: 'streamstack streamer ingest tasks (RTMP, SRT, health)',
      vpcId: network.vpcId,
      securityGroupIngress: [
        {
          ipProtocol: 'tcp',
          fromPort: 1935,
          toPort: 1935,
          cidrIp: params.ref('IngestAllowedCidr'),
          description: 'RTMP publishers (and RTMPS, decrypted by the load balancer)',
        },
        {
          ipProtocol: 'tcp',
          fromPort: 8080,
          toPort: 8080,
          sourceSecurityGroupId: lbSecurityGroup.attrGroupId,
          description: 'Load balancer health checks (GET /healthz)',
        },
      ],
      securityGroupEgress: [{
        ipProtocol: '-1',
        cidrIp: '0.0.0.0/0',
        description: 'AWS endpoints (ECR, S3, DynamoDB, Logs) and replies to publishers',
      }],
    }), 'IngestSecurityGroup');
    const srtIngress = named(new ec2.CfnSecurityGroupIngress(this, 'IngestSrtIngress', {
      groupId: securityGroup.attrGroupId,
      ipProtocol: 'udp',
      fromPort: 9000,
      toPort: 9000,
      cidrIp: params.ref('IngestAllowedCidr'),
      description: 'SRT callers',
    }), 'IngestSrtIngress');
    srtIngress.cfnOptions.condition = params.hasSrt;

    this.loadBalancer = named(new elbv2.CfnLoadBalancer(this, 'IngestLoadBalancer', {
      type: 'network',
      scheme: 'internet-facing',
      ipAddressType: 'ipv4',
      subnets: ifCond(params.createVpc, network.createdSubnets,
        ifCond(params.hasIngestSubnets, params.list('IngestSubnetIds'), params.list('TaskSubnetIds'))) as unknown as string[],
      securityGroups: [lbSecurityGroup.attrGroupId],
      loadBalancerAttributes: [{ key: 'load_balancing.cross_zone.enabled', value: 'true' }],
    }), 'IngestLoadBalancer');
    this.loadBalancer.addResourceDependency(network.networkReady);

    // Targets are tasks (awsvpc: ip); health is the streamer's /healthz (503 while draining).
    const targetGroup = (logicalId: string, protocol: string, port: number, preserveClientIp: boolean) =>
      named(new elbv2.CfnTargetGroup(this, logicalId, {
        targetType: 'ip',
        protocol,
        port,
        vpcId: network.vpcId,
        healthCheckProtocol: 'HTTP',
        healthCheckPort: '8080',
        healthCheckPath: '/healthz',
        healthCheckIntervalSeconds: 10,
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 2,
        targetGroupAttributes: [
          { key: 'deregistration_delay.timeout_seconds', value: params.ref('IngestDeregistrationDelaySeconds') },
          ...(preserveClientIp ? [{ key: 'preserve_client_ip.enabled', value: 'true' }] : []),
        ],
      }), logicalId);
    const rtmpTargets = targetGroup('RtmpTargetGroup', 'TCP', 1935, true);
    this.rtmpTargetGroup = rtmpTargets;
    const srtTargets = targetGroup('SrtTargetGroup', 'UDP', 9000, false);
    srtTargets.cfnOptions.condition = params.hasSrt;

    const forward = (tg: elbv2.CfnTargetGroup) => [{ type: 'forward', targetGroupArn: tg.ref }];
    const rtmpListener = named(new elbv2.CfnListener(this, 'RtmpListener', {
      loadBalancerArn: this.loadBalancer.ref,
      protocol: 'TCP',
      port: 1935,
      defaultActions: forward(rtmpTargets),
    }), 'RtmpListener');
    // TLS ends here; the tasks see plain RTMP on 1935 (rtmps://<IngestHost>:<RtmpsPort>/...).
    const rtmpsListener = named(new elbv2.CfnListener(this, 'RtmpsListener', {
      loadBalancerArn: this.loadBalancer.ref,
      protocol: 'TLS',
      port: params.num('RtmpsPort'),
      sslPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06',
      certificates: [{ certificateArn: params.ref('IngestCertificateArn') }],
      defaultActions: forward(rtmpTargets),
    }), 'RtmpsListener');
    rtmpsListener.cfnOptions.condition = params.hasRtmps;
    const srtListener = named(new elbv2.CfnListener(this, 'SrtListener', {
      loadBalancerArn: this.loadBalancer.ref,
      protocol: 'UDP',
      port: 9000,
      defaultActions: forward(srtTargets),
    }), 'SrtListener');
    srtListener.cfnOptions.condition = params.hasSrt;

    // The name is the task group `service:<name>` task health recognizes (INGEST_SERVICE_GROUP).
    const rtmpTarget = { containerName: 'streamer', containerPort: 1935, targetGroupArn: rtmpTargets.ref };
    this.service = named(new ecs.CfnService(this, 'IngestService', {
      serviceName: Fn.sub('${AWS::StackName}-ingest'),
      cluster: cluster.ref,
      taskDefinition: taskDefinition.ref,
      launchType: 'FARGATE',
      desiredCount: ifCond(params.hasStreamerImage, params.ref('IngestDesiredCount'), 0) as unknown as number,
      healthCheckGracePeriodSeconds: 30,
      deploymentConfiguration: {
        minimumHealthyPercent: 100,
        maximumPercent: 200,
        deploymentCircuitBreaker: { enable: true, rollback: true },
      },
      networkConfiguration: {
        awsvpcConfiguration: {
          assignPublicIp: network.assignPublicIp,
          securityGroups: [securityGroup.attrGroupId],
          subnets: ifCond(params.createVpc, network.createdSubnets, params.list('TaskSubnetIds')) as unknown as string[],
        },
      },
    }), 'IngestService');
    // With or without the SRT target group (an override is written verbatim: PascalCase keys).
    this.service.addPropertyOverride('LoadBalancers', Fn.conditionIf(params.hasSrt.logicalId,
      [pascal(rtmpTarget), { ContainerName: 'streamer', ContainerPort: 9000, TargetGroupArn: srtTargets.ref }],
      [pascal(rtmpTarget)]));
    // A service may register only with target groups a listener already uses; DependsOn
    // cannot name the conditional listeners, so this handle references them.
    const listenersReady = named(new cloudformation.CfnWaitConditionHandle(this, 'IngestListenersReady'),
      'IngestListenersReady');
    listenersReady.cfnOptions.metadata = {
      Rtmp: rtmpListener.ref,
      Rtmps: ifCond(params.hasRtmps, rtmpsListener.ref, ''),
      Srt: ifCond(params.hasSrt, srtListener.ref, ''),
    };
    this.service.addResourceDependency(listenersReady);
    this.service.addResourceDependency(network.networkReady);
    // TaskSubnetIds defaults to empty (used only with an existing VpcId; a Rule requires it
    // there), which cfn-lint's W1030 resolves against the subnet id pattern.
    this.service.cfnOptions.metadata = { 'cfn-lint': { config: { ignore_checks: ['W1030'] } } };

    // CPU target tracking; scale-in ends publishes on the leaving task, so it waits longer.
    const scalableTarget = named(new applicationautoscaling.CfnScalableTarget(this, 'IngestScalableTarget', {
      serviceNamespace: 'ecs',
      scalableDimension: 'ecs:service:DesiredCount',
      resourceId: Fn.sub('service/${StreamerCluster}/${IngestService.Name}'),
      minCapacity: ifCond(params.hasStreamerImage, params.ref('IngestMinCount'), 0) as unknown as number,
      maxCapacity: ifCond(params.hasStreamerImage, params.ref('IngestMaxCount'), 0) as unknown as number,
    }), 'IngestScalableTarget');
    named(new applicationautoscaling.CfnScalingPolicy(this, 'IngestCpuScaling', {
      policyName: Fn.sub('${AWS::StackName}-ingest-cpu'),
      policyType: 'TargetTrackingScaling',
      scalingTargetId: scalableTarget.ref,
      targetTrackingScalingPolicyConfiguration: {
        predefinedMetricSpecification: { predefinedMetricType: 'ECSServiceAverageCPUUtilization' },
        targetValue: params.num('IngestCpuTarget'),
        scaleOutCooldown: 60,
        scaleInCooldown: 900,
      },
    }), 'IngestCpuScaling');
  }

  /** The host name push URLs point at: IngestDomainName, else the load balancer's DNS name. */
  hostName(params: Params): string {
    return Fn.conditionIf(params.hasIngestDomain.logicalId,
      params.ref('IngestDomainName'),
      this.loadBalancer.attrDnsName).toString();
  }

  /** The push endpoints ChannelsApiFunction hands out (INGEST_HOST, INGEST_RTMPS_HOST, INGEST_SRT_HOST). */
  endpoints(params: Params): IngestEndpoints {
    return {
      rtmp: Fn.sub('${Host}:1935', { Host: this.hostName(params) }),
      rtmps: Fn.conditionIf(params.hasRtmps.logicalId, Fn.sub('${IngestDomainName}:${RtmpsPort}'), '').toString(),
      srt: Fn.conditionIf(params.hasSrt.logicalId, Fn.sub('${Host}:9000', { Host: this.hostName(params) }), '').toString(),
    };
  }
}

function pascal(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k[0].toUpperCase() + k.slice(1), v]));
}
