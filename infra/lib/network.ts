// Network: a minimal VPC when VpcId is empty (condition CreateVpc): two public subnets in two
// zones, an internet gateway, S3 and DynamoDB gateway endpoints, no NAT gateway. Otherwise
// the given VpcId / TaskSubnetIds / IngestSubnetIds. The getters give the chosen ones.
import { CfnResource, Fn } from 'aws-cdk-lib';
import * as cloudformation from 'aws-cdk-lib/aws-cloudformation';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { Params } from './params';
import { named } from './sam';

export class Network extends Construct {
  readonly vpc: ec2.CfnVPC;
  readonly subnetA: ec2.CfnSubnet;
  readonly subnetB: ec2.CfnSubnet;
  /** The created VPC's default route and subnet associations, or nothing (logical ID NetworkReady). */
  readonly networkReady: cloudformation.CfnWaitConditionHandle;

  constructor(scope: Construct, id: string, private readonly params: Params) {
    super(scope, id);
    const onlyWhenCreated = (r: CfnResource) => { r.cfnOptions.condition = params.createVpc; };
    const vpcCidr = params.ref('VpcCidr');

    this.vpc = named(new ec2.CfnVPC(this, 'Vpc', {
      cidrBlock: vpcCidr,
      enableDnsSupport: true,
      enableDnsHostnames: true,
      tags: [{ key: 'Name', value: Fn.sub('${AWS::StackName}') }],
    }), 'Vpc');
    const igw = named(new ec2.CfnInternetGateway(this, 'InternetGateway'), 'InternetGateway');
    const attachment = named(new ec2.CfnVPCGatewayAttachment(this, 'InternetGatewayAttachment', {
      vpcId: this.vpc.ref,
      internetGatewayId: igw.ref,
    }), 'InternetGatewayAttachment');

    // Two zones: the load balancer and the service survive one zone's loss.
    const subnet = (logicalId: string, index: number, suffix: string) => named(new ec2.CfnSubnet(this, logicalId, {
      vpcId: this.vpc.ref,
      availabilityZone: Fn.select(index, Fn.getAzs('')),
      cidrBlock: Fn.select(index, Fn.cidr(vpcCidr, 2, '8')),
      tags: [{ key: 'Name', value: Fn.sub(`\${AWS::StackName}-${suffix}`) }],
    }), logicalId);
    this.subnetA = subnet('PublicSubnetA', 0, 'a');
    this.subnetB = subnet('PublicSubnetB', 1, 'b');

    const routeTable = named(new ec2.CfnRouteTable(this, 'PublicRouteTable', { vpcId: this.vpc.ref }), 'PublicRouteTable');
    const defaultRoute = named(new ec2.CfnRoute(this, 'PublicDefaultRoute', {
      routeTableId: routeTable.ref,
      destinationCidrBlock: '0.0.0.0/0',
      gatewayId: igw.ref,
    }), 'PublicDefaultRoute');
    defaultRoute.addResourceDependency(attachment);
    const associations = [this.subnetA, this.subnetB].map((s, i) => named(
      new ec2.CfnSubnetRouteTableAssociation(this, `PublicSubnet${'AB'[i]}RouteTable`, {
        subnetId: s.ref,
        routeTableId: routeTable.ref,
      }), `PublicSubnet${'AB'[i]}RouteTable`));

    // Internet-facing load balancers and public tasks need the gateway attached and routed
    // before they are created (and gone before it is detached on delete); DependsOn cannot
    // name conditional resources, so this handle references them.
    this.networkReady = named(new cloudformation.CfnWaitConditionHandle(this, 'NetworkReady'), 'NetworkReady');
    const ifCreated = (r: CfnResource) => Fn.conditionIf(params.createVpc.logicalId, r.ref, '');
    this.networkReady.cfnOptions.metadata = {
      Route: ifCreated(defaultRoute),
      SubnetA: ifCreated(associations[0]),
      SubnetB: ifCreated(associations[1]),
    };

    // Segments to S3 and leases to DynamoDB stay on the AWS network (gateway endpoints are free).
    const endpoint = (logicalId: string, service: string) => named(new ec2.CfnVPCEndpoint(this, logicalId, {
      vpcId: this.vpc.ref,
      serviceName: Fn.sub(`com.amazonaws.\${AWS::Region}.${service}`),
      vpcEndpointType: 'Gateway',
      routeTableIds: [routeTable.ref],
    }), logicalId);
    const endpoints = [endpoint('S3GatewayEndpoint', 's3'), endpoint('DynamoDbGatewayEndpoint', 'dynamodb')];

    [this.vpc, igw, attachment, this.subnetA, this.subnetB, routeTable, defaultRoute, ...associations, ...endpoints]
      .forEach(onlyWhenCreated);
  }

  /** `!If [CreateVpc, !Ref Vpc, !Ref VpcId]`. */
  get vpcId(): string {
    return Fn.conditionIf(this.params.createVpc.logicalId, this.vpc.ref, this.params.ref('VpcId')).toString();
  }

  /** The tasks' subnets as one comma-separated string. */
  get taskSubnetsCsv(): string {
    return Fn.conditionIf(this.params.createVpc.logicalId,
      Fn.sub('${PublicSubnetA},${PublicSubnetB}'),
      Fn.join(',', this.params.list('TaskSubnetIds'))).toString();
  }

  /** `!If [CreateVpc, ENABLED, !Ref TaskAssignPublicIp]`. */
  get assignPublicIp(): string {
    return Fn.conditionIf(this.params.createVpc.logicalId, 'ENABLED', this.params.ref('TaskAssignPublicIp')).toString();
  }

  /** The created subnets, as a list. */
  get createdSubnets(): string[] {
    return [this.subnetA.ref, this.subnetB.ref];
  }
}
