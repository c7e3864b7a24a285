#!/usr/bin/env node
// The CDK app: one env-agnostic stack (no account or region lookups at synth).
//   -c stackName=<name>        stack name (default streamstack)
//   -c architecture=arm64      build the Lambda code for Graviton (default x86_64, cdk.json)
//   -c skipBundling=true       synth without building the Lambda code (make cdk-synth)
import { App } from 'aws-cdk-lib';
import { StreamstackStack } from '../lib/stack';

const app = new App();
if (String(app.node.tryGetContext('skipBundling')) === 'true') {
  // The CLI sets aws:cdk:bundling-stacks to ["**"] for synth and deploy; overriding it here,
  // before any stack exists, leaves every asset unbundled (no cargo lambda run).
  app.node.setContext('aws:cdk:bundling-stacks', []);
}
const architecture = String(app.node.tryGetContext('architecture') ?? 'x86_64');
if (architecture !== 'x86_64' && architecture !== 'arm64') {
  throw new Error(`context architecture must be x86_64 or arm64, not ${architecture}`);
}
new StreamstackStack(app, 'Streamstack', {
  stackName: String(app.node.tryGetContext('stackName') ?? 'streamstack'),
  architecture,
});
