// The channel, asset, device and gateway API: ChannelsApiFunction behind an IAM-authorized
// HTTP API. As under SAM, the routes are the API's OpenAPI body (no separate Route or
// Integration resources) and the stage is `$default` with auto-deploy.
import { Aws, Fn } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { IngestEndpoints } from './ingest';
import { Params } from './params';
import { FunctionGlobals, SamFunction, named } from './sam';
import { Storage } from './storage';

/** SAM event name -> route (path, method), as in template.yaml. */
const ROUTES: Record<string, [string, string]> = {
  Channels: ['/channels', 'ANY'],
  Channel: ['/channels/{proxy+}', 'ANY'],
  Assets: ['/assets', 'GET'],
  Asset: ['/assets/{id}', 'GET'],
  Devices: ['/devices', 'ANY'],
  Device: ['/devices/{proxy+}', 'ANY'],
  Gateway: ['/gateways/{proxy+}', 'ANY'],
  OpenApi: ['/openapi.json', 'GET'],
};

const ACCESS_LOG_FORMAT = {
  requestId: '$context.requestId',
  ip: '$context.identity.sourceIp',
  caller: '$context.identity.userArn',
  requestTime: '$context.requestTime',
  method: '$context.httpMethod',
  route: '$context.routeKey',
  status: '$context.status',
  bytes: '$context.responseLength',
  latencyMs: '$context.responseLatency',
  error: '$context.integrationErrorMessage',
};

export class Api extends Construct {
  readonly httpApi: apigwv2.CfnApi;
  readonly function: SamFunction;

  readonly accessLogGroup: logs.CfnLogGroup;

