// Signed playback (template.yaml's PlaybackSigningPublicKey, PlaybackKeyGroup,
// PlaybackCookieFunction, PlaybackGuardFunction, PlaybackCorsPolicy): the public key
// CloudFront verifies signed URLs and cookies with, its key group, the viewer-response
// function of the signed/* behaviour, the viewer-request function of the default behaviour
// (nothing under signed/ through it) and the CORS response headers policy. The key, the key
// group and the cookie function exist with HasPlaybackKey, the guard always, the policy with
// HasAllowedOrigins; storage.ts wires them into the distribution.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Aws, Fn, IResolvable } from 'aws-cdk-lib';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import { Construct } from 'constructs';
import { Params } from './params';
import { named, stackIdSuffix } from './sam';

/** The cookie function's source; template.yaml carries the same text inline (make iac-check). */
export const PLAYBACK_COOKIES_JS = path.resolve(__dirname, '..', 'functions', 'playback-cookies.js');
/** The default behaviour's guard function's source; template.yaml carries it inline too. */
export const PLAYBACK_GUARD_JS = path.resolve(__dirname, '..', 'functions', 'playback-guard.js');

/** Managed policies of both cache behaviours: CachingOptimized and CORS-S3Origin. */
export const CACHING_OPTIMIZED = '658327ea-f89d-4fab-a63d-7e88639e58f6';
export const CORS_S3_ORIGIN = '88a5eaf4-2fd4-4709-b370-b4c650ea3fcf';

export class PlaybackAuth extends Construct {
  readonly publicKey: cloudfront.CfnPublicKey;
  readonly keyGroup: cloudfront.CfnKeyGroup;
  readonly cookieFunction: cloudfront.CfnFunction;
  readonly guardFunction: cloudfront.CfnFunction;
  readonly corsPolicy: cloudfront.CfnResponseHeadersPolicy;

  constructor(scope: Construct, id: string, private readonly params: Params) {
    super(scope, id);

    // CloudFront never changes a public key's encoded key in place: rotation is in README.md.
    this.publicKey = named(new cloudfront.CfnPublicKey(this, 'PlaybackSigningPublicKey', {
      publicKeyConfig: {
        name: Fn.sub('${AWS::StackName}-playback'),
        callerReference: Fn.sub('${AWS::StackName}-playback-${Id}', { Id: stackIdSuffix() }),
        encodedKey: params.ref('PlaybackPublicKey'),
        comment: Fn.sub('${AWS::StackName} signed playback (PlaybackPublicKey)'),
      },
    }), 'PlaybackSigningPublicKey');
    this.publicKey.cfnOptions.condition = params.hasPlaybackKey;

    this.keyGroup = named(new cloudfront.CfnKeyGroup(this, 'PlaybackKeyGroup', {
      keyGroupConfig: {
        name: Fn.sub('${AWS::StackName}-playback'),
        comment: Fn.sub('${AWS::StackName} keys trusted for signed/ playback'),
        items: [this.publicKey.ref],
      },
    }), 'PlaybackKeyGroup');
    this.keyGroup.cfnOptions.condition = params.hasPlaybackKey;

    // Viewer response of signed/*: a 200 for a signed URL sets its Policy, Signature and
    // Key-Pair-Id as signed cookies for the request's directory (infra/functions, tested in
    // test/playback-cookies.test.ts).
    this.cookieFunction = named(new cloudfront.CfnFunction(this, 'PlaybackCookieFunction', {
      name: Fn.sub('${AWS::StackName}-playback-cookies'),
      autoPublish: true,
      functionConfig: {
        comment: 'signed/* viewer response - signed URL query parameters as signed cookies',
        runtime: 'cloudfront-js-2.0',
      },
      functionCode: fs.readFileSync(PLAYBACK_COOKIES_JS, 'utf8'),
    }), 'PlaybackCookieFunction');
    this.cookieFunction.cfnOptions.condition = params.hasPlaybackKey;

    // Viewer request of the default behaviour: a 403 for anything S3 would read under
    // signed/ (an encoded slash or backslash, percent-encoded letters, a malformed escape,
    // /signed/...), since CloudFront matches behaviours on the undecoded URI and S3 decodes
    // it (infra/functions, tested in test/playback-guard.test.ts). Always there: the policy
    // check (scripts/iac) requires it on every behaviour but signed/*.
    this.guardFunction = named(new cloudfront.CfnFunction(this, 'PlaybackGuardFunction', {
      name: Fn.sub('${AWS::StackName}-playback-guard'),
      autoPublish: true,
      functionConfig: {
        comment: 'default behaviour viewer request - nothing under signed/ (403 for encoded slashes)',
        runtime: 'cloudfront-js-2.0',
      },
      functionCode: fs.readFileSync(PLAYBACK_GUARD_JS, 'utf8'),
    }), 'PlaybackGuardFunction');

    // CORS for browser players on PlaybackAllowedOrigins, with credentials (signed cookies
    // are sent cross-origin).
    this.corsPolicy = named(new cloudfront.CfnResponseHeadersPolicy(this, 'PlaybackCorsPolicy', {
      responseHeadersPolicyConfig: {
        name: Fn.sub('${AWS::StackName}-playback-cors'),
        comment: 'CORS for PlaybackAllowedOrigins, with credentials',
        corsConfig: {
          accessControlAllowOrigins: { items: params.list('PlaybackAllowedOrigins') },
          accessControlAllowCredentials: true,
          accessControlAllowMethods: { items: ['GET', 'HEAD', 'OPTIONS'] },
          accessControlAllowHeaders: { items: ['Range'] },
          accessControlExposeHeaders: { items: ['Content-Length', 'Content-Range'] },
          accessControlMaxAgeSec: 600,
          originOverride: true,
        },
      },
    }), 'PlaybackCorsPolicy');
    this.corsPolicy.cfnOptions.condition = params.hasAllowedOrigins;
  }

