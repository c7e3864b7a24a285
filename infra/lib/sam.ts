// What `AWS::Serverless::Function` expands to under the SAM transform, built from CDK parts so
// that the synthesized template has the same resources, logical IDs and policies as
// `sam deploy` of ../template.yaml:
//
//   <Fn>                        AWS::Lambda::Function (cargo-lambda-cdk RustFunction)
//   <Fn>Role                    AWS::IAM::Role: AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess
//                               (tracing), AWSLambdaVPCAccessExecutionRole (VpcConfig), the
//                               function's policies inline as <Fn>RolePolicy<N>, DeadLetterQueuePolicy
//   <Fn>EventInvokeConfig       AWS::Lambda::EventInvokeConfig
//   <Fn><Event>                 AWS::Events::Rule
//   <Fn><Event>Permission       AWS::Lambda::Permission (schedules, rules, HTTP API routes)
//   <Fn><Event>Queue[Policy]    the SQS dead-letter queue of an EventBridge rule target
//
// Everything is an L1 resource with the logical ID SAM gives it; the function itself is a
// RustFunction whose role is the L1 role (imported immutable, so CDK adds no policy of its own).
import * as path from 'node:path';
import { Aws, CfnResource, Fn, IResolvable } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as events from 'aws-cdk-lib/aws-events';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';

/** The workspace manifest: every function binary is built from it (`cargo lambda build --bin X`). */
export const WORKSPACE_MANIFEST = path.resolve(__dirname, '..', '..', 'Cargo.toml');

/** Gives a resource the logical ID it has in template.yaml (or that SAM derives). */
export function named<T extends CfnResource>(resource: T, logicalId: string): T {
  resource.overrideLogicalId(logicalId);
  return resource;
}

/** An AWS managed policy ARN in the stack's partition. */
export function awsManagedPolicy(name: string): string {
  return Fn.sub(`arn:\${AWS::Partition}:iam::aws:policy/${name}`);
}

/** `arn:...:s3:::streamstack-media-<stack id suffix>` (the media bucket's name, see storage.ts). */
export function mediaBucketArn(suffix = ''): string {
  return Fn.sub(`arn:\${AWS::Partition}:s3:::streamstack-media-\${Id}${suffix}`, { Id: stackIdSuffix() });
}

/** The last part of the stack id (a lowercase UUID): `!Select [2, !Split ["/", !Ref AWS::StackId]]`. */
export function stackIdSuffix(): string {
  return Fn.select(2, Fn.split('/', Aws.STACK_ID));
}

/** An SQS dead-letter queue: 14 days' retention, SQS-managed encryption. */
export function deadLetterQueue(scope: Construct, logicalId: string): sqs.CfnQueue {
  return named(new sqs.CfnQueue(scope, logicalId, {
    messageRetentionPeriod: 1209600,
    sqsManagedSseEnabled: true,
  }), logicalId);
}

/** An IAM policy document (statements as CloudFormation JSON). */
export function policyDocument(statements: unknown[]): Record<string, unknown> {
  return { Version: '2012-10-17', Statement: statements };
}

/** Trust policy of an ECS task role or task execution role, optionally with a condition. */
export function ecsTasksTrust(condition?: Record<string, unknown>): Record<string, unknown> {
  return policyDocument([{
    Effect: 'Allow',
    Principal: { Service: 'ecs-tasks.amazonaws.com' },
    Action: 'sts:AssumeRole',
    ...(condition ? { Condition: condition } : {}),
  }]);
}

/** Trust policy of a task role: assumed by ECS for tasks of this account only (confused
 * deputy: `aws:SourceArn` and `aws:SourceAccount`). */
export function ecsTaskRoleTrust(): Record<string, unknown> {
  return ecsTasksTrust({
    ArnLike: { 'aws:SourceArn': Fn.sub('arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*') },
    StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
  });
}

/** One entry of a SAM function's `Policies`: a managed policy ARN or an inline document. */
export type SamPolicy = { managed: string } | {
  statements: unknown[];
  /** SAM's policy templates (DynamoDBCrudPolicy, ...) expand to a document without Version. */
  unversioned?: boolean;
};