  /** ingest: the push endpoints (host:port) the API's URLs point at. */
  constructor(scope: Construct, id: string, params: Params, globals: FunctionGlobals, storage: Storage,
    ingest: IngestEndpoints) {
    super(scope, id);

    this.accessLogGroup = named(new logs.CfnLogGroup(this, 'ApiAccessLogGroup', {
      retentionInDays: params.num('LogRetentionDays'),
    }), 'ApiAccessLogGroup');

    this.function = new SamFunction(this, 'ChannelsApiFunction', globals, {
      binary: 'channels-api',
      logGroup: 'ChannelsApiLogGroup',
      description: 'Channel, asset, device and gateway heartbeat API (functions/channels-api)',
      environment: {
        CHANNELS_TABLE: storage.channelsTable.ref,
        MEDIA_BUCKET: storage.mediaBucket.ref,
        INGEST_HOST: ingest.rtmp,
        INGEST_RTMPS_HOST: ingest.rtmps,
        INGEST_SRT_HOST: ingest.srt,
        // The playback host the API signs policies for: PlaybackDomainName when set.
        PLAYBACK_BASE_URL: storage.playbackBaseUrl,
        PUSH_URL_TTL_SECS: params.ref('PushUrlTtlSeconds'),
        ASSETS_TABLE: storage.assetsTable.ref,
        DEVICES_TABLE: storage.devicesTable.ref,
        DEVICE_ONLINE_WINDOW_SECS: params.ref('DeviceOnlineWindowSeconds'),
        // Resolved by CloudFormation at deploy time into the (KMS-encrypted) environment: a
        // cold start needs no Secrets Manager call and no secretsmanager permission.
        MEDIA_URL_KEY: Fn.sub('{{resolve:secretsmanager:${MediaUrlKey}:SecretString}}'),
        // Playback authorization: the default for new resources, the lifetime of issued
        // signed URLs and cookies, the key they are signed with (CloudFront's key id; the
        // private key is read from the secret at run time).
        PLAYBACK_DEFAULT: params.ref('PlaybackDefault'),
        PLAYBACK_TTL_SECS: params.ref('PlaybackCredentialsTtlSecs'),
        PLAYBACK_KEY_PAIR_ID: storage.playback.keyPairId,
        PLAYBACK_PRIVATE_KEY_SECRET_ARN: params.ref('PlaybackPrivateKeySecretArn'),
      },
      policies: [
        {
          statements: [
            {
              Effect: 'Allow',
              Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Scan'],
              Resource: storage.channelsTable.attrArn,
            },
            { Effect: 'Allow', Action: ['dynamodb:GetItem', 'dynamodb:Scan'], Resource: storage.assetsTable.attrArn },
            // The playback signing key: this one secret, and only when the stack has a key.
            Fn.conditionIf(params.hasPlaybackKey.logicalId, {
              Effect: 'Allow',
              Action: 'secretsmanager:GetSecretValue',
              Resource: params.ref('PlaybackPrivateKeySecretArn'),
            }, Aws.NO_VALUE),
          ],
        },
        // SAM's DynamoDBCrudPolicy on the devices table and its indexes.
        { statements: [dynamoDbCrudStatement(storage.devicesTable.ref)], unversioned: true },
      ],
    });

    const uri = Fn.sub(
      'arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn}/invocations',
      { Fn: this.function.arn },
    );
    const paths: Record<string, Record<string, unknown>> = {};
    for (const [routePath, method] of Object.values(ROUTES)) {
      const parameters = [...routePath.matchAll(/\{([^}]+)\}/g)].map((m) => ({ in: 'path', name: m[1], required: true }));
      const operation: Record<string, unknown> = {
        ...(parameters.length > 0 ? { parameters } : {}),
        responses: {},
        security: [{ AWS_IAM: [] }],
        'x-amazon-apigateway-integration': { httpMethod: 'POST', payloadFormatVersion: '2.0', type: 'aws_proxy', uri },
      };
      const key = method === 'ANY' ? 'x-amazon-apigateway-any-method' : method.toLowerCase();
      paths[routePath] = { ...(paths[routePath] ?? {}), [key]: operation };
    }
    this.httpApi = named(new apigwv2.CfnApi(this, 'HttpApi', {
      body: {
        openapi: '3.0.1',
        info: { title: Fn.ref('AWS::StackName'), version: '1.0' },
        paths,
        components: {
          securitySchemes: {
            AWS_IAM: {
              type: 'apiKey',
              name: 'Authorization',
              in: 'header',
              'x-amazon-apigateway-authtype': 'awsSigv4',
            },
          },
        },
      },
    }), 'HttpApi');
    named(new apigwv2.CfnStage(this, 'DefaultStage', {
      apiId: this.httpApi.ref,
      stageName: '$default',
      autoDeploy: true,
      // One JSON line per request; the caller is the SigV4 identity (no secrets in it).
      accessLogSettings: {
        destinationArn: this.accessLogGroup.attrArn,
        format: JSON.stringify(ACCESS_LOG_FORMAT),
      },
    }), 'HttpApiApiGatewayDefaultStage');

    for (const [event, [routePath, method]] of Object.entries(ROUTES)) {
      this.function.addHttpApiEvent(event, this.httpApi.ref, routePath, method);
    }
  }

  /** The API's base URL. */
  get url(): string {
    return Fn.sub('https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}');
  }
}

/** SAM's `DynamoDBCrudPolicy: {TableName}` policy template, expanded. */
export function dynamoDbCrudStatement(tableName: string): Record<string, unknown> {
  const arn = (suffix: string) => Fn.sub(
    `arn:\${AWS::Partition}:dynamodb:\${AWS::Region}:\${AWS::AccountId}:table/\${tableName}${suffix}`,
    { tableName },
  );
  return {
    Effect: 'Allow',
    Action: [
      'dynamodb:GetItem', 'dynamodb:DeleteItem', 'dynamodb:PutItem', 'dynamodb:Scan', 'dynamodb:Query',
      'dynamodb:UpdateItem', 'dynamodb:BatchWriteItem', 'dynamodb:BatchGetItem', 'dynamodb:DescribeTable',
      'dynamodb:ConditionCheckItem',
    ],
    Resource: [arn(''), arn('/index/*')],
  };
}
