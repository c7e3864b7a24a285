// Storage: the DynamoDB tables, the media bucket and its CloudFront distribution, the
// MEDIA_URL_KEY secret. Tables, bucket and secret are retained on stack deletion and
// replacement (DeletionPolicy / UpdateReplacePolicy Retain), as in template.yaml.
import { Aws, CfnDeletionPolicy, CfnResource, Fn, Token } from 'aws-cdk-lib';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { Params } from './params';
import { CACHING_OPTIMIZED, CORS_S3_ORIGIN, PlaybackAuth } from './playback';
import { named, policyDocument, stackIdSuffix } from './sam';

function retain(resource: CfnResource): void {
  resource.cfnOptions.deletionPolicy = CfnDeletionPolicy.RETAIN;
  resource.cfnOptions.updateReplacePolicy = CfnDeletionPolicy.RETAIN;
}

interface TableSpec {
  /** Hash key attribute (type S). */
  readonly key: string;
  /** Global secondary indexes: name -> hash key (type S) and projection. */
  readonly indexes?: Record<string, { key: string; projection: 'KEYS_ONLY' | 'ALL' }>;
  readonly stream?: 'NEW_AND_OLD_IMAGES';
}

function table(scope: Construct, logicalId: string, spec: TableSpec): dynamodb.CfnTable {
  const indexes = Object.entries(spec.indexes ?? {});
  const attributes = [spec.key, ...indexes.map(([, ix]) => ix.key)];
  const t = named(new dynamodb.CfnTable(scope, logicalId, {
    billingMode: 'PAY_PER_REQUEST',
    attributeDefinitions: attributes.map((attributeName) => ({ attributeName, attributeType: 'S' })),
    keySchema: [{ attributeName: spec.key, keyType: 'HASH' }],
    globalSecondaryIndexes: indexes.length === 0 ? undefined : indexes.map(([indexName, ix]) => ({
      indexName,
      keySchema: [{ attributeName: ix.key, keyType: 'HASH' }],
      projection: { projectionType: ix.projection },
    })),
    streamSpecification: spec.stream ? { streamViewType: spec.stream } : undefined,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    sseSpecification: { sseEnabled: true },
  }), logicalId);
  retain(t);
  return t;
}

export class Storage extends Construct {
  readonly channelsTable: dynamodb.CfnTable;
  readonly assetsTable: dynamodb.CfnTable;
  readonly devicesTable: dynamodb.CfnTable;
  readonly slotsTable: dynamodb.CfnTable;
  readonly gatewaysTable: dynamodb.CfnTable;
  readonly mediaBucket: s3.CfnBucket;
  readonly distribution: cloudfront.CfnDistribution;
  readonly mediaUrlKey: secretsmanager.CfnSecret;
  /** Signed playback: key, key group, cookie and guard functions, CORS policy. */
  readonly playback: PlaybackAuth;