  /** `!If [HasAllowedOrigins, !Ref PlaybackCorsPolicy, !Ref AWS::NoValue]`. */
  get responseHeadersPolicyId(): string {
    return Fn.conditionIf(this.params.hasAllowedOrigins.logicalId, this.corsPolicy.ref, Aws.NO_VALUE).toString();
  }

  /** The default behaviour's function associations: the guard on viewer request. */
  get defaultFunctionAssociations(): cloudfront.CfnDistribution.FunctionAssociationProperty[] {
    return [{ eventType: 'viewer-request', functionArn: this.guardFunction.attrFunctionArn }];
  }

  /** `!If [HasPlaybackKey, !GetAtt PlaybackSigningPublicKey.Id, ""]` (PLAYBACK_KEY_PAIR_ID). */
  get keyPairId(): string {
    return Fn.conditionIf(this.params.hasPlaybackKey.logicalId, this.publicKey.attrId, '').toString();
  }

  /** The signed/* cache behaviour, only with HasPlaybackKey (CloudFormation JSON, in an Fn::If). */
  get cacheBehaviors(): IResolvable {
    const behaviour = {
      PathPattern: 'signed/*',
      TargetOriginId: 'media',
      ViewerProtocolPolicy: 'redirect-to-https',
      AllowedMethods: ['GET', 'HEAD', 'OPTIONS'],
      Compress: true,
      CachePolicyId: CACHING_OPTIMIZED,
      OriginRequestPolicyId: CORS_S3_ORIGIN,
      ResponseHeadersPolicyId: this.responseHeadersPolicyId,
      TrustedKeyGroups: [this.keyGroup.ref],
      FunctionAssociations: [{ EventType: 'viewer-response', FunctionARN: this.cookieFunction.attrFunctionArn }],
    };
    return Fn.conditionIf(this.params.hasPlaybackKey.logicalId, [behaviour], Aws.NO_VALUE);
  }
}
