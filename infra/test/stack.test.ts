// CDK-side checks the drift test (scripts/iac) does not make: nothing CDK-only in the
// template, the architecture context, the functions' shape, DependsOn, signed playback.
// Offline, bundling skipped.
//   cd infra && npm test
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { PLAYBACK_COOKIES_JS, PLAYBACK_GUARD_JS } from '../lib/playback';
import { StreamstackStack } from '../lib/stack';

function synth(architecture: 'x86_64' | 'arm64'): Record<string, any> {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] }, builtinCloudFormationValidation: false });
  const stack = new StreamstackStack(app, 'Test', { architecture });
  return Template.fromStack(stack).toJSON();
}

const FUNCTIONS = ['ChannelsApiFunction', 'VodTriggerFunction', 'VodJobStateFunction', 'ReconcilerFunction',
  'TaskHealthFunction', 'GatewayHealthFunction'];

test('no CDK-only resources, sections or parameters', () => {
  const t = synth('x86_64');
  const types = new Set(Object.values<any>(t.Resources).map((r) => r.Type));
  for (const type of types) {
    assert.ok(!type.startsWith('Custom::') && type !== 'AWS::CDK::Metadata' && type !== 'AWS::IAM::Policy'
      && type !== 'AWS::Lambda::LayerVersion', `unexpected ${type}`);
  }
  assert.equal(t.Parameters.BootstrapVersion, undefined);
  assert.equal(t.Rules.CheckBootstrapVersion, undefined);
  assert.equal(t.Transform, undefined);
});

test('every function: its logical ID, role, architecture parameter, log group, tracing switch', () => {
  const t = synth('x86_64');
  for (const id of FUNCTIONS) {
    const fn = t.Resources[id];
    assert.equal(fn?.Type, 'AWS::Lambda::Function', id);
    assert.deepEqual(fn.Properties.Architectures, [{ Ref: 'Architecture' }]);
    assert.equal(fn.Properties.Runtime, 'provided.al2023');
    assert.equal(fn.Properties.Handler, 'bootstrap');
    assert.deepEqual(fn.Properties.Role, { 'Fn::GetAtt': [`${id}Role`, 'Arn'] });
    assert.deepEqual(fn.Properties.TracingConfig, { Mode: { 'Fn::If': ['HasTracing', 'Active', 'PassThrough'] } });
    assert.equal(t.Resources[fn.Properties.LoggingConfig.LogGroup.Ref].Type, 'AWS::Logs::LogGroup');
  }
});

for (const arch of ['x86_64', 'arm64'] as const) {
  test(`architecture context ${arch}: parameter default and the rule that pins it`, () => {
    const t = synth(arch);
    assert.equal(t.Parameters.Architecture.Default, arch);
    assert.deepEqual(t.Parameters.Architecture.AllowedValues, ['x86_64', 'arm64']);
    assert.deepEqual(t.Rules.ArchitectureMatchesLambdaBuild.Assertions[0].Assert,
      { 'Fn::Equals': [{ Ref: 'Architecture' }, arch] });
  });
}

test('retained data: tables, bucket, secret, repository', () => {
  const t = synth('x86_64');
  for (const [id, r] of Object.entries<any>(t.Resources)) {
    if (['AWS::DynamoDB::Table', 'AWS::S3::Bucket', 'AWS::SecretsManager::Secret', 'AWS::ECR::Repository'].includes(r.Type)) {
      assert.equal(r.DeletionPolicy, 'Retain', id);
      assert.equal(r.UpdateReplacePolicy, 'Retain', id);
    }
  }
});

test('DependsOn (not compared by the drift test): the NLB and the ingest service wait for the network', () => {
  const t = synth('x86_64');
  assert.deepEqual(t.Resources.IngestLoadBalancer.DependsOn, ['NetworkReady']);
  assert.deepEqual(t.Resources.IngestService.DependsOn, ['IngestListenersReady', 'NetworkReady']);
  assert.equal(t.Resources.NetworkReady.Type, 'AWS::CloudFormation::WaitConditionHandle');
  assert.equal(t.Resources.NetworkReady.Condition, undefined);
});