  constructor(scope: Construct, id: string, private readonly params: Params) {
    super(scope, id);

    // Sparse lease-owner-index (only leased channels carry lease_owner, the streamer's ECS
    // task ARN): task health finds a stopped ingest task's channels without a scan.
    this.channelsTable = table(this, 'ChannelsTable', {
      key: 'id', indexes: { 'lease-owner-index': { key: 'lease_owner', projection: 'KEYS_ONLY' } },
    });
    this.assetsTable = table(this, 'AssetsTable', { key: 'id' });
    // The stream feeds ReconcilerFunction (desired-state changes start or stop tasks at once).
    this.devicesTable = table(this, 'DevicesTable', {
      key: 'id', indexes: { 'gateway-index': { key: 'gateway_id', projection: 'ALL' } }, stream: 'NEW_AND_OLD_IMAGES',
    });
    this.slotsTable = table(this, 'SlotsTable', { key: 'id' });
    this.gatewaysTable = table(this, 'GatewaysTable', { key: 'gateway_id' });

    // 32 random bytes as 64 lowercase hex characters (MEDIA_URL_KEY); never rotated by
    // CloudFormation (a new value would make every stored camera credential unreadable).
    this.mediaUrlKey = named(new secretsmanager.CfnSecret(this, 'MediaUrlKey', {
      description: Fn.sub('${AWS::StackName} MEDIA_URL_KEY (64 hex chars): seals camera credentials in the devices table'),
      generateSecretString: {
        passwordLength: 64,
        excludeUppercase: true,
        excludePunctuation: true,
        includeSpace: false,
        excludeCharacters: 'ghijklmnopqrstuvwxyz',
        requireEachIncludedType: false,
      },
    }), 'MediaUrlKey');
    retain(this.mediaUrlKey);

    // The name comes from the stack id so the VOD roles can name the bucket without a
    // reference (the bucket's notification references the trigger: a reference back would
    // be a cycle). The notification is attached by connectVodTrigger.
    const liveExpiry = (id: string, prefix: string): s3.CfnBucket.RuleProperty => ({
      id,
      status: 'Enabled',
      prefix,
      tagFilters: [{ key: 'streamstack-retention', value: 'live' }],
      expirationInDays: params.num('LiveOutputRetentionDays'),
    });
    const archive = (id: string, prefix: string): s3.CfnBucket.RuleProperty => ({
      id,
      status: 'Enabled',
      prefix,
      transitions: [{
        storageClass: params.ref('ArchiveStorageClass'),
        transitionInDays: params.num('ArchiveTransitionDays'),
      }],
    });
    this.mediaBucket = named(new s3.CfnBucket(this, 'MediaBucket', {
      bucketName: Fn.sub('streamstack-media-${Id}', { Id: stackIdSuffix() }),
      bucketEncryption: {
        serverSideEncryptionConfiguration: [{ serverSideEncryptionByDefault: { sseAlgorithm: 'AES256' } }],
      },
      publicAccessBlockConfiguration: {
        blockPublicAcls: true,
        blockPublicPolicy: true,
        ignorePublicAcls: true,
        restrictPublicBuckets: true,
      },
      ownershipControls: { rules: [{ objectOwnership: 'BucketOwnerEnforced' }] },
      lifecycleConfiguration: {
        rules: [
          { id: 'abort-incomplete-uploads', status: 'Enabled', abortIncompleteMultipartUpload: { daysAfterInitiation: 1 } },
          // Live-only segments and playlists carry streamstack-retention=live; recordings and
          // device archives do not and are kept.
          liveExpiry('expire-live-output', 'live/'),
          liveExpiry('expire-device-live-output', 'devices/'),
          // The same two under signed/ (channels and devices with playback=signed).
          liveExpiry('expire-signed-live-output', 'signed/live/'),
          liveExpiry('expire-signed-device-live-output', 'signed/devices/'),
          // Recordings (channel recordings under live/, camera archives under devices/) age
          // into ArchiveStorageClass; S3 leaves objects under 128 KiB (playlists) in Standard.
          archive('archive-channel-recordings', 'live/'),
          archive('archive-device-recordings', 'devices/'),
          archive('archive-signed-channel-recordings', 'signed/live/'),
          archive('archive-signed-device-recordings', 'signed/devices/'),
          Fn.conditionIf(params.hasInputsExpiration.logicalId, {
            Id: 'expire-inputs',
            Status: 'Enabled',
            Prefix: 'inputs/',
            ExpirationInDays: params.ref('InputsExpirationDays'),
          }, Aws.NO_VALUE),
        ],
      },
    }), 'MediaBucket');
    retain(this.mediaBucket);

    const oac = named(new cloudfront.CfnOriginAccessControl(this, 'MediaOriginAccessControl', {
      originAccessControlConfig: {
        name: Fn.sub('${AWS::StackName}-media'),
        originAccessControlOriginType: 's3',
        signingBehavior: 'always',
        signingProtocol: 'sigv4',
      },
    }), 'MediaOriginAccessControl');

    this.playback = new PlaybackAuth(this, 'Playback', params);

    // The default behaviour serves public playback (live/, devices/, outputs/) unsigned;
    // signed/* (only with a key) requires a signed URL or signed cookies of PlaybackKeyGroup.
    this.distribution = named(new cloudfront.CfnDistribution(this, 'PlaybackDistribution', {
      distributionConfig: {
        enabled: true,
        comment: Fn.sub('${AWS::StackName} HLS playback'),
        httpVersion: 'http2and3',
        // With PlaybackDomainName: that name (a CNAME of the distribution) and its us-east-1
        // certificate, so that an app on the same site can set signed cookies for it.
        aliases: Token.asList(Fn.conditionIf(params.hasPlaybackDomain.logicalId, [params.ref('PlaybackDomainName')],
          Aws.NO_VALUE)),
        viewerCertificate: Fn.conditionIf(params.hasPlaybackDomain.logicalId, {
          AcmCertificateArn: params.ref('PlaybackCertificateArn'),
          SslSupportMethod: 'sni-only',
          MinimumProtocolVersion: 'TLSv1.2_2021',
        }, Aws.NO_VALUE),
        origins: [{
          id: 'media',
          domainName: this.mediaBucket.attrRegionalDomainName,
          originAccessControlId: oac.attrId,
          s3OriginConfig: { originAccessIdentity: '' },
        }],
        defaultCacheBehavior: {
          targetOriginId: 'media',
          viewerProtocolPolicy: 'redirect-to-https',
          allowedMethods: ['GET', 'HEAD', 'OPTIONS'],
          compress: true,
          // Managed policies CachingOptimized and CORS-S3Origin; CORS response headers only
          // for PlaybackAllowedOrigins.
          cachePolicyId: CACHING_OPTIMIZED,
          originRequestPolicyId: CORS_S3_ORIGIN,
          responseHeadersPolicyId: this.playback.responseHeadersPolicyId,
          // Nothing under signed/ through this behaviour, however the path is encoded.
          functionAssociations: this.playback.defaultFunctionAssociations,
        },
        cacheBehaviors: this.playback.cacheBehaviors,
      },
    }), 'PlaybackDistribution');

    const bucketArn = this.mediaBucket.attrArn;
    const distributionArn = `arn:${Aws.PARTITION}:cloudfront::${Aws.ACCOUNT_ID}:distribution/${this.distribution.ref}`;
    named(new s3.CfnBucketPolicy(this, 'MediaBucketPolicy', {
      bucket: this.mediaBucket.ref,
      policyDocument: policyDocument([
        {
          Sid: 'CloudFrontReadsLiveAndVodOutput',
          Effect: 'Allow',
          Principal: { Service: 'cloudfront.amazonaws.com' },
          Action: 's3:GetObject',
          Resource: [`${bucketArn}/live/*`, `${bucketArn}/outputs/*`, `${bucketArn}/devices/*`],
          Condition: { StringEquals: { 'AWS:SourceArn': distributionArn } },
        },
        // signed/ only when the distribution has the signed/* behaviour that requires
        // signatures; without a key nothing under signed/ is readable (fail closed).
        Fn.conditionIf(params.hasPlaybackKey.logicalId, {
          Sid: 'CloudFrontReadsSignedOutput',
          Effect: 'Allow',
          Principal: { Service: 'cloudfront.amazonaws.com' },
          Action: 's3:GetObject',
          Resource: [`${bucketArn}/signed/live/*`, `${bucketArn}/signed/outputs/*`, `${bucketArn}/signed/devices/*`],
          Condition: { StringEquals: { 'AWS:SourceArn': distributionArn } },
        }, Aws.NO_VALUE),
        {
          Sid: 'DenyInsecureTransport',
          Effect: 'Deny',
          Principal: '*',
          Action: 's3:*',
          Resource: [bucketArn, `${bucketArn}/*`],
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        },
      ]),
    }), 'MediaBucketPolicy');
  }

  /** `https://<PlaybackDomainName>` when set, else `https://<distribution domain>`: the host the
   * API signs policies for (PLAYBACK_BASE_URL) and players use. */
  get playbackBaseUrl(): string {
    return Fn.conditionIf(this.params.hasPlaybackDomain.logicalId, `https://${this.params.ref('PlaybackDomainName')}`,
      `https://${this.distribution.attrDomainName}`).toString();
  }

  /** PlaybackDomainName when set, else the distribution's domain (the PlaybackDomain output). */
  get playbackDomain(): string {
    return Fn.conditionIf(this.params.hasPlaybackDomain.logicalId, this.params.ref('PlaybackDomainName'),
      this.distribution.attrDomainName).toString();
  }

  /** S3 ObjectCreated under inputs/ invokes the VOD trigger (after its permission exists). */
  connectVodTrigger(functionArn: string, permission: CfnResource): void {
    this.mediaBucket.notificationConfiguration = {
      lambdaConfigurations: [{
        event: 's3:ObjectCreated:*',
        filter: { s3Key: { rules: [{ name: 'prefix', value: 'inputs/' }] } },
        function: functionArn,
      }],
    };
    this.mediaBucket.addResourceDependency(permission);
  }
}
