// Cloud-to-ground egress (lib/egress.ts): the ECS Anywhere task definition (EXTERNAL, host
// network mode, the streamer image running `egress`), its least-privilege task role (execute-api
// on two GET routes of this stack's API, nothing else), the optional EXTERNAL service and the
// parameters, condition, rule and outputs around them. Offline, bundling skipped.
//   cd infra && npm test
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { StreamstackStack } from '../lib/stack';

function synth(): Record<string, any> {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] }, builtinCloudFormationValidation: false });
  const stack = new StreamstackStack(app, 'Test', { architecture: 'x86_64' });
  return Template.fromStack(stack).toJSON();
}

const t = synth();

const executeApiArn = (path: string) => ({
  'Fn::Sub': [
    `arn:\${AWS::Partition}:execute-api:\${AWS::Region}:\${AWS::AccountId}:\${HttpApi}/$default/GET${path}`,
    { HttpApi: { Ref: 'HttpApi' } },
  ],
});

test('egress task definition: EXTERNAL, host network mode, the streamer image running `egress`', () => {
  const td = t.Resources.EgressTaskDefinition;
  assert.equal(td.Type, 'AWS::ECS::TaskDefinition');
  assert.equal(td.Condition, undefined);
  const p = td.Properties;
  assert.deepEqual(p.RequiresCompatibilities, ['EXTERNAL']);
  assert.equal(p.NetworkMode, 'host');
  assert.deepEqual(p.Family, { 'Fn::Sub': '${AWS::StackName}-streamer-egress' });
  // Fargate-only settings stay off: no task-level CPU/memory or runtime platform.
  assert.equal(p.Cpu, undefined);
  assert.equal(p.Memory, undefined);
  assert.equal(p.RuntimePlatform, undefined);
  assert.deepEqual(p.TaskRoleArn, { 'Fn::GetAtt': ['EgressTaskRole', 'Arn'] });
  assert.deepEqual(p.ExecutionRoleArn, { 'Fn::GetAtt': ['IngestTaskExecutionRole', 'Arn'] });

  assert.equal(p.ContainerDefinitions.length, 1);
  const c = p.ContainerDefinitions[0];
  assert.equal(c.Name, 'streamer');
  // The same image as the Fargate streamer tasks.
  assert.deepEqual(c.Image, t.Resources.IngestTaskDefinition.Properties.ContainerDefinitions[0].Image);
  assert.deepEqual(c.Image, t.Resources.PullTaskDefinition.Properties.ContainerDefinitions[0].Image);
  assert.deepEqual(c.Command, ['egress']);
  assert.equal(c.Essential, true);
  assert.equal(c.MemoryReservation, 128);
  assert.equal(c.Memory, 512);
  assert.ok(c.MemoryReservation < c.Memory);
  assert.ok(c.StopTimeout > 0 && c.StopTimeout <= 30, `StopTimeout ${c.StopTimeout}`);
  // Host mode, output only: no port mappings, no health check (the egress serves none).
  assert.equal(c.PortMappings, undefined);
  assert.equal(c.HealthCheck, undefined);
  assert.equal(c.Secrets, undefined);

  const env = Object.fromEntries(c.Environment.map((e: any) => [e.Name, e.Value]));
  assert.deepEqual(Object.keys(env).sort(), ['AWS_REGION', 'EGRESS_LIVE_EDGE_SEGMENTS', 'EGRESS_SOURCE',
    'EGRESS_TARGET', 'RUST_LOG', 'STREAMSTACK_API_URL']);
  assert.deepEqual(env.EGRESS_SOURCE, { Ref: 'EgressSource' });
  assert.deepEqual(env.EGRESS_TARGET, { Ref: 'EgressTarget' });
  assert.deepEqual(env.EGRESS_LIVE_EDGE_SEGMENTS, { Ref: 'EgressLiveEdgeSegments' });
  assert.deepEqual(env.STREAMSTACK_API_URL, t.Outputs.ApiUrl.Value);
  assert.deepEqual(env.AWS_REGION, { Ref: 'AWS::Region' });

  assert.equal(c.LogConfiguration.LogDriver, 'awslogs');
  assert.deepEqual(c.LogConfiguration.Options['awslogs-group'], { Ref: 'EgressLogGroup' });
  assert.deepEqual(c.LogConfiguration.Options['awslogs-region'], { Ref: 'AWS::Region' });
  assert.equal(t.Resources.EgressLogGroup.Type, 'AWS::Logs::LogGroup');
  assert.deepEqual(t.Resources.EgressLogGroup.Properties.RetentionInDays, { Ref: 'StreamerLogRetentionDays' });
});

