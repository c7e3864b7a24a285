// Cloud-to-ground: `streamer egress` on ECS Anywhere. A task definition for external instances
// (on-premises hosts registered to the streamer cluster; launch type EXTERNAL, host network
// mode) that turns a live channel's or device's HLS into MPEG-TS over UDP multicast on the
// host's LAN; its task role may only GET /channels/{id}/endpoints and /devices/{id}/endpoints of
// this stack's API. Optionally (EgressDesiredCount > 0) a service keeps it running.
import { Aws, Fn } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { Params } from './params';
import { ecsTaskRoleTrust, named, policyDocument } from './sam';

/** The API routes the egress calls (GET, SigV4): the playback URL and signed-playback credentials. */
export const EGRESS_API_PATHS = ['/channels/*/endpoints', '/devices/*/endpoints'];

export interface EgressProps {
  readonly cluster: ecs.CfnCluster;
  /** The streamer image URI (StreamerImage, else the repository's :latest). */
  readonly streamerImage: string;
  /** The HTTP API (its stage is `$default`). */
  readonly httpApiId: string;
  /** The API's base URL (STREAMSTACK_API_URL). */
  readonly apiUrl: string;
  /** ECR pull and awslogs (the ingest task's execution role). */
  readonly executionRole: iam.CfnRole;
}

export class Egress extends Construct {
  readonly taskDefinition: ecs.CfnTaskDefinition;
  readonly taskRole: iam.CfnRole;
  readonly service: ecs.CfnService;

  constructor(scope: Construct, id: string, params: Params, props: EgressProps) {
    super(scope, id);

    const logGroup = named(new logs.CfnLogGroup(this, 'EgressLogGroup', {
      retentionInDays: params.num('StreamerLogRetentionDays'),
    }), 'EgressLogGroup');

    // execute-api:Invoke on exactly the two GET routes of this API's $default stage.
    this.taskRole = named(new iam.CfnRole(this, 'EgressTaskRole', {
      assumeRolePolicyDocument: ecsTaskRoleTrust(),
      policies: [{
        policyName: 'egress',
        policyDocument: policyDocument([{
          Effect: 'Allow',
          Action: 'execute-api:Invoke',
          Resource: EGRESS_API_PATHS.map((path) => Fn.sub(
            `arn:\${AWS::Partition}:execute-api:\${AWS::Region}:\${AWS::AccountId}:\${HttpApi}/$default/GET${path}`,
            { HttpApi: props.httpApiId },
          )),
        }]),
      }],
    }), 'EgressTaskRole');

    // External instances take bridge, host or none (no awsvpc); host mode sends the multicast
    // on the host's own interface (localaddr in EGRESS_TARGET).
    this.taskDefinition = named(new ecs.CfnTaskDefinition(this, 'EgressTaskDefinition', {
      family: Fn.sub('${AWS::StackName}-streamer-egress'),
      requiresCompatibilities: ['EXTERNAL'],
      networkMode: 'host',
      executionRoleArn: props.executionRole.attrArn,
      taskRoleArn: this.taskRole.attrArn,
      containerDefinitions: [{
        name: 'streamer',
        image: props.streamerImage,
        essential: true,
        command: ['egress'],
        // 128 MiB reserved on the host, killed above 512 MiB.
        memoryReservation: 128,
        memory: 512,
        // Nothing to drain (UDP out): SIGKILL 10 s after SIGTERM.
        stopTimeout: 10,
        environment: [
          { name: 'EGRESS_SOURCE', value: params.ref('EgressSource') },
          { name: 'EGRESS_TARGET', value: params.ref('EgressTarget') },
          { name: 'EGRESS_LIVE_EDGE_SEGMENTS', value: params.ref('EgressLiveEdgeSegments') },
          { name: 'STREAMSTACK_API_URL', value: props.apiUrl },
          // The region SigV4 signs for (the API's).
          { name: 'AWS_REGION', value: Aws.REGION },
          { name: 'RUST_LOG', value: 'info' },
        ],
        logConfiguration: {
          logDriver: 'awslogs',
          options: {
            'awslogs-group': logGroup.ref,
            'awslogs-region': Aws.REGION,
            'awslogs-stream-prefix': 'egress',
          },
        },
      }],
    }), 'EgressTaskDefinition');

    // EgressDesiredCount > 0: no load balancer, no network configuration (host mode), one task
    // per host at most, and a deployment stops the old task before starting the new one.
    this.service = named(new ecs.CfnService(this, 'EgressService', {
      serviceName: Fn.sub('${AWS::StackName}-egress'),
      cluster: props.cluster.ref,
      taskDefinition: this.taskDefinition.ref,
      launchType: 'EXTERNAL',
      desiredCount: params.num('EgressDesiredCount'),
      placementConstraints: [{ type: 'distinctInstance' }],
      deploymentConfiguration: { minimumHealthyPercent: 0, maximumPercent: 100 },
    }), 'EgressService');
    this.service.cfnOptions.condition = params.hasEgressService;
  }
}
