// The streamer image: an ECR repository to push streamer/Dockerfile's image to, and the image
// URI the task definitions use (StreamerImage, else the repository's :latest).
import { CfnDeletionPolicy, Fn } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { Construct } from 'constructs';
import { Params } from './params';
import { named } from './sam';

// Untagged images only: a tag a task definition names is never expired.
const LIFECYCLE_POLICY = `{"rules": [{"rulePriority": 1, "description": "untagged images after 7 days",
  "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
    "countUnit": "days", "countNumber": 7},
  "action": {"type": "expire"}}]}
`;

export class StreamerImage extends Construct {
  readonly repository: ecr.CfnRepository;
  /** `!If [HasStreamerImage, !Ref StreamerImage, "<repository uri>:latest"]`. */
  readonly uri: string;

  constructor(scope: Construct, id: string, params: Params) {
    super(scope, id);
    this.repository = named(new ecr.CfnRepository(this, 'StreamerRepository', {
      imageScanningConfiguration: { scanOnPush: true },
      encryptionConfiguration: { encryptionType: 'AES256' },
      lifecyclePolicy: { lifecyclePolicyText: LIFECYCLE_POLICY },
    }), 'StreamerRepository');
    this.repository.cfnOptions.deletionPolicy = CfnDeletionPolicy.RETAIN;
    this.repository.cfnOptions.updateReplacePolicy = CfnDeletionPolicy.RETAIN;

    this.uri = Fn.conditionIf(params.hasStreamerImage.logicalId,
      params.ref('StreamerImage'),
      Fn.sub('${StreamerRepository.RepositoryUri}:latest')).toString();
  }
}