export interface SamFunctionProps {
  /** The cargo binary (`[[bin]]` name). */
  readonly binary: string;
  readonly description: string;
  /** Seconds; default 10 (template Globals). */
  readonly timeout?: number;
  /** MiB; default 256 (template Globals). */
  readonly memorySize?: number;
  readonly environment: Record<string, string>;
  readonly policies: SamPolicy[];
  /** `DeadLetterQueue: {Type: SQS, TargetArn}`. */
  readonly deadLetterQueueArn?: string;
  /** Logical ID of the function's log group (LoggingConfig.LogGroup; created here). */
  readonly logGroup: string;
  readonly eventInvokeConfig?: { maximumRetryAttempts?: number; maximumEventAgeInSeconds?: number };
  /** `VpcConfig` as CloudFormation JSON (may be an Fn::If). */
  readonly vpcConfig?: IResolvable | Record<string, unknown>;
}

/** Settings shared by every function: the template's Globals plus the build architecture. */
export interface FunctionGlobals {
  /** The `Architecture` parameter (`Architectures: [!Ref Architecture]`). */
  readonly architectureRef: string;
  /** The architecture the Lambda code is built for (CDK context `architecture`). */
  readonly buildArchitecture: lambda.Architecture;
  /** `Tracing: !If [HasTracing, Active, PassThrough]`. */
  readonly tracingMode: string;
  /** Retention of the functions' log groups (`!Ref LogRetentionDays`). */
  readonly logRetentionDays: number;
}

export class SamFunction extends Construct {
  readonly fn: RustFunction;
  readonly cfnFunction: lambda.CfnFunction;
  readonly role: iam.CfnRole;
  readonly logGroup: logs.CfnLogGroup;
  private readonly managedPolicyArns: string[];
  private readonly inlinePolicies: iam.CfnRole.PolicyProperty[];

  constructor(scope: Construct, readonly logicalId: string, globals: FunctionGlobals, props: SamFunctionProps) {
    super(scope, logicalId);
    this.managedPolicyArns = [
      awsManagedPolicy('service-role/AWSLambdaBasicExecutionRole'),
      awsManagedPolicy('AWSXrayWriteOnlyAccess'),
    ];
    this.inlinePolicies = [];
    if (props.deadLetterQueueArn) {
      this.inlinePolicies.push({
        policyName: 'DeadLetterQueuePolicy',
        policyDocument: policyDocument([{ Action: 'sqs:SendMessage', Effect: 'Allow', Resource: props.deadLetterQueueArn }]),
      });
    }
    props.policies.forEach((p, i) => {
      if ('managed' in p) {
        this.managedPolicyArns.push(p.managed);
      } else {
        this.inlinePolicies.push({
          policyName: `${logicalId}RolePolicy${i}`,
          policyDocument: p.unversioned ? { Statement: p.statements } : policyDocument(p.statements),
        });
      }
    });
    this.role = named(new iam.CfnRole(this, 'Role', {
      assumeRolePolicyDocument: policyDocument([
        { Action: ['sts:AssumeRole'], Effect: 'Allow', Principal: { Service: ['lambda.amazonaws.com'] } },
      ]),
      managedPolicyArns: this.managedPolicyArns,
      policies: this.inlinePolicies,
    }), `${logicalId}Role`);

    this.fn = new RustFunction(this, 'Function', {
      manifestPath: WORKSPACE_MANIFEST,
      binaryName: props.binary,
      architecture: globals.buildArchitecture,
      // --locked: the deployed code is built from Cargo.lock, as CI tests it.
      bundling: { architecture: globals.buildArchitecture, cargoLambdaFlags: ['--locked'] },
      role: iam.Role.fromRoleArn(this, 'ImportedRole', this.role.attrArn, { mutable: false }),
      description: props.description,
      environment: props.environment,
    });
    this.cfnFunction = named(this.fn.node.defaultChild as lambda.CfnFunction, logicalId);
    const cfn = this.cfnFunction;
    cfn.timeout = props.timeout ?? 10;
    cfn.memorySize = props.memorySize ?? 256;
    cfn.tracingConfig = { mode: globals.tracingMode };
    this.logGroup = named(new logs.CfnLogGroup(this, 'LogGroup', { retentionInDays: globals.logRetentionDays }),
      props.logGroup);
    cfn.loggingConfig = { logGroup: this.logGroup.ref };
    // The code is built for buildArchitecture; a Rule (stack.ts) makes the parameter agree.
    cfn.architectures = [globals.architectureRef];
    if (props.deadLetterQueueArn) {
      cfn.deadLetterConfig = { targetArn: props.deadLetterQueueArn };
    }
    if (props.vpcConfig) {
      cfn.addPropertyOverride('VpcConfig', props.vpcConfig);
      // SAM attaches it to a function with VpcConfig (even a conditional one).
      this.managedPolicyArns.push(awsManagedPolicy('service-role/AWSLambdaVPCAccessExecutionRole'));
    }
    if (props.eventInvokeConfig) {
      named(new lambda.CfnEventInvokeConfig(this, 'EventInvokeConfig', {
        functionName: cfn.ref,
        qualifier: '$LATEST',
        maximumRetryAttempts: props.eventInvokeConfig.maximumRetryAttempts,
        maximumEventAgeInSeconds: props.eventInvokeConfig.maximumEventAgeInSeconds,
        destinationConfig: {},
      }), `${logicalId}EventInvokeConfig`);
    }
  }