test('signed playback: conditional resources, the function code is infra/functions/playback-cookies.js', () => {
  const t = synth('x86_64');
  for (const id of ['PlaybackSigningPublicKey', 'PlaybackKeyGroup', 'PlaybackCookieFunction']) {
    assert.equal(t.Resources[id].Condition, 'HasPlaybackKey', id);
  }
  assert.equal(t.Resources.PlaybackCorsPolicy.Condition, 'HasAllowedOrigins');
  assert.equal(t.Resources.PlaybackCookieFunction.Properties.FunctionCode,
    fs.readFileSync(PLAYBACK_COOKIES_JS, 'utf8'));
  assert.equal(t.Resources.PlaybackCookieFunction.Properties.FunctionConfig.Runtime, 'cloudfront-js-2.0');
  const [cond, [signed]] = t.Resources.PlaybackDistribution.Properties.DistributionConfig.CacheBehaviors['Fn::If'];
  assert.equal(cond, 'HasPlaybackKey');
  assert.equal(signed.PathPattern, 'signed/*');
  assert.deepEqual(signed.TrustedKeyGroups, [{ Ref: 'PlaybackKeyGroup' }]);
  assert.deepEqual(signed.FunctionAssociations,
    [{ EventType: 'viewer-response', FunctionARN: { 'Fn::GetAtt': ['PlaybackCookieFunction', 'FunctionARN'] } }]);
});

test('the default behaviour runs the guard function (infra/functions/playback-guard.js) on viewer request, always', () => {
  const t = synth('x86_64');
  const guard = t.Resources.PlaybackGuardFunction;
  assert.equal(guard.Type, 'AWS::CloudFront::Function');
  assert.equal(guard.Condition, undefined);
  assert.equal(guard.Properties.FunctionCode, fs.readFileSync(PLAYBACK_GUARD_JS, 'utf8'));
  assert.equal(guard.Properties.FunctionConfig.Runtime, 'cloudfront-js-2.0');
  assert.equal(guard.Properties.AutoPublish, true);
  const config = t.Resources.PlaybackDistribution.Properties.DistributionConfig;
  assert.deepEqual(config.DefaultCacheBehavior.FunctionAssociations,
    [{ EventType: 'viewer-request', FunctionARN: { 'Fn::GetAtt': ['PlaybackGuardFunction', 'FunctionARN'] } }]);
});

test('playback domain: alias and certificate together, PLAYBACK_BASE_URL and outputs follow it', () => {
  const t = synth('x86_64');
  assert.match('media.example.com', new RegExp(t.Parameters.PlaybackDomainName.AllowedPattern));
  assert.doesNotMatch('Media.Example.com', new RegExp(t.Parameters.PlaybackDomainName.AllowedPattern));
  assert.doesNotMatch('*.example.com', new RegExp(t.Parameters.PlaybackDomainName.AllowedPattern));
  const cert = new RegExp(t.Parameters.PlaybackCertificateArn.AllowedPattern);
  assert.match('arn:aws:acm:us-east-1:123456789012:certificate/1234abcd-12ab-34cd-56ef-1234567890ab', cert);
  assert.doesNotMatch('arn:aws:acm:eu-west-1:123456789012:certificate/1234abcd-12ab-34cd-56ef-1234567890ab', cert);
  assert.ok(t.Rules.PlaybackDomainAndCertificate);
  const config = t.Resources.PlaybackDistribution.Properties.DistributionConfig;
  assert.deepEqual(config.Aliases, { 'Fn::If': ['HasPlaybackDomain', [{ Ref: 'PlaybackDomainName' }], { Ref: 'AWS::NoValue' }] });
  assert.deepEqual(config.ViewerCertificate, { 'Fn::If': ['HasPlaybackDomain',
    { AcmCertificateArn: { Ref: 'PlaybackCertificateArn' }, SslSupportMethod: 'sni-only', MinimumProtocolVersion: 'TLSv1.2_2021' },
    { Ref: 'AWS::NoValue' }] });
  const base = t.Resources.ChannelsApiFunction.Properties.Environment.Variables.PLAYBACK_BASE_URL;
  assert.equal(base['Fn::If'][0], 'HasPlaybackDomain');
  assert.deepEqual(base['Fn::If'][1], { 'Fn::Join': ['', ['https://', { Ref: 'PlaybackDomainName' }]] });
  assert.deepEqual(t.Outputs.PlaybackBaseUrl.Value, base);
  assert.deepEqual(t.Outputs.PlaybackDistributionDomain.Value, { 'Fn::GetAtt': ['PlaybackDistribution', 'DomainName'] });
});

test('the playback key secret ARN: the full ARN with its 6-character suffix', () => {
  const t = synth('x86_64');
  const arn = new RegExp(t.Parameters.PlaybackPrivateKeySecretArn.AllowedPattern);
  assert.match('', arn);
  assert.match('arn:aws:secretsmanager:eu-west-1:123456789012:secret:streamstack/playback-key-AbC123', arn);
  assert.doesNotMatch('arn:aws:secretsmanager:eu-west-1:123456789012:secret:streamstack/playback-key', arn);
  assert.doesNotMatch('arn:aws:secretsmanager:eu-west-1:123456789012:secret:streamstack/playback-key-*', arn);
  assert.doesNotMatch('arn:aws:secretsmanager:eu-west-1:123456789012:secret:streamstack/playback-key-AbC1', arn);
});