test('egress task role: execute-api:Invoke on GET /channels/*/endpoints and /devices/*/endpoints only', () => {
  const role = t.Resources.EgressTaskRole;
  assert.equal(role.Type, 'AWS::IAM::Role');
  assert.equal(role.Properties.ManagedPolicyArns, undefined);
  // Assumed by ECS tasks of this account only (the other task roles' trust).
  assert.deepEqual(role.Properties.AssumeRolePolicyDocument, t.Resources.PullTaskRole.Properties.AssumeRolePolicyDocument);
  assert.equal(role.Properties.Policies.length, 1);
  assert.deepEqual(role.Properties.Policies[0].PolicyDocument, {
    Version: '2012-10-17',
    Statement: [{
      Effect: 'Allow',
      Action: 'execute-api:Invoke',
      Resource: [executeApiArn('/channels/*/endpoints'), executeApiArn('/devices/*/endpoints')],
    }],
  });
  // The API's stage is $default (the ARNs' stage) and its routes cover those paths, IAM-authorized.
  const stage = t.Resources.HttpApiApiGatewayDefaultStage.Properties;
  assert.equal(stage.StageName, '$default');
  assert.deepEqual(stage.ApiId, { Ref: 'HttpApi' });
  const paths = t.Resources.HttpApi.Properties.Body.paths;
  for (const route of ['/channels/{proxy+}', '/devices/{proxy+}']) {
    assert.deepEqual(paths[route]['x-amazon-apigateway-any-method'].security, [{ AWS_IAM: [] }], route);
  }
  // No other role is granted execute-api.
  for (const [id, r] of Object.entries<any>(t.Resources)) {
    if (r.Type === 'AWS::IAM::Role' && id !== 'EgressTaskRole') {
      assert.ok(!JSON.stringify(r.Properties.Policies ?? []).includes('execute-api:'), id);
    }
  }
});

test('egress execution role: the ingest one, ECR pull and logs only', () => {
  const role = t.Resources.IngestTaskExecutionRole.Properties;
  assert.deepEqual(role.ManagedPolicyArns,
    [{ 'Fn::Sub': 'arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy' }]);
  assert.equal(role.Policies, undefined);
  assert.deepEqual(role.AssumeRolePolicyDocument.Statement[0].Principal, { Service: 'ecs-tasks.amazonaws.com' });
});

test('egress service: only with EgressDesiredCount > 0, EXTERNAL on the streamer cluster, no load balancer', () => {
  assert.deepEqual(t.Conditions.HasEgressService, { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'EgressDesiredCount' }, '0'] }] });
  const svc = t.Resources.EgressService;
  assert.equal(svc.Type, 'AWS::ECS::Service');
  assert.equal(svc.Condition, 'HasEgressService');
  const p = svc.Properties;
  assert.equal(p.LaunchType, 'EXTERNAL');
  assert.deepEqual(p.Cluster, { Ref: 'StreamerCluster' });
  assert.deepEqual(p.TaskDefinition, { Ref: 'EgressTaskDefinition' });
  assert.deepEqual(p.DesiredCount, { Ref: 'EgressDesiredCount' });
  assert.equal(p.LoadBalancers, undefined);
  assert.equal(p.NetworkConfiguration, undefined);
  assert.equal(p.CapacityProviderStrategy, undefined);
  // One task per host, and never two senders during a deployment.
  assert.deepEqual(p.PlacementConstraints, [{ Type: 'distinctInstance' }]);
  assert.deepEqual(p.DeploymentConfiguration, { MinimumHealthyPercent: 0, MaximumPercent: 100 });
  // Its name is not the ingest service's group (task health releases ingest leases by it).
  assert.deepEqual(p.ServiceName, { 'Fn::Sub': '${AWS::StackName}-egress' });

  const rule = t.Rules.EgressServiceNeedsSource;
  assert.deepEqual(rule.RuleCondition, t.Conditions.HasEgressService);
  assert.deepEqual(rule.Assertions.map((a: any) => a.Assert), [
    { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'EgressSource' }, ''] }] },
    { 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'StreamerImage' }, ''] }] },
  ]);
});

test('egress parameters and outputs', () => {
  const P = t.Parameters;
  assert.equal(P.EgressSource.Default, '');
  assert.equal(P.EgressTarget.Default, 'udp://239.1.1.1:5000?ttl=16');
  assert.equal(P.EgressLiveEdgeSegments.Default, 3);
  assert.equal(P.EgressDesiredCount.Default, 0);
  assert.equal(P.EgressDesiredCount.MinValue, 0);
  const source = new RegExp(P.EgressSource.AllowedPattern);
  for (const ok of ['', 'channel:abc123', 'device:cam-7', 'https://media.example.com/live/x/index.m3u8']) {
    assert.match(ok, source);
  }
  for (const bad of ['channel:', 'asset:x', 'http://insecure.example.com/x.m3u8', 'channel:a b']) {
    assert.doesNotMatch(bad, source);
  }
  const target = new RegExp(P.EgressTarget.AllowedPattern);
  assert.match(P.EgressTarget.Default, target);
  assert.match('udp://239.1.1.1:5000?ttl=16&localaddr=10.0.0.5', target);
  assert.doesNotMatch('rtp://239.1.1.1:5000', target);
  assert.doesNotMatch('', target);

  assert.deepEqual(t.Outputs.EgressTaskDefinitionArn.Value, { Ref: 'EgressTaskDefinition' });
  assert.equal(t.Outputs.EgressTaskDefinitionArn.Condition, undefined);
  assert.deepEqual(t.Outputs.StreamerClusterName.Value, { Ref: 'StreamerCluster' });
  assert.deepEqual(t.Outputs.EgressServiceName, {
    Description: t.Outputs.EgressServiceName.Description,
    Value: { 'Fn::GetAtt': ['EgressService', 'Name'] },
    Condition: 'HasEgressService',
  });
});