  get arn(): string {
    return this.cfnFunction.attrArn;
  }

  get ref(): string {
    return this.cfnFunction.ref;
  }

  private permission(event: string, principal: string, sourceArn: string): lambda.CfnPermission {
    return named(new lambda.CfnPermission(this, `${event}Permission`, {
      action: 'lambda:InvokeFunction',
      functionName: this.cfnFunction.ref,
      principal,
      sourceArn,
    }), `${this.logicalId}${event}Permission`);
  }

  /** `Type: HttpApi` event: the route lives in the API's OpenAPI body (api.ts); this is its permission. */
  addHttpApiEvent(event: string, apiId: string, routePath: string, method: string): void {
    const arnPath = routePath.replace(/\{[^}]+\}/g, '*');
    const arnMethod = method.toUpperCase() === 'ANY' ? '*' : method.toUpperCase();
    this.permission(event, 'apigateway.amazonaws.com', Fn.sub(
      `arn:\${AWS::Partition}:execute-api:\${AWS::Region}:\${AWS::AccountId}:\${__ApiId__}/\${__Stage__}/${arnMethod}${arnPath}`,
      { __ApiId__: apiId, __Stage__: '*' },
    ));
  }

  /** `Type: Schedule` event. */
  addSchedule(event: string, scheduleExpression: string, description: string): events.CfnRule {
    const rule = named(new events.CfnRule(this, event, {
      description,
      scheduleExpression,
      targets: [{ arn: this.arn, id: `${this.logicalId}${event}LambdaTarget` }],
    }), `${this.logicalId}${event}`);
    this.permission(event, 'events.amazonaws.com', rule.attrArn);
    return rule;
  }

  /** `Type: EventBridgeRule` event with a RetryPolicy and `DeadLetterConfig: {Type: SQS}`; returns the queue. */
  addEventBridgeRule(event: string, eventPattern: Record<string, unknown>,
    retry: { maximumRetryAttempts: number; maximumEventAgeInSeconds: number }): sqs.CfnQueue {
    const queueId = `${this.logicalId}${event}Queue`;
    // Declared in template.yaml (encrypted, 14 days) and named as SAM would name it.
    const queue = deadLetterQueue(this, queueId);
    const rule = named(new events.CfnRule(this, event, {
      eventPattern,
      targets: [{
        arn: this.arn,
        id: `${this.logicalId}${event}LambdaTarget`,
        retryPolicy: retry,
        deadLetterConfig: { arn: queue.attrArn },
      }],
    }), `${this.logicalId}${event}`);
    named(new sqs.CfnQueuePolicy(this, `${event}QueuePolicy`, {
      queues: [queue.ref],
      policyDocument: policyDocument([{
        Action: 'sqs:SendMessage',
        Condition: { ArnEquals: { 'aws:SourceArn': rule.attrArn } },
        Effect: 'Allow',
        Principal: { Service: 'events.amazonaws.com' },
        Resource: queue.attrArn,
      }]),
    }), `${queueId}Policy`);
    this.permission(event, 'events.amazonaws.com', rule.attrArn);
    return queue;
  }

}
