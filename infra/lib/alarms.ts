// Operational alarms: the SNS topic the health functions publish to.
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { named } from './sam';

export class Alarms extends Construct {
  readonly topic: sns.CfnTopic;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.topic = named(new sns.CfnTopic(this, 'AlarmTopic', {
      displayName: 'streamstack alarms',
      kmsMasterKeyId: 'alias/aws/sns',
    }), 'AlarmTopic');
  }
}
